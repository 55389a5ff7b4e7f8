"""The Telegram bot end to end: python-telegram-bot over real HTTP against a fake Bot API server."""

import html
from datetime import UTC, date, datetime

import pytest
from sqlalchemy import event, func, inspect, select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from feedbot.chat.commands import COMMANDS, menu
from feedbot.chat.conversation import Chat, User
from feedbot.delivery import digests
from feedbot.sources.ingest import ingest_paths
from feedbot.store.db import make_engine, transaction
from feedbot.store.models import Base, Delivery, Interest, Shown, Subscriber, Vote
from feedbot.store.subscribers import get as get_subscriber

ALICE = 111


def talk(telegram, text, user=ALICE, expect=1):
    """Send a message and wait for `expect` new replies; return them."""
    before = len(telegram.messages_to(user))
    telegram.send(user, text)
    return telegram.wait_messages(user, before + expect)[before:]


def press(telegram, message, data, user=ALICE):
    return telegram.wait_answer(telegram.press(user, message, data))


def onboard(telegram, user=ALICE):
    [welcome] = talk(telegram, "/start", user)
    assert "Welcome to feedbot" in welcome.text
    noted, starter, question = talk(telegram, "speech recognition, graph neural networks", user, expect=3)
    assert "speech recognition" in noted.text
    assert len(starter.buttons) == 5
    assert "time zone" in question.text
    return starter


def subscriber_row(engine, user=ALICE):
    with Session(engine) as session:
        return session.scalar(select(Subscriber).where(Subscriber.telegram_id == user))


def test_whole_onboarding(bot, telegram, seeded):
    assert {c["command"] for c in telegram.commands} >= {"start", "digest", "settings", "delete"}
    starter = onboard(telegram)
    answer = press(telegram, starter, starter.buttons[0][0]["callback_data"])
    assert answer["text"] == "Saved 👍"
    telegram.wait(lambda: starter.buttons[0][0]["text"].startswith("✅"), what="keyboard shows the vote")
    [done] = talk(telegram, "Europe/Berlin")
    assert "All set!" in done.text and "Europe/Berlin" in done.text
    row = subscriber_row(seeded)
    assert row.timezone == "Europe/Berlin" and row.awaiting is None
    [again] = talk(telegram, "/start")
    assert "Welcome back" in again.text
    with Session(seeded) as session:
        assert session.scalar(select(func.count()).select_from(Vote)) == 1


def test_digest_votes_change_and_double_tap(bot, telegram, seeded):
    onboard(telegram)
    talk(telegram, "/skip")
    [digest] = talk(telegram, "/digest")
    assert digest.parse_mode == "HTML"
    assert digest.text.count("<b>") >= 6 and len(digest.buttons) == 5
    first_up, first_down = digest.buttons[0]
    paper_id = int(first_up["callback_data"].split(":")[1])

    assert press(telegram, digest, first_up["callback_data"])["text"] == "Saved 👍"
    assert press(telegram, digest, first_down["callback_data"])["text"] == "Saved 👎"
    with Session(seeded) as session:
        assert session.scalar(select(Vote.value).where(Vote.paper_id == paper_id)) == -1
    telegram.wait(lambda: digest.buttons[0][1]["text"].startswith("✅"), what="👎 marked")
    # A double tap: the second tap on the same button clears the vote, nothing breaks.
    queries = [telegram.press(ALICE, digest, first_down["callback_data"]) for _ in range(2)]
    answers = [telegram.wait_answer(q)["text"] for q in queries]
    assert sorted(answers) == sorted(["Vote cleared", "Saved 👎"])
    telegram.wait_idle()
    with Session(seeded) as session:
        votes = session.scalars(select(Vote.value).where(Vote.paper_id == paper_id)).all()
    assert votes == [-1]


