"""Groups and channels end to end, over real HTTP against the fake Bot API server: subscribed by an
administrator (and no one else), members' taps counted on the buttons and toggled, a group
upgraded to a supergroup with nothing lost, the bot removed, a channel's digest voted on; and a
group's ranking following its members' votes together."""

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, time, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from feedbot.chat.conversation import Chat, User
from feedbot.chat.groups import ADMINS_ONLY
from feedbot.chat.telegram_groups import chat_migrated
from feedbot.delivery.messages import count_row
from feedbot.ranking import recommend, textmodel
from feedbot.ranking.groups import member_weights
from feedbot.store import groups, subscribers
from feedbot.store.db import transaction
from feedbot.store.models import Delivery, Interest, MemberVote, Paper, Shown, Subscriber, Vote
from feedbot.worker import Worker

GROUP, SUPERGROUP, CHANNEL = -1001, -100200300, -100777
ADMIN, MEMBER, OTHER = 11, 22, 33
BOT = "feedbot_test_bot"
NOW = datetime(2026, 3, 12, 8, 0, tzinfo=UTC)


def say(telegram, chat, user, text, expect=1):
    """A member types in the group; wait for `expect` new messages there and return them."""
    before = len(telegram.messages_to(chat))
    telegram.send_in(chat, user, text)
    return telegram.wait_messages(chat, before + expect)[before:]


def post(telegram, chat, text, expect=1):
    before = len(telegram.messages_to(chat))
    telegram.post(chat, text)
    return telegram.wait_messages(chat, before + expect)[before:]


def tap(telegram, user, message, row, up=True):
    data = message.buttons[row][0 if up else 1]["callback_data"]
    return telegram.wait_answer(telegram.press(user, message, data))["text"]


def labels(message):
    return [[button["text"] for button in row] for row in message.buttons]


def row_of(engine, chat_id):
    with Session(engine) as session:
        return session.scalar(select(Subscriber).where(Subscriber.telegram_id == chat_id))


def subscribed_group(telegram, engine, chat=GROUP):
    """A group the bot was added to, subscribed by its administrator, following one interest."""
    telegram.group(chat)
    telegram.set_status(chat, ADMIN, "administrator")
    [welcome] = say(telegram, chat, ADMIN, f"/start@{BOT}")
    assert "feedbot is on for this group" in welcome.text
    [added] = say(telegram, chat, ADMIN, "/interests add vision language models")
    assert "vision language models" in added.text
    return row_of(engine, chat)


def group_digest(telegram, chat=GROUP):
    [digest] = say(telegram, chat, ADMIN, "/digest")
    assert "for this group" in digest.text
    return digest


def test_group_subscribed_by_an_administrator_only(group_bot, telegram, seeded):
    telegram.group(GROUP)
    telegram.set_status(GROUP, ADMIN, "creator")
    telegram.bot_status(GROUP, "member", old="left", by=ADMIN)
    [hello] = telegram.wait_messages(GROUP, 1)
    assert f"/start@{BOT}" in hello.text

    [refused] = say(telegram, GROUP, MEMBER, f"/start@{BOT}")
    assert refused.text == ADMINS_ONLY
    assert row_of(seeded, GROUP) is None

    [welcome] = say(telegram, GROUP, ADMIN, f"/start@{BOT}")
    assert "feedbot is on for this group" in welcome.text and "Rate a few papers" not in welcome.text
    row = row_of(seeded, GROUP)
    assert (row.kind, row.chat_id, row.state, row.awaiting) == ("group", GROUP, "active", None)
    assert row_of(seeded, ADMIN) is None  # the admin's own private subscription is another matter

    for text in ("/interests add robots", "/time 07:00", "/mute quantum", "/stop", "/delete", "/digest",
                 "/import 2401.00001"):
        [answer] = say(telegram, GROUP, MEMBER, text)
        assert answer.text == ADMINS_ONLY, text
    [listing] = say(telegram, GROUP, MEMBER, "/interests")  # reading is open to every member
    assert "none yet" in listing.text
    [added] = say(telegram, GROUP, ADMIN, "/interests add vision language models")
    assert "vision language models" in added.text
    [timed] = say(telegram, GROUP, ADMIN, "/time 07:00")
    assert "07:00" in timed.text
    asked = [p for m, p in telegram.calls if m == "getChatMember" and int(p["user_id"]) == ADMIN]
    assert len(asked) == 1  # asked once, then remembered for a minute

    # Chatter, other bots' commands and files in the group get no answer.
    telegram.send_in(GROUP, MEMBER, "has anyone read the new diffusion paper?")
    telegram.send_in(GROUP, MEMBER, "/roll@dice_bot")
    telegram.send_in(GROUP, MEMBER, "/nosuchcommand")
    telegram.wait_idle()
    [help_text] = say(telegram, GROUP, MEMBER, "/help")
    assert "/digest" in help_text.text
    with Session(seeded) as session:
        assert session.scalar(select(func.count()).select_from(Interest)) == 1
        assert session.scalar(select(Subscriber.send_time).where(Subscriber.telegram_id == GROUP)) == "07:00"


