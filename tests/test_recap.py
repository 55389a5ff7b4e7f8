"""The Sunday recap: sent once a week whatever the zone changes and restarts, on/off by /recap with
a default by frequency, readers' favourites only behind 3+ distinct readers, and terms gained and
faded; through the worker against the fake Bot API server, and in the console chat."""

import dataclasses
import io
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from feedbot.chat.console import Console
from feedbot.chat.conversation import Chat, User
from feedbot.chat.telegram import build_application
from feedbot.delivery import recaps, status
from feedbot.delivery.messages import escape
from feedbot.ranking import drift
from feedbot.ranking.textmodel import ModelCache
from feedbot.store import subscribers
from feedbot.store.db import transaction
from feedbot.store.models import MemberVote, Paper, Recap, Shown, Subscriber, Vote
from feedbot.worker import Worker
from tests.conftest import BotRunner
from tests.test_worker import FakeClock as Clock

SUNDAY = datetime(2026, 3, 15, 7, 30, tzinfo=UTC)  # 08:30 in Berlin, 03:30 in New York
EARLIER = datetime(2026, 3, 1, 12, tzinfo=UTC)  # before the recap's week
THIS_WEEK = datetime(2026, 3, 12, 12, tzinfo=UTC)


@pytest.fixture
def clock():
    return Clock(SUNDAY)


@pytest.fixture
def worker(seeded, settings, telegram, clock):
    """A worker whose bot talks to the fake Bot API server over HTTP, and its event loop."""
    bot_settings = dataclasses.replace(settings, telegram_token=telegram.token, telegram_api_url=telegram.base_url)
    runner = BotRunner(build_application(bot_settings, Chat(seeded, bot_settings, clock), timeout=2.0, max_retries=3))
    runner.start()
    yield runner, Worker(bot_settings, seeded, runner.application.bot, clock, broadcast_rate=0, part_pause=0)
    runner.stop()


def add_subscriber(engine, telegram_id: int, zone="Europe/Berlin", frequency="weekly", kind="private") -> int:
    with transaction(engine) as session:
        subscriber, _ = subscribers.subscribe(session, telegram_id, telegram_id, f"u{telegram_id}")
        subscriber.timezone, subscriber.frequency, subscriber.kind = zone, frequency, kind
        subscriber.created_at = EARLIER - timedelta(days=30)
        session.flush()
        return subscriber.id


def paper_ids(engine, word: str = "", limit: int = 400) -> list[int]:
    with Session(engine) as session:
        return list(session.scalars(select(Paper.id).where(Paper.title.ilike(f"%{word}%"))
                                    .order_by(Paper.id).limit(limit)))


def like(engine, subscriber_id: int, papers: list[int], at: datetime, origin: str = "tap", value: int = 1) -> None:
    with transaction(engine) as session:
        session.add_all(Vote(subscriber_id=subscriber_id, paper_id=pid, value=value, voted_at=at, origin=origin)
                        for pid in papers)


def title(engine, paper_id: int) -> str:
    with Session(engine) as session:
        return session.get(Paper, paper_id).title


def recaps_to(telegram, chat_id: int):
    return [m for m in telegram.messages_to(chat_id) if "your week to" in m.text]