def test_forged_and_oversized_callbacks_write_nothing(bot, telegram, seeded):
    onboard(telegram)
    talk(telegram, "/skip")
    [digest] = talk(telegram, "/digest")
    with Session(seeded) as session:
        unseen = session.scalar(select(func.max(Subscriber.id)))  # any id that is no shown paper
    for data in [f"v:{10_000_000}:+", "v:1:*", "x" * 200, "v:1:+; DROP TABLE votes", f"v:{unseen}0:+", ""]:
        answer = press(telegram, digest, data)
        assert "not" in answer["text"] and answer.get("show_alert") == "true", (data, answer)
    with Session(seeded) as session:
        assert session.scalar(select(func.count()).select_from(Vote)) == 0


def test_commands_and_their_bad_arguments(bot, telegram, seeded):
    onboard(telegram)
    talk(telegram, "/skip")
    cases = [
        ("/time 25:00", "Send a time like /time 07:30"),
        ("/time 6:45", "Delivery time set to <b>06:45</b>"),
        ("/timezone Europe/Berln", "Did you mean Europe/Berlin"),
        ("/timezone UTC+5:30", "Time zone set to <b>UTC+05:30</b>"),
        ("/size 0", "from 1 to 20"),
        ("/size 7", "<b>7</b> picks"),
        ("/frequency hourly", "Choose one of"),
        ("/frequency weekdays", "<b>weekdays</b>"),
        ("/interests add diffusion models", "Added “diffusion models”"),
        ("/interests remove nothing-like-this", "is not one of your interests"),
        ("/interests remove 1", "Removed “speech recognition”"),
        ("/interests", "2. diffusion models"),
        ("/mute whisper", "won't be picked"),
        ("/unmute whisper", "no longer muted"),
        ("/unmute whisper", "is not muted"),
        ("/pause x", "from 1 to 365"),
        ("/pause 3", "(then they resume by themselves)"),
        ("/resume", "Digests resumed"),
        ("/status", "7 picks, weekdays"),
        ("/liked", "haven't liked any papers"),
        ("/search", "Tell me what to look for"),
        ("/search zzzzqqq", "No papers mention"),
        ("/history", "No digests yet"),
        ("/export", "nothing to export"),
        ("/frobnicate", "I don't know /frobnicate"),
        ("just chatting", "I answer commands"),
        ("/help", "/digest — today's picks now"),
    ]
    for text, expected in cases:
        [reply] = talk(telegram, text)
        assert expected in reply.text, (text, reply.text)
    row = subscriber_row(seeded)
    assert (row.send_time, row.timezone, row.digest_size, row.frequency) == ("06:45", "UTC+05:30", 7, "weekdays")


def test_search_export_history_settings_stop(bot, telegram, seeded):
    onboard(telegram)
    talk(telegram, "/skip")
    [found] = talk(telegram, "/search Bayesian inference")
    assert "Transformers Can Do Bayesian Inference" in found.text
    press(telegram, found, found.buttons[0][0]["callback_data"])
    [liked] = talk(telegram, "/liked")
    assert "Bayesian" in liked.text
    listing, document = talk(telegram, "/export", expect=2)
    name, content = document.document
    assert name == "feedbot-liked.bib" and content.startswith(b"@misc{feedbot")
    assert b"title = {Transformers Can Do Bayesian Inference}" in content

    [digest] = talk(telegram, "/digest")
    [history] = talk(telegram, "/history")
    first_title = html.unescape(digest.text.split("<b>")[2].split("</b>")[0])
    assert first_title in html.unescape(history.text)

    [settings] = talk(telegram, "/settings")
    press(telegram, settings, settings.button("Picks +1")["callback_data"])
    telegram.wait(lambda: "Picks per digest: <b>6</b>" in settings.text, what="settings edited")
    press(telegram, settings, settings.button("weekly")["callback_data"])
    telegram.wait(lambda: "<b>weekly</b>" in settings.text, what="frequency edited")
    assert subscriber_row(seeded).digest_size == 6

    [stopped] = talk(telegram, "/stop")
    assert "unsubscribed" in stopped.text and subscriber_row(seeded).state == "stopped"
    [back] = talk(telegram, "/start")
    assert "Welcome back" in back.text and subscriber_row(seeded).state == "active"