def test_members_taps_are_counted_toggled_and_kept_apart(group_bot, telegram, seeded):
    # MEMBER also has a private subscription: a tap in the group never touches it.
    telegram.send(MEMBER, "/start")
    telegram.wait_messages(MEMBER, 1)
    group = subscribed_group(telegram, seeded)
    digest = group_digest(telegram)
    assert labels(digest)[0] == ["1. 👍 0", "👎 0"]
    paper_id = int(digest.buttons[0][0]["callback_data"].split(":")[1])

    assert tap(telegram, MEMBER, digest, 0) == "Your 👍 is counted"
    telegram.wait(lambda: labels(digest)[0] == ["1. 👍 1", "👎 0"], what="one 👍 counted")
    assert tap(telegram, OTHER, digest, 0) == "Your 👍 is counted"
    telegram.wait(lambda: labels(digest)[0] == ["1. 👍 2", "👎 0"], what="two 👍 counted")
    assert tap(telegram, MEMBER, digest, 0) == "Your vote is taken back"  # the same again: off
    telegram.wait(lambda: labels(digest)[0] == ["1. 👍 1", "👎 0"], what="one 👍 taken back")
    assert tap(telegram, OTHER, digest, 0, up=False) == "Your 👎 is counted"  # the other: switched
    telegram.wait(lambda: labels(digest)[0] == ["1. 👍 0", "👎 1"], what="👍 switched to 👎")
    assert all(label[0].endswith("👍 0") for label in labels(digest)[1:])
    assert "User" not in str(digest.buttons)  # numbers, never names

    with Session(seeded) as session:
        votes = session.execute(select(MemberVote.member_id, MemberVote.paper_id, MemberVote.value)
                                .where(MemberVote.subscriber_id == group.id)).all()
        assert votes == [(OTHER, paper_id, -1)]
        assert session.scalar(select(func.count()).select_from(Vote)) == 0  # nobody's private profile moved
    # /liked in the group lists what its members liked on balance, by number, never by name.
    [nothing] = say(telegram, GROUP, MEMBER, "/liked")
    assert "No paper has more 👍 than 👎" in nothing.text
    tap(telegram, MEMBER, digest, 1)
    [liked] = say(telegram, GROUP, OTHER, "/liked")
    second = digest.text.split("<b>")[3].split("</b>")[0]
    assert "Papers this group liked</b> (1)" in liked.text and second in liked.text
    assert "User" not in liked.text