def test_once_a_week_across_a_zone_change_and_a_restart(worker, telegram, seeded, clock):
    runner, first = worker
    sid = add_subscriber(seeded, 501)
    liked = paper_ids(seeded, "graph", 2)
    like(seeded, sid, liked, THIS_WEEK)
    clock.now = SUNDAY - timedelta(hours=1)  # 07:30 in Berlin: not yet
    assert runner.call(first.sweep_recaps()) == {}
    clock.now = SUNDAY
    assert runner.call(first.sweep_recaps()) == {"sent": 1}
    (message,) = recaps_to(telegram, 501)
    assert "your week to Sun 15 Mar" in message.text and "You liked" in message.text
    assert all(title(seeded, pid) in message.text for pid in liked)
    with transaction(seeded) as session:  # to New York, where it is still Sunday morning
        subscribers.set_timezone(session.get(Subscriber, sid), "America/New_York")
    clock.now = datetime(2026, 3, 15, 13, 0, tzinfo=UTC)  # 09:00 there: due by the clock, the week is taken
    restarted = Worker(first.settings, seeded, runner.application.bot, clock, broadcast_rate=0, part_pause=0)
    assert runner.call(restarted.sweep_recaps()) == {}
    assert runner.call(first.sweep_recaps()) == {}
    assert len(recaps_to(telegram, 501)) == 1
    clock.now = datetime(2026, 3, 22, 12, 30, tzinfo=UTC)  # the next Sunday, 08:30 in New York
    assert runner.call(restarted.sweep_recaps()) == {"empty": 1}, "a week with nothing to say sends nothing"
    clock.now = datetime(2026, 3, 29, 12, 30, tzinfo=UTC)
    like(seeded, sid, paper_ids(seeded, "video", 1), clock.now - timedelta(days=2))
    assert runner.call(restarted.sweep_recaps()) == {"sent": 1}
    assert "your week to Sun 29 Mar" in recaps_to(telegram, 501)[-1].text
    with Session(seeded) as session:
        assert [(r.week.isoformat(), r.status) for r in session.scalars(select(Recap).order_by(Recap.week))] == [
            ("2026-03-09", "sent"), ("2026-03-16", "empty"), ("2026-03-23", "sent")]
        assert "recaps this week: sent 1" in list(recaps.status_lines(session, clock.now))


def test_on_off_and_the_default_by_frequency(seeded, clock):
    weekly, daily, off, on = (add_subscriber(seeded, n, frequency=f) for n, f in
                              ((601, "weekly"), (602, "daily"), (603, "weekly"), (604, "weekdays")))
    with transaction(seeded) as session:
        subscribers.set_recap(session.get(Subscriber, off), "off")
        subscribers.set_recap(session.get(Subscriber, on), " ON ")
    with Session(seeded) as session:
        assert [(s.id, week.isoformat()) for s, week in recaps.due(session, clock.now)] == [
            (weekly, "2026-03-09"), (on, "2026-03-09")]
        assert [session.get(Subscriber, s).recap for s in (weekly, daily, off, on)] == [None, None, False, True]
        assert recaps.due(session, SUNDAY - timedelta(days=1)) == []  # Saturday
    with transaction(seeded) as session:  # paused: no recap either
        subscribers.pause(session.get(Subscriber, weekly), "7", SUNDAY.date())
    with Session(seeded) as session:
        assert [s.id for s, _ in recaps.due(session, clock.now)] == [on]


def test_recap_command_in_the_console_chat(seeded, settings, clock):
    out = io.StringIO()
    console = Console(Chat(seeded, settings, clock), User(7, 7), out)

    def answer(line: str) -> str:
        before = len(out.getvalue())
        console.handle(line)
        return out.getvalue()[before:]

    for line in ["/start", "speech recognition", "/skip"]:
        console.handle(line)
    assert "The Sunday recap is off (the default with daily digests)" in answer("/recap")
    assert "/recap on to turn it on" in answer("/recap")
    assert "The Sunday recap is on:" in answer("/recap on")
    assert "The Sunday recap is off:" in answer("/recap off")
    assert "Send /recap on or /recap off" in answer("/recap sometimes")
    assert "/recap" in answer("/help")
    assert "Sunday recap: off" in answer("/settings")
    with transaction(seeded) as session:
        session.get(Subscriber, subscribers.get(session, 7).id).recap = None
    console.handle("/frequency weekly")
    assert "The Sunday recap is on (the default with weekly digests)" in answer("/recap")