def test_settings_button_at_the_limit_is_not_modified_and_ignored(bot, telegram, seeded):
    onboard(telegram)
    talk(telegram, "/size 20")
    [settings] = talk(telegram, "/settings")
    answer = press(telegram, settings, settings.button("Picks +1")["callback_data"])
    assert answer["text"] == "Saved"
    [reply] = talk(telegram, "/status")  # the bot is still answering
    assert "20 picks" in reply.text


def test_delete_leaves_no_rows(bot, telegram, seeded):
    starter = onboard(telegram)
    press(telegram, starter, starter.buttons[1][1]["callback_data"])
    talk(telegram, "/mute whisper")
    talk(telegram, "/skip")
    talk(telegram, "/digest")
    [confirm] = talk(telegram, "/delete")
    press(telegram, confirm, confirm.button("No")["callback_data"])
    assert subscriber_row(seeded) is not None
    [confirm] = talk(telegram, "/delete")
    press(telegram, confirm, confirm.button("Yes")["callback_data"])
    telegram.wait(lambda: "erased" in confirm.text, what="deletion confirmed")
    with Session(seeded) as session:
        for table in Base.metadata.sorted_tables:
            if "subscriber_id" in table.c:
                assert session.scalar(select(func.count()).select_from(table)) == 0, table.name
        assert session.scalar(select(func.count()).select_from(Subscriber)) == 0
    assert "subscriber_id" in {c["name"] for c in inspect(seeded).get_columns("votes")}


def test_hostile_html_titles_are_escaped(bot, telegram, seeded, tmp_path):
    (tmp_path / "evil.txt").write_bytes(
        b"new\n\nMar 12\n\n<script>alert('x')</script> & <b>Bold</b> claims\n\nAbstract with <obj> & &amp;.\n")
    ingest_paths(seeded, [tmp_path / "evil.txt"], stamp=date(2026, 3, 20))
    onboard(telegram)
    talk(telegram, "/skip")
    [found] = talk(telegram, "/search script")
    assert "&lt;script&gt;alert('x')&lt;/script&gt; &amp; &lt;b&gt;Bold&lt;/b&gt;" in found.text
    assert found.parse_mode == "HTML"


def test_blocked_user_is_marked_inactive(bot, telegram, seeded):
    onboard(telegram)
    telegram.inject(ALICE, "403", "sendMessage")
    telegram.send(ALICE, "/status")
    telegram.wait(lambda: subscriber_row(seeded).state == "blocked", what="subscriber marked blocked")
    [back] = talk(telegram, "/start")
    assert subscriber_row(seeded).state == "active" and "Welcome back" in back.text


def test_429_is_retried_after_retry_after(bot, telegram, seeded):
    onboard(telegram)
    telegram.inject(ALICE, "429", "sendMessage", times=2, retry_after=1)
    [reply] = talk(telegram, "/status")
    assert "Next digest" in reply.text
    assert sum(1 for m in telegram.messages_to(ALICE) if "Next digest" in m.text) == 1


def test_timeout_never_sends_a_second_copy(bot, telegram, seeded):
    onboard(telegram)
    talk(telegram, "/skip")
    before = len(telegram.messages_to(ALICE))
    telegram.inject(ALICE, "slow", "sendMessage", delay=3.0)  # longer than the bot's 2 s timeout
    telegram.send(ALICE, "/digest")
    telegram.wait_messages(ALICE, before + 1)
    [reply] = talk(telegram, "/status")  # the bot carried on
    digests = [m for m in telegram.messages_to(ALICE) if "picks for you" in m.text]
    assert len(digests) == 1 and "Next digest" in reply.text


def test_unparseable_entities_fall_back_to_plain_text(bot, telegram, seeded):
    onboard(telegram)
    telegram.inject(ALICE, "entities", "sendMessage")
    [reply] = talk(telegram, "/status")
    assert reply.parse_mode is None
    assert "Next digest:" in reply.text and "<b>" not in reply.text