def test_group_upgraded_to_a_supergroup_keeps_everything(group_bot, telegram, seeded):
    group = subscribed_group(telegram, seeded)
    digest = group_digest(telegram)
    tap(telegram, MEMBER, digest, 0)
    tap(telegram, OTHER, digest, 1, up=False)
    telegram.wait(lambda: labels(digest)[1] == ["2. 👍 0", "👎 1"], what="the counts drawn")

    def held(subscriber_id):
        with Session(seeded) as session:
            return {table.__name__: session.scalar(select(func.count()).select_from(table)
                                                   .where(table.subscriber_id == subscriber_id))
                    for table in (Interest, Shown, Delivery, MemberVote)}

    before = held(group.id)
    assert before == {"Interest": 1, "Shown": 5, "Delivery": 1, "MemberVote": 2}
    telegram.migrate(GROUP, SUPERGROUP)
    moved = telegram.wait(lambda: row_of(seeded, SUPERGROUP), what="the subscriber moved")
    assert moved is not None and (moved.id, moved.chat_id, moved.kind) == (group.id, SUPERGROUP, "group")
    assert row_of(seeded, GROUP) is None
    assert held(group.id) == before

    telegram.set_status(SUPERGROUP, ADMIN, "administrator")
    [status] = say(telegram, SUPERGROUP, ADMIN, "/status")
    assert "1 interests" in status.text
    [again] = say(telegram, SUPERGROUP, ADMIN, "/digest")  # the day's digest is taken: extra picks only
    assert not set(_papers(again)) & set(_papers(digest))


def test_digest_to_an_upgraded_group_follows_it(group_bot, telegram, seeded):
    """Telegram refuses a message to the old id with the new one: the subscriber moves with it."""
    group = subscribed_group(telegram, seeded)
    telegram.group(SUPERGROUP, kind="supergroup")
    telegram.set_status(SUPERGROUP, ADMIN, "administrator")
    telegram.migrated[GROUP] = SUPERGROUP  # the service messages were missed
    before = len(telegram.messages_to(SUPERGROUP))
    telegram.send_in(GROUP, ADMIN, "/digest")
    [digest] = telegram.wait_messages(SUPERGROUP, before + 1)[before:]
    assert len(digest.buttons) == 5
    assert (row_of(seeded, SUPERGROUP).id, row_of(seeded, GROUP)) == (group.id, None)


def test_scheduled_digests_reach_the_group_once_a_day(group_bot, telegram, seeded, settings):
    """The day's /digest is the day's digest: the sweep sends no second; the next day's comes
    with the counting buttons and repeats no paper."""
    subscribed_group(telegram, seeded)
    now = [datetime.now(UTC)]
    with transaction(seeded) as session:  # due since midnight, whatever the real clock's time of day
        session.execute(update(Subscriber).where(Subscriber.telegram_id == GROUP).values(send_time="00:00"))
    first = group_digest(telegram)
    bot_settings = replace(settings, telegram_token=telegram.token, telegram_api_url=telegram.base_url)
    worker = Worker(bot_settings, seeded, group_bot.application.bot, lambda: now[0], broadcast_rate=0, part_pause=0)
    group_bot.call(worker.sweep_digests())
    assert sum("📚 feedbot" in m.text for m in telegram.messages_to(GROUP)) == 1
    now[0] = datetime.combine(now[0].date() + timedelta(days=1), time(0, 5), UTC)  # the next day's slot
    group_bot.call(worker.sweep_digests())
    [_, second] = [m for m in telegram.messages_to(GROUP) if "📚 feedbot" in m.text]
    assert labels(second)[0] == ["1. 👍 0", "👎 0"]
    assert not set(_papers(first)) & set(_papers(second))


def test_blocked_in_a_private_chat_stops_digests(group_bot, telegram, seeded):
    telegram.send(MEMBER, "/start")
    telegram.wait_messages(MEMBER, 1)
    telegram.bot_status(MEMBER, "kicked", old="member", by=MEMBER)
    telegram.wait(lambda: row_of(seeded, MEMBER).state == "blocked", what="the subscriber blocked")


def test_bot_removed_stops_the_group(group_bot, telegram, seeded):
    subscribed_group(telegram, seeded)
    telegram.bot_status(GROUP, "kicked", old="member", by=ADMIN)
    telegram.wait(lambda: row_of(seeded, GROUP).state == "stopped", what="the group stopped")
    assert row_of(seeded, GROUP).state == "stopped"
    telegram.bot_status(GROUP, "member", old="kicked", by=ADMIN)  # added back: a greeting, still stopped
    telegram.wait_messages(GROUP, 3)
    assert row_of(seeded, GROUP).state == "stopped"
    [back] = say(telegram, GROUP, ADMIN, f"/start@{BOT}")
    assert "Welcome back" in back.text
    assert row_of(seeded, GROUP).state == "active"