def test_readers_favourites_need_three_distinct_readers_and_exclude_imports(seeded, settings, clock):
    papers = paper_ids(seeded)
    reader = add_subscriber(seeded, 700)
    others = [add_subscriber(seeded, 701 + n, frequency="daily") for n in range(4)]
    group = add_subscriber(seeded, -1001, kind="group", frequency="daily")
    three, two, imported, old, by_group = papers[:5]
    for n, sid in enumerate(others[:3]):
        like(seeded, sid, [three], THIS_WEEK + timedelta(hours=n))
    like(seeded, others[0], [two, by_group], THIS_WEEK)
    like(seeded, others[1], [two], THIS_WEEK)
    like(seeded, others[1], [by_group], THIS_WEEK)
    like(seeded, others[2], [imported], THIS_WEEK)
    like(seeded, others[3], [imported], THIS_WEEK, origin="import")
    like(seeded, others[0], [imported, old], THIS_WEEK, origin="import")
    like(seeded, others[1], [old], EARLIER)
    like(seeded, others[2], [old], EARLIER)
    like(seeded, others[3], [old], THIS_WEEK)
    with transaction(seeded) as session:  # a member is a person: 701 liked both privately and here
        session.add_all(MemberVote(subscriber_id=group, paper_id=by_group, member_id=m, value=v, voted_at=THIS_WEEK)
                        for m, v in ((701, 1), (703, 1), (9, -1)))
        session.add_all(MemberVote(subscriber_id=group, paper_id=two, member_id=m, value=v, voted_at=THIS_WEEK)
                        for m, v in ((701, 1), (9, -1)))
    with Session(seeded) as session:
        popular = recaps.readers_likes(session, clock.now - recaps.WEEK, clock.now)
        assert {p: popular[p] for p in (three, two, imported, old, by_group)} == {
            three: 3, two: 2, imported: 1, old: 1, by_group: 3}
        content = recaps.build(session, None, session.get(Subscriber, reader), clock.now, settings, popular)
        assert [(p.id, n) for p, n in content.popular] == [(three, 3), (by_group, 3)]
        text = "\n".join(r.text for r in recaps.render(content))
        assert escape(title(seeded, three)) in text and "liked by 3 readers" in text
        assert escape(title(seeded, two)) not in text and escape(title(seeded, old)) not in text
        # A reader who was shown the paper does not get it as a favourite they missed.
        content = recaps.build(session, None, session.get(Subscriber, others[0]), clock.now, settings, popular)
        assert [p.id for p, _ in content.popular] == []
        assert [p.id for p in content.liked] == [three, two, by_group]
        assert content.imported == 2


def test_a_group_gets_the_recap_of_its_members_votes(seeded, settings, clock):
    group = add_subscriber(seeded, -1003, kind="group")
    kept, split, old = paper_ids(seeded, "graph", 3)
    with transaction(seeded) as session:
        session.add_all(MemberVote(subscriber_id=group, paper_id=pid, member_id=m, value=v, voted_at=at)
                        for pid, m, v, at in ((kept, 1, 1, THIS_WEEK), (kept, 2, 1, THIS_WEEK),
                                              (split, 1, 1, THIS_WEEK), (split, 2, -1, THIS_WEEK),
                                              (old, 1, 1, EARLIER)))
    with Session(seeded) as session:
        assert [(s.id, week.isoformat()) for s, week in recaps.due(session, clock.now)] == [(group, "2026-03-09")]
        model = ModelCache(settings.model_dir).get(session)
        content = recaps.build(session, model, session.get(Subscriber, group), clock.now, settings, {})
        assert [p.id for p in content.liked] == [kept]
        text = "\n".join(r.text for r in recaps.render(content))
        assert "this chat's week to Sun 15 Mar" in text and "This chat liked" in text
        assert escape(title(seeded, kept)) in text and escape(title(seeded, split)) not in text


votes = st.lists(st.tuples(st.integers(0, 6), st.integers(0, 7), st.sampled_from([1, 1, 1, -1]),
                           st.booleans(), st.sampled_from(["tap", "tap", "import"])), max_size=60)
# (group, paper, member, value, this week): members are people, some of them subscribers too (800-806)
member_votes = st.lists(st.tuples(st.integers(0, 2), st.integers(0, 7), st.sampled_from([800, 801, 802, 1, 2]),
                                  st.sampled_from([1, -1]), st.booleans()), max_size=30)