def test_arguments_after_any_whitespace_read_as_after_a_space(bot, telegram, seeded):
    """`/time\\n07:30` is `/time 07:30` over Telegram too: newline, tab, no-break space, U+3000."""
    onboard(telegram)
    for n, separator in enumerate(["\n", "\t", "\u00a0", "\u3000", " \n\t "]):
        at = f"0{n}:3{n}"
        [reply] = talk(telegram, f"/time{separator}{at}")
        assert f"Delivery time set to <b>{at}</b>" in reply.text, (separator, reply.text)
        assert subscriber_row(seeded).send_time == at
    [reply] = talk(telegram, "/interests\nadd\tdiffusion models")
    assert "Added “diffusion models”" in reply.text


def test_commands_for_another_bot_and_edits_are_ignored(bot, telegram, seeded):
    onboard(telegram)
    talk(telegram, "/skip")
    before = len(telegram.messages_to(ALICE))
    for text in ["/stop@OtherBot", "/delete@other_bot", "/size@OtherBot 3"]:
        telegram.send(ALICE, text)
    [mine] = talk(telegram, "/size@FeedBot_Test_Bot 7")  # addressed to feedbot, in any case: answered
    assert "<b>7</b> picks" in mine.text
    message_id = telegram.send(ALICE, "/size 9")
    telegram.wait_messages(ALICE, before + 2)
    telegram.edit(ALICE, message_id, "/stop")  # an edit neither runs the new command nor the old one again
    telegram.edit(ALICE, message_id, "/size 4")
    [status] = talk(telegram, "/status")
    telegram.wait_idle()
    [last] = talk(telegram, "/help")
    assert "9 picks" in status.text and "/digest" in last.text
    assert len(telegram.messages_to(ALICE)) == before + 4  # /size@feedbot, /size 9, /status, /help
    row = subscriber_row(seeded)
    assert (row.state, row.digest_size) == ("active", 9)


def test_edited_onboarding_answers_are_ignored(bot, telegram, seeded):
    talk(telegram, "/start")
    message_id = telegram.send(ALICE, "speech recognition")
    telegram.wait_messages(ALICE, 4)
    telegram.edit(ALICE, message_id, "Asia/Tokyo")  # would answer the time-zone question
    [done] = talk(telegram, "Europe/Berlin")
    assert "Europe/Berlin" in done.text
    telegram.wait_idle()
    talk(telegram, "/help")
    assert subscriber_row(seeded).timezone == "Europe/Berlin"
    assert len(telegram.messages_to(ALICE)) == 6


def test_a_stale_delete_or_settings_button_changes_nothing(bot, telegram, seeded):
    """/delete's "Yes" and the /settings buttons are bound to the subscription they were shown to:
    after /delete and a new /start (SQLite may give the new row the old id), they change nothing."""
    onboard(telegram)
    [stale_confirm] = talk(telegram, "/delete")
    [stale_settings] = talk(telegram, "/settings")
    [confirm] = talk(telegram, "/delete")
    press(telegram, confirm, confirm.button("Yes")["callback_data"])
    telegram.wait(lambda: "erased" in confirm.text, what="deletion confirmed")
    onboard(telegram)
    talk(telegram, "/skip")
    for message, label in [(stale_confirm, "Yes"), (stale_settings, "Pause"), (stale_settings, "Picks +1")]:
        answer = press(telegram, message, message.button(label)["callback_data"])
        assert "earlier subscription" in answer["text"] and answer.get("show_alert") == "true", answer
    row = subscriber_row(seeded)
    assert row is not None and row.paused_until is None and row.digest_size == 5
    with Session(seeded) as session:
        assert session.scalar(select(func.count()).select_from(Interest)) == 2  # the new subscription's
    [fresh] = talk(telegram, "/delete")
    press(telegram, fresh, fresh.button("Yes")["callback_data"])
    telegram.wait(lambda: subscriber_row(seeded) is None, what="the fresh button deletes")


def newcomer(chat, telegram_id, interests="speech recognition"):
    user = User(telegram_id, telegram_id)
    chat.command(user, "start")
    chat.text(user, interests)
    chat.command(user, "skip")
    return user


def shown_sources(engine) -> dict[str, int]:
    with Session(engine) as session:
        return dict(session.execute(select(Shown.source, func.count()).group_by(Shown.source)).all())