def test_channel_digest_voted_on_by_readers(group_bot, telegram, seeded):
    telegram.group(CHANNEL, "Daily papers", "channel")
    telegram.bot_status(CHANNEL, "administrator", old="left", by=ADMIN)
    [welcome] = post(telegram, CHANNEL, "/start")
    assert "feedbot is on for this channel" in welcome.text
    post(telegram, CHANNEL, "/interests add speech recognition")
    [digest] = post(telegram, CHANNEL, "/digest")
    assert "for this channel" in digest.text
    assert tap(telegram, 501, digest, 0) == "Your 👍 is counted"
    assert tap(telegram, 502, digest, 0) == "Your 👍 is counted"
    assert tap(telegram, 503, digest, 0, up=False) == "Your 👎 is counted"
    telegram.wait(lambda: labels(digest)[0] == ["1. 👍 2", "👎 1"], what="readers' taps counted")
    row = row_of(seeded, CHANNEL)
    assert (row.kind, row.chat_id) == ("channel", CHANNEL)
    # A reader cannot change the channel's settings through a button of its /settings post.
    [view] = post(telegram, CHANNEL, "/settings")
    answer = telegram.wait_answer(telegram.press(501, view, view.buttons[0][1]["callback_data"]))
    assert answer["text"] == ADMINS_ONLY and row_of(seeded, CHANNEL).digest_size == 5


def test_any_member_taps_end_in_the_counts_they_add_up_to(group_bot, telegram, seeded, caplog):
    """Members × picks × 👍/👎, in any order: the buttons' last edit shows the toggled-out state."""
    group = subscribed_group(telegram, seeded)
    digest = group_digest(telegram)
    members = (MEMBER, OTHER, 44)

    @settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.lists(st.tuples(st.sampled_from(members), st.integers(0, 1), st.booleans()), min_size=1, max_size=10))
    def run(taps):
        with transaction(seeded) as session:
            session.execute(delete(MemberVote).where(MemberVote.subscriber_id == group.id))
        state: dict[tuple[int, int], int] = {}
        for member, row, up in taps:
            value = 1 if up else -1
            state[(member, row)] = 0 if state.get((member, row)) == value else value
            expected = {1: "Your 👍 is counted", -1: "Your 👎 is counted", 0: "Your vote is taken back"}
            assert tap(telegram, member, digest, row, up) == expected[state[(member, row)]]
        counts = Counter((row, value) for (_, row), value in state.items() if value)
        want = [[f"{row + 1}. 👍 {counts[(row, 1)]}", f"👎 {counts[(row, -1)]}"] for row in (0, 1)]
        telegram.wait(lambda: labels(digest)[:2] == want, what=f"counts {want}")

    run()
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


def test_group_ranking_follows_what_most_members_liked(seeded, settings):
    with Session(seeded) as session, session.begin():
        vision, speech = (session.scalar(select(Paper).where(Paper.title.contains(t))) for t in (
            "Learning to Prompt for Vision-Language Models", "SLUE: New Benchmark Tasks for Spoken Language"))
        model = textmodel.load(session, settings.model_dir)
        tops = {}
        for chat, (many, one) in ((-1, (vision, speech)), (-2, (speech, vision))):
            group, _ = subscribers.subscribe(session, chat, chat, "group", kind="group")
            subscribers.record_shown(session, group, [(vision.id, 0.0, ""), (speech.id, 0.0, "")], "digest")
            for member in (1, 2, 3):
                groups.member_vote(session, group, member, many.id, 1, NOW)
            groups.member_vote(session, group, 4, one.id, 1, NOW)
            weights = member_weights([(many.id, 1)] * 3 + [(one.id, 1)])
            assert weights[many.id] > weights[one.id]
            picks = recommend.recommend(session, model, [group], NOW.date(), NOW, cache=None)[group.id]
            tops[chat] = picks[0].why
            assert f"because you liked “{many.title}”" in picks[0].why, picks[0].why
            assert session.scalar(select(func.count()).select_from(Vote)) == 0
        assert tops[-1] != tops[-2]