@hypothesis_settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(votes=votes, member_votes=member_votes)
def test_no_paper_behind_fewer_than_three_readers_is_ever_in_a_recap(seeded, settings, votes, member_votes):
    """Random 👍/👎 of seven people and of members of three groups (some of them the same people),
    in the week or before it, tapped or imported: every paper in any recap is the recipient's own
    like or has 3+ distinct people who liked it."""
    now = SUNDAY
    with transaction(seeded) as session:
        for table in (Vote, MemberVote, Shown, Recap, Subscriber):
            session.execute(delete(table))
    people = [add_subscriber(seeded, 800 + n) for n in range(7)]
    chats = [add_subscriber(seeded, -1002 - n, kind="group") for n in range(3)]
    papers = paper_ids(seeded)[:8]
    with transaction(seeded) as session:
        for who, paper, value, recent, origin in votes:
            session.merge(Vote(subscriber_id=people[who], paper_id=papers[paper], value=value, origin=origin,
                               voted_at=THIS_WEEK if recent else EARLIER))
        for chat, paper, member, value, recent in member_votes:
            session.merge(MemberVote(subscriber_id=chats[chat], paper_id=papers[paper], member_id=member,
                                     value=value, voted_at=THIS_WEEK if recent else EARLIER))
    likers = {p: set() for p in papers}  # the people who liked each paper this week
    for who, paper, value, recent, origin in votes:
        likers[papers[paper]].discard(800 + who)  # a later vote on the same paper replaced it
        if value == 1 and recent and origin == "tap":
            likers[papers[paper]].add(800 + who)
    last = {(chat, paper, member): (value, recent) for chat, paper, member, value, recent in member_votes}
    for (_, paper, member), (value, recent) in last.items():
        if value == 1 and recent:
            likers[papers[paper]].add(member)
    with Session(seeded) as session:
        popular = recaps.readers_likes(session, now - recaps.WEEK, now)
        assert {pid: n for pid, n in popular.items() if pid in likers} == \
            {pid: len(who) for pid, who in likers.items() if who}
        titles = {pid: escape(session.get(Paper, pid).title) for pid in papers}
        model = ModelCache(settings.model_dir).get(session)
        for sid in [*people, *chats]:
            subscriber = session.get(Subscriber, sid)
            content = recaps.build(session, model, subscriber, now, settings, popular)
            own = {p.id for p in content.liked}
            text = "\n".join(r.text for r in recaps.render(content))
            for pid in papers:
                if titles[pid] in text:
                    assert pid in own or len(likers[pid]) >= 3, (sid, pid, likers[pid])
            assert all(len(likers[p.id]) >= 3 and subscriber.telegram_id not in likers[p.id]
                       for p, _ in content.popular)


def test_one_person_in_several_chats_is_one_reader(seeded, settings, clock):
    """A person who likes a paper privately and in groups of their own is still one reader: the
    paper is in no one else's recap."""
    paper = paper_ids(seeded)[0]
    person = add_subscriber(seeded, 710)
    reader = add_subscriber(seeded, 711)
    like(seeded, person, [paper], THIS_WEEK)
    with transaction(seeded) as session:
        for n in range(3):
            chat = add_subscriber(seeded, -1010 - n, kind=["group", "channel", "group"][n])
            session.add(MemberVote(subscriber_id=chat, paper_id=paper, member_id=710, value=1, voted_at=THIS_WEEK))
    with Session(seeded) as session:
        popular = recaps.readers_likes(session, clock.now - recaps.WEEK, clock.now)
        assert popular[paper] == 1
        content = recaps.build(session, None, session.get(Subscriber, reader), clock.now, settings, popular)
        assert content.popular == []


def test_terms_gained_and_faded(seeded, settings, clock):
    sid = add_subscriber(seeded, 900)
    """Graph papers liked before the week, language-model papers in it: the terms gained are the new
    papers' words, the ones faded the graph papers'."""
    graphs = paper_ids(seeded, "graph", 6)
    models = [p for p in paper_ids(seeded, "language model") if p not in graphs][:6]
    like(seeded, sid, graphs, EARLIER)
    like(seeded, sid, models, THIS_WEEK)
    with Session(seeded) as session:
        model = ModelCache(settings.model_dir).get(session)
        moved = recaps.build(session, model, session.get(Subscriber, sid), clock.now, settings, {}).moved

        def words(ids: list[int]) -> str:
            return " ".join(f"{p.title} {p.abstract}".casefold() for p in session.scalars(
                select(Paper).where(Paper.id.in_(ids))))

        assert len(moved.gained) == drift.TERMS and moved.faded, moved
        assert all(term in words(models) for term in moved.gained), moved
        assert all(term in words(graphs) for term in moved.faded), moved
        assert "graph" in moved.faded
        likes = [drift.Like(pid, EARLIER) for pid in graphs]
        assert drift.drift(model, session, likes, likes, clock.now - recaps.WEEK, clock.now, 90.0) == \
            drift.Drift([], []), "no new like this week: nothing moved"
        assert drift.drift(model, session, [], likes, clock.now - recaps.WEEK, clock.now, 90.0) == \
            drift.Drift([], []), "a first week says nothing of gains"