def test_search_records_nothing_so_its_matches_still_come_in_a_digest(chat, seeded):
    """Only a digest and the starter papers mark papers as shown: /search, and every other command,
    leaves today's best candidates to the digest. A vote on a search result records it."""
    user = newcomer(chat, 21)
    with Session(seeded) as session:
        subscriber = get_subscriber(session, 21)
        best = digests.build(session, chat.models.get(session), [subscriber], chat.clock(),
                             chat.settings)[subscriber.id].picks
    assert len(best) == 5
    before = shown_sources(seeded)
    for pick in best:
        found = chat.command(user, "search", pick.paper.title)
        assert f"v:{pick.paper_id}:+" in [row[0].data for reply in found for row in reply.keyboard]
    for name, _ in menu():
        if name not in ("digest", "delete", "stop", "start"):
            for args in ("", "speech", "add robots"):
                chat.command(user, name, args)
    chat.command(user, "resume")
    assert shown_sources(seeded) == before == {"starter": 5}
    replies = chat.command(user, "digest")
    assert [int(row[0].data.split(":")[1]) for r in replies for row in r.keyboard] == [p.paper_id for p in best]
    # A search result can still be rated: pressed on the message that shows it, it is recorded.
    [found] = chat.command(user, "search", "Bayesian inference")
    button = found.keyboard[0][0]
    assert chat.button(user, button.data, found.keyboard).notice == "Saved 👍"
    assert shown_sources(seeded) == {"starter": 5, "digest": 5, "search": 1}
    # Without the message that showed it, a paper never shown cannot be voted on.
    [other] = chat.command(user, "search", "diffusion")
    unseen = next(row[0].data for row in other.keyboard if row[0].data != button.data)
    assert "not shown" in chat.button(user, unseen, []).notice


def test_history_shows_every_digest_that_may_reach_with_its_state(seeded, settings):
    """Sent, in flight, resumable (`claimed`), possibly sent and partly sent digests are listed
    with their state; empty, skipped and failed-before-anything digests are not."""
    now = [datetime(2026, 3, 12, 9, 0, tzinfo=UTC)]
    chat = Chat(seeded, settings, clock=lambda: now[0])
    user = newcomer(chat, 22)
    states = ["sent", "claimed", "failed", "uncertain", "empty", "skipped", "failed", "sending"]
    for n, status in enumerate(states):
        now[0] = datetime(2026, 3, 12 + n, 9, 0, tzinfo=UTC)
        replies = chat.command(user, "digest")
        with transaction(seeded) as session:
            session.execute(update(Delivery).where(Delivery.id == replies[0].delivery).values(
                status=status, parts_sent=1 if n == 2 else 0, part_picks="2,3" if n == 2 else None))
    [page] = chat.command(user, "history")
    older = chat.button(user, page.keyboard[0][0].data)
    text = page.text + older.text
    for day, state in [(19, "being sent"), (15, "may not have reached you"),
                       (14, "partly delivered: 2 of 5 picks reached you"), (13, "on its way"), (12, "")]:
        heading = f"<b>{date(2026, 3, day):%a %d %b %Y}</b>"
        assert heading + (f" · <i>{state}</i>" if state else "\n") in text, (day, state)
    for day in (16, 17, 18):
        assert f"{date(2026, 3, day):%d %b %Y}" not in text
    assert page.text.count("\n👍 ") + page.text.count("\n· ") == 15 and "Older ▶" in page.keyboard[0][0].label


READ_ONLY = [(c.name, "") for c in COMMANDS if c.handler is not None and not c.writes("")] + [
    (c.name, "any words") for c in COMMANDS if c.handler is not None and not c.writes("any words")]