def test_a_group_digest_never_names_a_paper_imported_into_it(seeded, settings):
    """An administrator's imported library steers the group's picks, but a pick's reason names
    only what the members liked; the same import in a private chat is named."""
    with Session(seeded) as session, session.begin():
        vision = session.scalar(select(Paper).where(Paper.title.contains("Learning to Prompt for Vision-Language")))
        model = textmodel.load(session, settings.model_dir)
        whys = {}
        for chat, kind in ((-1, "group"), (44, "private")):
            subscriber, _ = subscribers.subscribe(session, chat, chat, kind, kind=kind)
            session.add(Vote(subscriber_id=subscriber.id, paper_id=vision.id, value=1, voted_at=NOW, origin="import"))
            session.flush()
            picks = recommend.recommend(session, model, [subscriber], NOW.date(), NOW, cache=None)[subscriber.id]
            whys[kind] = [p.why for p in picks]
        assert whys["group"] and not [w for w in whys["group"] if vision.title in w]
        assert [w for w in whys["private"] if vision.title in w]


def test_migration_onto_a_chat_already_answered_merges_it(engine):
    """A command in the new supergroup answered before the migration message: one subscriber after."""
    with transaction(engine) as session:
        old, _ = subscribers.subscribe(session, GROUP, GROUP, "group", kind="group")
        subscribers.add_interests(session, old, "robots, vision")
        new, _ = subscribers.subscribe(session, SUPERGROUP, SUPERGROUP, "group", kind="group")
        subscribers.add_interests(session, new, "vision, speech")
        old_id = old.id
    with transaction(engine) as session:
        assert groups.migrate(session, GROUP, SUPERGROUP)
    with transaction(engine) as session:  # the other service message: nothing left to do
        assert not groups.migrate(session, GROUP, SUPERGROUP)
    with Session(engine) as session:
        [row] = session.scalars(select(Subscriber)).all()
        assert (row.id, row.telegram_id, row.chat_id) == (old_id, SUPERGROUP, SUPERGROUP)
        assert sorted(session.scalars(select(Interest.text))) == ["robots", "speech", "vision"]


def test_migration_merges_every_table_of_the_chat_already_answered(engine):
    """Every row of the supergroup's early subscriber is kept, in every table that has one: its
    recap of this week stays claimed, so the week's recap is not sent a second time."""
    from feedbot.delivery import recaps

    owned = {table.__table__.name for table, _ in groups.OWNED}
    assert owned == {t.name for t in Subscriber.metadata.sorted_tables if "subscriber_id" in t.c}
    week = datetime(2026, 3, 9).date()
    with transaction(engine) as session:
        old, _ = subscribers.subscribe(session, GROUP, GROUP, "group", kind="group")
        old.state = "stopped"  # stopped in the old group, started again in the supergroup
        new, _ = subscribers.subscribe(session, SUPERGROUP, SUPERGROUP, "group", kind="group")
        assert recaps.claim(session, new.id, week, NOW) is not None
        old_id = old.id
    with transaction(engine) as session:
        assert groups.migrate(session, GROUP, SUPERGROUP)
    with transaction(engine) as session:
        assert recaps.claim(session, old_id, week, NOW) is None
        assert session.get(Subscriber, old_id).state == "active"