def test_claimers_at_once_build_one_recap(seeded, settings, clock):
    """Eight threads claiming the same recap against the real database: one wins, the rest find it taken."""
    from concurrent.futures import ThreadPoolExecutor

    sid = add_subscriber(seeded, 505)
    like(seeded, sid, paper_ids(seeded, "graph", 1), THIS_WEEK)
    with Session(seeded) as session:
        ((subscriber, week),) = recaps.due(session, clock.now)
        session.expunge(subscriber)
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: recaps.claim_and_build(seeded, None, settings, subscriber, week, clock.now,
                                                                 {}, recaps.runs.Trouble()), range(8)))
    assert sorted(r if isinstance(r, str) else "claimed" for r in results) == ["claimed"] + ["taken"] * 7
    with Session(seeded) as session:
        assert recaps.due(session, clock.now) == []


def test_a_stopping_worker_claims_no_more_recaps(worker, telegram, seeded, clock):
    runner, first = worker
    for n in range(3):
        like(seeded, add_subscriber(seeded, 510 + n), paper_ids(seeded, "graph", 1), THIS_WEEK)
    first.stopping.set()
    assert runner.call(first.sweep_recaps()) == {}
    with Session(seeded) as session:
        assert session.scalars(select(Recap)).all() == [] and len(recaps.due(session, clock.now)) == 3


def test_a_blocked_chat_gets_no_recap_and_is_deactivated(worker, telegram, seeded, clock):
    runner, first = worker
    blocked, fine = add_subscriber(seeded, 503), add_subscriber(seeded, 504)
    like(seeded, blocked, paper_ids(seeded, "graph", 1), THIS_WEEK)
    like(seeded, fine, paper_ids(seeded, "video", 1), THIS_WEEK)
    telegram.inject(503, "403")
    assert runner.call(first.sweep_recaps()) == {"blocked": 1, "sent": 1}
    assert recaps_to(telegram, 503) == [] and len(recaps_to(telegram, 504)) == 1
    with Session(seeded) as session:
        assert session.get(Subscriber, blocked).state == "blocked"
        assert session.scalar(select(Recap.status).where(Recap.subscriber_id == blocked)) == "blocked"
        assert not [p for p in status.health(session, clock.now) if p.startswith("recaps")], \
            "a blocked chat is no failure of the job"


def test_a_group_upgraded_to_a_supergroup_gets_its_recap_there_once(worker, telegram, seeded, clock):
    """The migration's service messages were missed: the old chat id refuses the recap, which goes
    to the new one, and the chat moves there for good."""
    runner, first = worker
    group = add_subscriber(seeded, -1005, kind="group")
    with transaction(seeded) as session:
        session.add_all(MemberVote(subscriber_id=group, paper_id=pid, member_id=m, value=1, voted_at=THIS_WEEK)
                        for pid in paper_ids(seeded, "graph", 2) for m in (1, 2))
    telegram.migrated[-1005] = -100500
    assert runner.call(first.sweep_recaps()) == {"sent": 1}
    assert [m for m in telegram.messages_to(-100500) if "this chat's week to" in m.text]
    assert runner.call(first.sweep_recaps()) == {}
    with Session(seeded) as session:
        assert (session.get(Subscriber, group).telegram_id, session.get(Subscriber, group).chat_id) == \
            (-100500, -100500)
        assert session.scalar(select(Recap.status).where(Recap.subscriber_id == group)) == "sent"


def test_a_failing_recap_job_is_shown_until_it_works_and_loses_no_recap(worker, telegram, seeded, clock, monkeypatch):
    runner, first = worker
    sid = add_subscriber(seeded, 502)
    like(seeded, sid, paper_ids(seeded, "graph", 1), THIS_WEEK)

    def broken(*args, **kwargs):
        raise RuntimeError("injected fault")

    monkeypatch.setattr(recaps, "readers_likes", broken)
    assert runner.call(first.sweep_recaps()) == {}
    first.heartbeat.alive()
    with Session(seeded) as session:
        assert any(p.startswith("recaps failing since") and "injected fault" in p
                   for p in status.health(session, clock.now))
    monkeypatch.undo()
    assert runner.call(first.sweep_recaps()) == {"sent": 1}
    assert len(recaps_to(telegram, 502)) == 1
    with Session(seeded) as session:
        assert status.health(session, clock.now) == []