def test_read_commands_answer_while_another_connection_holds_the_write_lock(seeded, settings, database_url):
    """Commands that write nothing run in a read-only transaction: they answer while a writer
    holds SQLite's write lock (or PostgreSQL's table locks), where a write would wait."""
    chat = Chat(seeded, settings)
    user = newcomer(chat, 23)
    chat.command(user, "digest")
    impatient = make_engine(database_url)  # gives up on a lock at once instead of waiting
    sqlite = database_url.startswith("sqlite")

    @event.listens_for(impatient, "connect")
    def no_waiting(connection, _record):
        cursor = connection.cursor()
        cursor.execute("PRAGMA busy_timeout = 0" if sqlite else "SET lock_timeout = 50")
        cursor.close()
        connection.commit()  # PostgreSQL: a SET in a transaction rolled back would be undone

    locked = Chat(impatient, settings)
    holder = seeded.raw_connection()
    try:
        if sqlite:
            holder.isolation_level = None  # the statement below starts the transaction itself
            holder.execute("BEGIN IMMEDIATE")  # SQLite's one write lock
        else:
            holder.cursor().execute("LOCK TABLE subscribers, votes, shown, deliveries, interests, mutes, papers "
                                    "IN EXCLUSIVE MODE")  # reads pass, writes wait
        for name, args in READ_ONLY:
            replies = locked.command(user, name, args)
            assert replies and "went wrong" not in replies[0].text, name
        assert "I answer commands" in locked.text(user, "hello")[0].text
        assert locked.button(user, "h:0").text.startswith("<b>Your past digests</b>")
        with pytest.raises(OperationalError):  # the lock is real: a write cannot get through
            locked.command(user, "pause", "3")
    finally:
        holder.rollback()
        holder.close()
        impatient.dispose()
    assert "paused" in chat.command(user, "pause", "3")[0].text  # and gets through once it is free


def astral_dump(folder, n: int = 30):
    """Papers whose titles and abstracts are 𝐛𝐨𝐥𝐝 mathematical letters and emoji: each such character
    is one code point but two UTF-16 units, the unit Telegram's 4096 limit counts. Their titles
    name their arXiv ids, so links are short and the HTML is barely longer than its text."""
    def bold(i: int, k: int, size: int) -> str:
        return "".join(chr(0x1D400 + (i * 7 + k * 3 + j) % 52) for j in range(size))

    lines = ["new", "", "Mar 12", ""]
    for i in range(n):
        title = " ".join(bold(i, k, 12) for k in range(16)) + f" arXiv:2403.{i + 1:05d}"
        abstract = " ".join(f"😀 {' '.join(bold(i, k + s, 6) for k in range(8))} 🚀." for s in range(6))
        lines += [title, "", abstract, ""]
    path = folder / "astral.txt"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def even_dump(folder, title_units: int, n: int = 70):
    """Papers whose titles are all `title_units` characters long (ASCII): a /history line each of
    the same length, so a page can be filled to within a few units of its limit."""
    lines = ["new", "", "Mar 12", ""]
    for i in range(n):
        lead = f"Speech paper {i:03d} on recognition "
        lines += [lead + "w" * (title_units - len(lead)), "", f"Speech recognition study number {i}.", ""]
    path = folder / f"even{title_units}.txt"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


@pytest.mark.parametrize("title_units", [147, 150])
def test_a_history_page_filled_to_the_limit_is_one_message_telegram_takes(engine, settings, tmp_path, title_units):
    """A page is one message (a press edits it in place): when one digest fills it, the headings
    and "… and N more" lines of the digests after it still fit in 4096 UTF-16 units, counted from
    the parsed text as Telegram counts it, and every digest is still headed on its page."""
    from feedbot.ranking import textmodel
    from tests.fake_telegram import parse_html, utf16_length

    ingest_paths(engine, [even_dump(tmp_path, title_units)], stamp=date(2026, 3, 20))
    with Session(engine) as session:
        textmodel.ensure(session, settings.model_dir)
    now = [datetime(2026, 3, 20, 9, 0, tzinfo=UTC)]
    chat = Chat(engine, settings, clock=lambda: now[0])
    user = newcomer(chat, 25)
    chat.command(user, "size", "20")
    days = [date(2026, 3, 20 + n) for n in range(3)]
    for n, _ in enumerate(days):
        now[0] = datetime(2026, 3, 20 + n, 9, 0, tzinfo=UTC)
        replies = chat.command(user, "digest")
        with transaction(engine) as session:  # partly sent: the longest heading
            session.execute(update(Delivery).where(Delivery.id == replies[0].delivery).values(
                status="failed", parts_sent=1, part_picks="20"))
    [page] = chat.command(user, "history")
    pressed = chat.button(user, "h:0").text
    assert pressed == page.text
    assert utf16_length(parse_html(pressed)) <= 4096
    for day in days:
        assert f"<b>{day:%a %d %b %Y}</b>" in pressed, day