def test_no_command_a_member_may_run_shows_a_library_imported_into_the_chat(seeded, settings):
    """An administrator's library imported into the group teaches its profile, but every command
    open to members shows only what the members liked on balance (/export's file included)."""
    from feedbot.chat import bibtex, commands
    from feedbot.chat.groups import admin_only
    from feedbot.delivery import rows
    from feedbot.delivery.messages import escape

    chat = Chat(seeded, settings)
    with transaction(seeded) as session:
        group, _ = subscribers.subscribe(session, GROUP, GROUP, "group", kind="group")
        library, liked, split = session.scalars(select(Paper).order_by(Paper.id).limit(3)).all()
        session.add(Vote(subscriber_id=group.id, paper_id=library.id, value=1, voted_at=NOW, origin="import"))
        session.add_all(MemberVote(subscriber_id=group.id, paper_id=pid, member_id=m, value=v, voted_at=NOW)
                        for pid, m, v in ((liked.id, 1, 1), (liked.id, 2, 1), (split.id, 1, 1), (split.id, 2, -1)))
        hidden, expected = library.title, bibtex.export([liked]).encode()
        day = NOW.date()  # a digest showed the library's paper before it was imported
        [delivery_id] = rows.claim_many(session, [(group.id, day)]).values()
        rows.finish(session, delivery_id, "sent", now=NOW)
        session.add(Shown(subscriber_id=group.id, paper_id=library.id, delivery_id=delivery_id, source="digest",
                          position=0, score=0.0, reason="", shown_at=NOW))
    member = User(GROUP, GROUP, "group", "group", MEMBER)
    read = [c.name for c in commands.COMMANDS if c.handler is not None and not admin_only(c, "")]
    assert "export" in read and "liked" in read
    for name in read:
        for reply in chat.command(member, name, ""):
            if name == "history":  # it lists the digest that showed the paper: unmarked
                [line] = [line for line in reply.text.splitlines() if escape(hidden[:100]) in line]
                assert line.startswith("· "), line
                continue
            assert hidden not in reply.text, name
            if reply.document is not None:
                assert reply.document[1] == expected, name
    assert "history" in read
    [found] = chat.command(member, "search", hidden)  # the paper itself: found, but not marked liked
    assert hidden in found.text
    assert [b.label for row in found.keyboard for b in row if "✅" in b.label] == []


def test_members_tapping_at_once_are_each_counted(seeded, settings):
    """Real threads against the real database: no tap lost, a member's double tap toggles once each."""
    chat = Chat(seeded, settings)
    with transaction(seeded) as session:
        group, _ = subscribers.subscribe(session, GROUP, GROUP, "group", kind="group")
        papers = list(session.scalars(select(Paper.id).order_by(Paper.id).limit(2)))
        subscribers.record_shown(session, group, [(p, 0.0, "") for p in papers], "digest")
    keyboard = [count_row(n, p, 0, 0) for n, p in enumerate(papers, 1)]
    taps = [(member, paper) for member in range(1, 7) for paper in papers] + [(1, papers[0])]
    start = threading.Barrier(len(taps))

    def tap_now(member, paper):
        start.wait()
        return chat.button(User(GROUP, GROUP, "group", "group", member), f"v:{paper}:+", keyboard).notice

    with ThreadPoolExecutor(len(taps)) as pool:
        notices = Counter(pool.map(lambda t: tap_now(*t), taps))
    assert notices == {"Your 👍 is counted": 12, "Your vote is taken back": 1}
    with Session(seeded) as session:
        assert groups.counts(session, group, papers) == {papers[0]: (5, 0), papers[1]: (6, 0)}


def test_both_migration_messages_at_once_move_the_group_once(engine):
    with transaction(engine) as session:
        subscribers.subscribe(session, GROUP, GROUP, "group", kind="group")
    start = threading.Barrier(2)

    def migrate_now(_):
        start.wait()
        return chat_migrated(engine, GROUP, SUPERGROUP)

    with ThreadPoolExecutor(2) as pool:
        assert sorted(pool.map(migrate_now, range(2))) == [False, True]
    with Session(engine) as session:
        assert session.execute(select(Subscriber.telegram_id, Subscriber.chat_id)).all() == [(SUPERGROUP, SUPERGROUP)]


def _papers(message):
    return [b[0]["callback_data"].split(":")[1] for b in message.buttons]