def test_replies_heavy_in_emoji_and_math_letters_are_split_as_telegram_counts(engine, settings, telegram, tmp_path):
    """The fake server refuses what Telegram refuses (over 4096 UTF-16 units of parsed text): a
    20-pick digest, /liked, /history, /search and the /export list of such papers all arrive."""
    import dataclasses

    from feedbot.chat.telegram import build_application
    from feedbot.ranking import textmodel
    from tests.conftest import BotRunner
    from tests.fake_telegram import parse_html, utf16_length

    ingest_paths(engine, [astral_dump(tmp_path)], stamp=date(2026, 3, 20))
    with Session(engine) as session:
        textmodel.ensure(session, settings.model_dir)
    bot_settings = dataclasses.replace(settings, telegram_token=telegram.token, telegram_api_url=telegram.base_url)
    runner = BotRunner(build_application(bot_settings, Chat(engine, settings), timeout=2.0, max_retries=3))
    runner.start()
    try:
        talk(telegram, "/start")
        talk(telegram, "/skip", expect=3)
        talk(telegram, "/skip")
        talk(telegram, "/size 20")

        def answer(command, done):
            before = len(telegram.messages_to(ALICE))
            telegram.send(ALICE, command)
            telegram.wait(lambda: done(telegram.messages_to(ALICE)[before:]), what=command)
            return telegram.messages_to(ALICE)[before:]

        parts = answer("/digest", lambda got: sum(len(m.buttons) for m in got) == 20)
        assert len(parts) > 1
        for message in parts:
            for up, _ in message.buttons:
                press(telegram, message, up["callback_data"])
        liked = answer("/liked", lambda got: any("\n20. " in parse_html(m.text) for m in got))
        found = answer("/search part", lambda got: len(got) >= 1)
        exported = answer("/export", lambda got: any(m.document for m in got))
        history = answer("/history", lambda got: len(got) >= 1)
        for message in parts + liked + found + exported + history:
            assert utf16_length(parse_html(message.text)) <= 4096
        assert len(liked) > 1 and len(exported) > 2 and "Your past digests" in history[0].text
    finally:
        runner.stop()


@pytest.mark.parametrize("other", ["d:yes", "s:size:+", "v"])
def test_a_press_racing_the_delete_button_gets_a_notice_not_an_error(seeded, settings, other):
    """"Yes, delete everything" tapped twice, or with a settings or vote button, at the same
    moment: one erases, the other answers with a notice (on PostgreSQL it had read the row the
    first then deleted), never an exception; every row is gone after."""
    import threading

    chat = Chat(seeded, settings)
    for round_ in range(3):
        user = newcomer(chat, 30 + round_)
        [ask] = chat.command(user, "delete")
        yes = ask.keyboard[0][0].data
        [page] = chat.command(user, "settings")
        [digest, *_] = chat.command(user, "digest")
        presses = {"d:yes": (yes, None), "v": (digest.keyboard[0][0].data, digest.keyboard),
                   "s:size:+": (next(b.data for row in page.keyboard for b in row if b.data.startswith("s:size:+")),
                                None)}
        barrier, answers, errors = threading.Barrier(2), [], []

        def press(data, keyboard, user=user, barrier=barrier, answers=answers, errors=errors):
            barrier.wait()
            try:
                answers.append(chat.button(user, data, keyboard))
            except Exception as exc:  # noqa: BLE001 - the failure under test
                errors.append(exc)

        threads = [threading.Thread(target=press, args=(yes, None)),
                   threading.Thread(target=press, args=presses[other])]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == [] and len(answers) == 2
        with Session(seeded) as session:
            assert get_subscriber(session, user.telegram_id) is None
