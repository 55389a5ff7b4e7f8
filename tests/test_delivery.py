"""The delivery module: the pure outcome → state rule, and every fault at every part of a digest
of 1–3 parts, against the real database — no part is ever sent twice, and no digest silently
vanishes (it ends `sent`, `blocked` or `uncertain`, with a reason the admin can read)."""

from __future__ import annotations

import asyncio
import itertools
import os
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from telegram import Bot
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter, TimedOut
from telegram.request import HTTPXRequest

from feedbot.delivery import deliveries, digests, outcomes, ownership, rows
from feedbot.ranking import recommend
from feedbot.store import subscribers
from feedbot.store.db import transaction
from feedbot.store.models import Delivery, Heartbeat, Paper, Shown, Subscriber

NOW = datetime(2026, 3, 12, 9, 0, tzinfo=UTC)
DAY = date(2026, 3, 12)


class Crash(BaseException):
    """The process dies here: nothing after it runs, only the database remains."""


def fault(kind: str) -> BaseException:
    """The exception python-telegram-bot raises for each kind of fault."""
    if kind == "429":
        return RetryAfter(5)
    if kind == "timeout":
        return TimedOut()
    if kind == "403":
        return Forbidden("Forbidden: bot was blocked by the user")
    if kind == "5xx":
        return NetworkError("Internal Server Error (500)")
    if kind == "400":
        return BadRequest("Bad Request: message is too long")
    if kind == "gone":
        return BadRequest("Bad Request: chat not found")
    if kind == "refused":
        error = NetworkError("httpx.ConnectError: [Errno 111] Connection refused")
        error.__cause__ = httpx.ConnectError("[Errno 111] Connection refused")
        return error
    return Crash()


FAULTS = ("429", "timeout", "403", "5xx", "refused", "400", "gone", "crash")


# --- the pure rule -----------------------------------------------------------------------------

@given(st.integers(1, 4), st.lists(st.sampled_from(outcomes.OUTCOMES), min_size=1, max_size=12))
def test_outcomes_never_resend_a_confirmed_part(total, sequence):
    """Replaying any sequence of outcomes: the next part tried is always the first unconfirmed
    one, a part is confirmed once, and attempts stop in a final state."""
    confirmed, state, tried = 0, "claimed", []
    for outcome in sequence:
        if state in outcomes.FINAL:
            break
        tried.append(confirmed)
        if outcome == outcomes.DELIVERED:
            confirmed += 1
        state = outcomes.after(outcome, confirmed, total)
        assert state in outcomes.FINAL + ("claimed", "sending")
        if state in ("sent", "empty"):
            assert confirmed == total
    delivered = [p for p, o in zip(tried, sequence, strict=False) if o == outcomes.DELIVERED]
    assert delivered == sorted(set(delivered))  # each part at most once, in order


def test_each_outcome_has_one_state():
    assert outcomes.after(outcomes.DELIVERED, 1, 2) == "sending"
    assert outcomes.after(outcomes.DELIVERED, 2, 2) == "sent"
    assert outcomes.after(outcomes.DELIVERED, 1, 1, empty=True) == "empty"
    assert outcomes.after(outcomes.REFUSED, 1, 3) == "claimed"
    assert outcomes.after(outcomes.THROTTLED, 1, 3) == "claimed"
    assert outcomes.after(outcomes.GONE, 0, 1) == "blocked"
    assert outcomes.after(outcomes.UNKNOWN, 0, 1) == "uncertain"
    assert outcomes.after(outcomes.BLOCKED, 1, 2) == "blocked"
    assert outcomes.after(outcomes.EXPIRED, 0, 2) == "skipped"
    assert outcomes.after(outcomes.EXPIRED, 1, 2) == "failed"


@pytest.mark.parametrize("kind", FAULTS[:-1])
def test_classify_each_fault(kind):
    expected = {"429": "throttled", "refused": "refused", "timeout": "unknown", "5xx": "unknown",
                "403": "blocked", "400": "rejected", "gone": "gone"}[kind]
    assert outcomes.classify(fault(kind)) == expected


def test_a_real_refused_connection_is_refused_not_unknown():
    """python-telegram-bot against a port nobody listens on: nothing was sent, so it may be retried."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    bot = Bot("123:ABC", base_url=f"http://127.0.0.1:{port}/bot", request=HTTPXRequest(connect_timeout=2))

    async def send():
        try:
            await bot.send_message(1, "hello")
        except Exception as exc:  # noqa: BLE001 - the exception is what is checked
            return exc

    assert outcomes.classify(asyncio.run(send())) == outcomes.REFUSED


# --- every fault at every part, on the real database -------------------------------------------

def claim_digest(engine, telegram_id: int, picks: int, title_words: int,
                 arxiv: bool = False) -> tuple[int, list[int]]:
    """A subscriber with a claimed digest of `picks` new papers (titles of `title_words` words, so
    the test controls how the digest splits); the delivery id and the papers' ids."""
    with transaction(engine) as session:
        subscriber, _ = subscribers.subscribe(session, telegram_id, telegram_id, "u")
        session.flush()
        ids = []
        for n in range(picks):
            paper = Paper(key=f"k{telegram_id}-{n}", arxiv_id=f"2603.0100{n}" if arxiv else None,
                          title=f"Paper {n} " + "word " * title_words, abstract="An abstract.", first_listed=DAY)
            session.add(paper)
            session.flush()
            ids.append(paper.id)
        delivery_id = rows.claim(session, subscriber.id, DAY, NOW)
        chosen = [recommend.Pick(session.get(Paper, pid), 1.0, "", "because") for pid in ids]
        digests.record(session, [(digests.Digest(subscriber.id, DAY, DAY, chosen), delivery_id)], NOW)
    return delivery_id, ids


def make_digest(engine, telegram_id: int, parts: int) -> int:
    """A claimed digest whose picks render as exactly `parts` messages (long titles)."""
    delivery_id, _ = claim_digest(engine, telegram_id, parts, title_words=600)
    with Session(engine) as session:
        row = session.get(Delivery, delivery_id)
        assert len(digests.render(deliveries.recorded_digest(session, row_subscriber(session, row), row))) == parts
    return delivery_id


def row_subscriber(session, row):
    from feedbot.store.models import Subscriber

    return session.get(Subscriber, row.subscriber_id)


def dead_owner() -> str:
    import socket

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    return f"{socket.gethostname()}:{gone.pid}"


def run_until_settled(engine, faults: dict[tuple[int, int], str], monkeypatch) -> tuple[list[int], str, Delivery]:
    """Sweeps (recover, send) until nothing is left to send; faults[(attempt, part)] strikes once.
    Returns the parts Telegram received, in order."""
    received: list[int] = []
    attempt = itertools.count()

    async def write(function, *args):
        return function(*args)

    for _ in range(6):
        with transaction(engine) as session:
            outgoing, _, _ = deliveries.recover(session, NOW)
        if not outgoing:
            break
        [item] = outgoing
        number = next(attempt)

        async def transport(item, reply, number=number):
            part = item.replies.index(reply)
            kind = faults.pop((number, part), None)
            if kind is not None:
                if kind == "crash":
                    monkeypatch.setattr(rows, "this_process", dead_owner)  # it was a process now gone
                    with transaction(engine) as session:  # the row as the dead process left it
                        session.execute(Delivery.__table__.update().where(Delivery.id == item.delivery_id)
                                        .values(owner=dead_owner()))
                    raise Crash()
                if kind in ("timeout", "5xx"):
                    received.append(part)  # it did arrive; only the answer was lost
                raise fault(kind)
            received.append(part)
            return 1000 + part

        try:
            result = asyncio.run(deliveries.send(item, transport, write, engine, lambda: NOW))
        except Crash:
            monkeypatch.undo()
            continue
        if result is not None:
            deliveries.write_results(engine, [result], NOW)
    with Session(engine) as session:
        row = session.scalars(select(Delivery)).one()
        return received, row.status, row


@pytest.mark.parametrize("parts", [1, 2, 3])
def test_every_fault_at_every_part(engine, parts, monkeypatch):
    for telegram_id, (kind, position) in enumerate(itertools.product(FAULTS, range(parts)), 1):
        with transaction(engine) as session:
            session.execute(Delivery.__table__.delete())
        make_digest(engine, 10_000 * parts + telegram_id, parts)
        received, status, row = run_until_settled(engine, {(0, position): kind}, monkeypatch)
        case = f"{kind} at part {position + 1} of {parts}"
        assert len(received) == len(set(received)), f"a part was sent twice: {case}: {received}"
        assert received == sorted(received), case
        assert status in ("sent", "blocked", "uncertain", "failed"), case
        if status == "sent":
            assert received == list(range(parts)) and row.parts_sent == parts, case
        else:
            assert row.error, f"no reason recorded: {case}"
        if kind in ("429", "refused"):  # nothing reached Telegram: resumed at that part, never repeated
            assert status == "sent", case
        if kind in ("403", "gone"):
            assert status == "blocked", case
        if kind == "400":
            assert status == "failed", case
        if kind in ("timeout", "5xx", "crash"):
            assert status == "uncertain" and row.parts_sent == position, case
        # Recorded as shown: exactly the picks of the parts that went out (or may have).
        with Session(engine) as session:
            shown = session.scalars(select(Shown.position).where(Shown.delivery_id == row.id)
                                    .order_by(Shown.position)).all()
        assert shown == sorted(set(received) | ({position} if status == "uncertain" else set())), case


# --- a resumed digest never repeats or drops a pick, whatever changed since ----------------------

def _paper_ids(reply) -> list[int]:
    from feedbot.delivery.messages import numbered_papers

    return [pid for _, pid in numbered_papers(reply.keyboard)]


CHANGES = {
    # what an ingest or a source may change between the first attempt and the resume
    "longer title": lambda paper: setattr(paper, "title", paper.title + " more" * 200),
    "shorter title": lambda paper: setattr(paper, "title", "Short"),
}


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_a_resume_after_the_data_changed_sends_each_pick_once(engine, change):
    """Part 1 goes out, part 2 meets a 429 past the retries; then a paper changes (its title grows
    or shrinks) so the digest would split differently. The resume sends exactly the picks
    not yet sent: none twice, none dropped."""
    delivery_id, ids = claim_digest(engine, 77, 3, title_words=330, arxiv=True)
    received: list[int] = []

    async def write(function, *args):
        return function(*args)

    def attempt(refuse_part: int | None):
        with transaction(engine) as session:
            [item], _, _ = deliveries.recover(session, NOW)

        async def transport(item, reply):
            if item.replies.index(reply) == refuse_part:
                raise RetryAfter(30)
            received.extend(_paper_ids(reply))
            return 1

        result = asyncio.run(deliveries.send(item, transport, write, engine, lambda: NOW))
        deliveries.write_results(engine, [result], NOW)
        return item

    first = attempt(refuse_part=1)
    assert [len(_paper_ids(r)) for r in first.replies] == [2, 1]  # the split the test relies on
    assert received == ids[:2]
    with transaction(engine) as session:
        CHANGES[change](session.get(Paper, ids[0]))
    attempt(refuse_part=None)
    assert received == ids, f"{change}: picks received {received}, expected each of {ids} once"
    with Session(engine) as session:
        assert session.get(Delivery, delivery_id).status == "sent"


# --- who owns a row: identities a restart can repeat are dead ----------------------------------

def _sleeper():
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])


OWNERS = {
    # case: (owner name, heartbeat seen minutes ago or None, row touched minutes ago, alive?)
    "this process": (lambda live: ownership.this_process(), None, 30, True),
    "same host and pid as a dead run (a restarted container)":
        (lambda live: str(ownership.Owner(ownership.identity().host, os.getpid(), "0000dead.1", "0badc0de")),
         None, 1, False),
    "an older version's host:pid of this pid": (lambda live: f"{ownership.identity().host}:{os.getpid()}", None, 1,
                                                 False),
    "a reused pid (another start time)":
        (lambda live: str(ownership.Owner(ownership.identity().host, live.pid, "0000dead.1", "0badc0de")),
         None, 1, False),
    "a pid that is gone": (lambda live: str(ownership.Owner(ownership.identity().host, dead_pid(), "x.1", "t")),
                           None, 1, False),
    "a live process on this host": (lambda live: str(ownership.Owner(ownership.identity().host, live.pid,
                                                                     ownership.process_start(live.pid), "t")),
                                    None, 30, True),
    "a worker elsewhere with a fresh heartbeat": (lambda live: "elsewhere:1:b.1:t1", 1, 30, True),
    "a worker elsewhere whose heartbeat went quiet": (lambda live: "elsewhere:1:b.1:t2", 5, 1, False),
    "a sender elsewhere without heartbeat, touched lately": (lambda live: "elsewhere:7:b.1:t3", None, 1, True),
    "a sender elsewhere without heartbeat, untouched": (lambda live: "elsewhere:7:b.1:t4", None, 11, False),
}


def dead_pid() -> int:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    return gone.pid


@pytest.mark.parametrize("case", sorted(OWNERS))
def test_a_sending_row_whose_owner_is_dead_becomes_uncertain(engine, case):
    """Only an owner that may still be sending keeps its row `sending`; every identity a restart
    or a reboot can repeat (same host and pid, a reused pid) is recognised as dead."""
    name_of, beat_ago, touched_ago, alive = OWNERS[case]
    live = _sleeper()
    try:
        delivery_id = make_digest(engine, 5, 1)
        name = name_of(live)
        with transaction(engine) as session:
            assert rows.start_sending(session, delivery_id, owner=name, now=NOW - timedelta(minutes=touched_ago)) == 0
            if beat_ago is not None:
                session.add(Heartbeat(name=name, host="elsewhere", pid=1, version="x", started_at=NOW,
                                      seen_at=NOW - timedelta(minutes=beat_ago)))
        with transaction(engine) as session:
            deliveries.recover(session, NOW)
        with Session(engine) as session:
            row = session.get(Delivery, delivery_id)
        assert row.status == ("sending" if alive else "uncertain"), case
        if not alive:
            assert name in row.error
    finally:
        live.kill()
        live.wait()


# --- long message ids, many parts ----------------------------------------------------------------

def test_many_parts_with_long_message_ids_are_stored_whole(engine):
    delivery_id = make_digest(engine, 6, 20)
    big = 2**62

    async def write(function, *args):
        return function(*args)

    async def transport(item, reply):
        return big + item.replies.index(reply)

    with transaction(engine) as session:
        [item], _, _ = deliveries.recover(session, NOW)
    result = asyncio.run(deliveries.send(item, transport, write, engine, lambda: NOW))
    deliveries.write_results(engine, [result], NOW)
    long_picks = ",".join(["20"] * 200)  # far past 255 characters
    other = make_digest(engine, 7, 1)
    with transaction(engine) as session:
        rows.start_sending(session, other, now=NOW, part_picks=long_picks)
    with Session(engine) as session:
        row = session.get(Delivery, delivery_id)
        assert row.status == "sent" and [int(i) for i in row.message_ids.split(",")] == [big + n for n in range(20)]
        assert len(row.message_ids) > 255
        assert session.get(Delivery, other).part_picks == long_picks


def test_a_part_is_recorded_in_one_statement_after_earlier_attempts_ids(engine):
    """Recording a part appends its message id where the row stands: one statement (no read of
    the stored ids first), and the ids of an earlier attempt are kept ahead of it."""
    from sqlalchemy import event

    delivery_id = make_digest(engine, 9, 3)
    with transaction(engine) as session:
        rows.start_sending(session, delivery_id, now=NOW)
        rows.record_part(session, delivery_id, 1, [11], NOW)
        rows.finish(session, delivery_id, "claimed", now=NOW)  # handed back: a later attempt resumes
        rows.start_sending(session, delivery_id, now=NOW)
    statements = []

    def count(*args):
        statements.append(args[2])
    event.listen(engine, "before_cursor_execute", count)
    try:
        with transaction(engine) as session:
            statements.clear()
            rows.record_part(session, delivery_id, 2, [12], NOW)
            assert len([s for s in statements if "deliveries" in s]) == 1
    finally:
        event.remove(engine, "before_cursor_execute", count)
    with Session(engine) as session:
        row = session.get(Delivery, delivery_id)
        assert (row.parts_sent, row.message_ids) == (2, "11,12")


def test_a_progress_write_that_committed_but_raised_stores_no_id_twice(engine):
    """A commit whose answer was lost raises though the row changed: the next part's write merges
    its ids with the stored ones rather than appending them again."""
    delivery_id = make_digest(engine, 6, 3)
    failed = []

    async def write(function, *args):
        result = function(*args)
        if args and args[0] is rows.record_part and not failed:
            failed.append(args)
            raise ConnectionError("the connection closed after the commit")
        return result

    async def transport(item, reply):
        return 100 + item.replies.index(reply)

    with transaction(engine) as session:
        [item], _, _ = deliveries.recover(session, NOW)
    result = asyncio.run(deliveries.send(item, transport, write, engine, lambda: NOW))
    assert failed
    with Session(engine) as session:
        assert session.get(Delivery, delivery_id).message_ids == "100,101"
    deliveries.write_results(engine, [result], NOW)
    with Session(engine) as session:
        assert session.get(Delivery, delivery_id).message_ids == "100,101,102"


# --- picks are recorded only with a send --------------------------------------------------------

def test_an_admin_send_for_a_day_already_claimed_records_nothing(engine, settings):
    """`feedbot digest --send --user ID` when today's row exists: nothing is sent, so nothing may
    be recorded as shown (those papers stay on offer)."""
    delivery_id, ids = claim_digest(engine, 8, 2, title_words=5)
    with transaction(engine) as session:
        fresh = [Paper(key=f"fresh-{n}", title=f"Fresh paper {n}", abstract="Abstract.", first_listed=DAY)
                 for n in range(3)]
        session.add_all(fresh)
    with Session(engine, expire_on_commit=False) as session:
        subscriber = session.scalar(select(Subscriber).where(Subscriber.telegram_id == 8))
        before = session.scalar(select(func.count()).select_from(Shown))
    for claim in (deliveries.ADMIN, deliveries.SCHEDULED):
        built = {subscriber.id: digests.Digest(subscriber.id, DAY, DAY, [
            recommend.Pick(p, 1.0, "", "why") for p in fresh])}
        [(_, _, won)] = deliveries.claim_and_record(engine, [subscriber], built, NOW, claim)
        assert won is None
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(Shown)) == before
    built = {subscriber.id: digests.Digest(subscriber.id, DAY, DAY, [recommend.Pick(p, 1.0, "", "w") for p in fresh])}
    [(_, extra, won)] = deliveries.claim_and_record(engine, [subscriber], built, NOW, deliveries.COMMAND)
    assert won is None and len(extra.picks) == 3  # /digest's extra picks: recorded, and sent at once by the chat


def test_a_part_that_cannot_be_recorded_does_not_stop_the_digest(engine, monkeypatch, caplog):
    """Recording a part as it goes only serves a crash; when that write fails the digest goes on,
    and its end state records every part."""
    delivery_id = make_digest(engine, 9, 3)

    def broken(*args):
        raise RuntimeError("database hiccup")

    monkeypatch.setattr(deliveries, "record_part", broken)

    async def write(function, *args):
        return function(*args)

    async def transport(item, reply):
        return 500 + item.replies.index(reply)

    with transaction(engine) as session:
        [item], _, _ = deliveries.recover(session, NOW)
    result = asyncio.run(deliveries.send(item, transport, write, engine, lambda: NOW))
    deliveries.write_results(engine, [result], NOW)
    assert "could not record part 1" in caplog.text
    with Session(engine) as session:
        row = session.get(Delivery, delivery_id)
        assert (row.status, row.parts_sent, row.message_ids) == ("sent", 3, "500,501,502")


def test_ranking_that_fails_for_one_subscriber_still_ranks_the_others(seeded, settings, monkeypatch):
    from feedbot.delivery import runs
    from feedbot.ranking.textmodel import ModelCache

    with transaction(seeded) as session:
        for telegram_id in range(20, 27):
            subscribers.subscribe(session, telegram_id, telegram_id, "u")
    with Session(seeded, expire_on_commit=False) as session:
        subs = session.scalars(select(Subscriber).order_by(Subscriber.id)).all()
        model = ModelCache(settings.model_dir).get(session)
    poison = subs[4].id
    real = digests.build

    def build(session, model, group, *args, **kwargs):
        if any(s.id == poison for s in group):
            raise ValueError("a vote row this code cannot read")
        return real(session, model, group, *args, **kwargs)

    monkeypatch.setattr(digests, "build", build)
    trouble = runs.Trouble()
    built = deliveries.rank(seeded, model, subs, {s.id: DAY for s in subs}, NOW, settings, trouble)
    assert sorted(built) == sorted(s.id for s in subs if s.id != poison)
    assert trouble.errors == [f"ranking subscriber #{poison}: ValueError: a vote row this code cannot read"]

    def down(*args, **kwargs):
        raise ConnectionError("database unreachable")

    calls = []
    monkeypatch.setattr(deliveries, "RANK_FAILURES", 4)
    monkeypatch.setattr(digests, "build", lambda *a, **k: calls.append(1) or down())
    trouble = runs.Trouble()
    assert deliveries.rank(seeded, model, subs, {s.id: DAY for s in subs}, NOW, settings, trouble) == {}
    assert len(calls) <= 4 + 1 and trouble.errors  # bounded, not one pass per subscriber


# --- rows written together ------------------------------------------------------------------------

def row_state(engine, delivery_id: int) -> tuple:
    with Session(engine) as session:
        row = session.get(Delivery, delivery_id)
        subscriber = row_subscriber(session, row)
        shown = session.scalar(select(func.count()).select_from(Shown).where(Shown.delivery_id == delivery_id))
        return (row.status, row.error, row.parts_sent, row.message_ids, row.part_picks, row.finished_at is not None,
                subscriber.state, shown)


ENDS = [("sent", [701, 702], None, 3), ("empty", [703], "no papers today", 1), ("blocked", [], "403", 1),
        ("failed", [704], "400", 2), ("uncertain", [], "timed out", 1), ("claimed", [705], "429", 2)]


def test_end_states_written_together_are_those_written_one_by_one(engine):
    """`finish_many` (the sweep's batched end states) leaves every row, its subscriber and its
    picks as `finish` does, for each end state, after a resume whose first part went out earlier."""
    first, second = [], []
    for n, _ in enumerate(ENDS):
        for ids, telegram_id in ((first, 600 + n), (second, 700 + n)):
            delivery_id, _ = claim_digest(engine, telegram_id, 6, title_words=3)
            with transaction(engine) as session:
                rows.start_sending(session, delivery_id, now=NOW, part_picks="2,2,2")
                rows.record_part(session, delivery_id, 1, [700], NOW)
            ids.append(delivery_id)
    with transaction(engine) as session:
        for delivery_id, (status, message_ids, error, confirmed) in zip(first, ENDS, strict=True):
            rows.finish(session, delivery_id, status, message_ids, error, NOW, confirmed)
    with transaction(engine) as session:
        rows.finish_many(session, [(delivery_id, *end) for delivery_id, end in zip(second, ENDS, strict=True)], NOW)
    for one, together in zip(first, second, strict=True):
        assert row_state(engine, one) == row_state(engine, together)
    assert row_state(engine, second[0])[3] == "700,701,702"  # the resumed row keeps its earlier part's id


def test_missed_days_are_recorded_skipped_with_why_and_a_day_someone_has_is_left(engine):
    """Every missed (subscriber, day), two days of one subscriber included, ends `skipped` with
    its reason in one pass; a day already claimed keeps its row; recording again adds nothing."""
    from feedbot.delivery import due

    with transaction(engine) as session:
        subs = [subscribers.subscribe(session, 900 + n, 900 + n, "u")[0] for n in range(3)]
        session.flush()
        taken = rows.claim(session, subs[2].id, DAY, NOW)
    missed = [(subs[0], DAY - timedelta(days=1)), (subs[0], DAY), (subs[1], DAY), (subs[2], DAY)]
    with transaction(engine) as session:
        assert due.skip_missed(session, missed, NOW) == 3
    with transaction(engine) as session:
        assert due.skip_missed(session, missed, NOW) == 0
    with Session(engine) as session:
        found = {(r.subscriber_id, r.local_date): r for r in session.scalars(select(Delivery))}
    assert set(found) == {(s.id, d) for s, d in missed}
    assert found[(subs[2].id, DAY)].id == taken and found[(subs[2].id, DAY)].status == "claimed"
    for subscriber, day in missed[:3]:
        row = found[(subscriber.id, day)]
        assert row.status == "skipped" and row.finished_at is not None and row.parts_sent == 0
        assert f"of {subscriber.send_time} ({subscriber.timezone}): no worker ran" in row.error


@pytest.mark.parametrize("only_claimed", [False, True])
def test_picks_recorded_together_keep_each_paper_once_and_renumber_what_is_left(engine, only_claimed):
    """One batch holding a claimed digest, digests with no delivery and a paper twice for one
    subscriber: each (subscriber, paper) is recorded once, the first in batch order; a paper shown
    before is refused and the claimed digest's positions close up; with `only_claimed` the digests
    with no delivery record nothing."""
    with transaction(engine) as session:
        a, _ = subscribers.subscribe(session, 801, 801, "a")
        b, _ = subscribers.subscribe(session, 802, 802, "b")
        papers = [Paper(key=f"r{n}", title=f"Paper {n}", abstract="An abstract.", first_listed=DAY) for n in range(5)]
        session.add_all(papers)
        session.flush()
        p = [paper.id for paper in papers]
        subscribers.record_shown(session, a, [(p[0], 0.0, "")], "search")  # shown before
        delivery_id = rows.claim(session, a.id, DAY, NOW)

        def digest(subscriber, ids):
            picks = [recommend.Pick(session.get(Paper, i), 1.0 - n / 10, "", f"why {n} «ü» ' \\ NULL")
                     for n, i in enumerate(ids)]
            return digests.Digest(subscriber.id, DAY, DAY, picks)

        kept = digests.record(session, [(digest(a, [p[0], p[1], p[2]]), delivery_id), (digest(b, [p[1], p[3]]), None),
                                        (digest(a, [p[2], p[4]]), None)], NOW, only_claimed=only_claimed)
    assert kept[a.id] == ({p[1], p[2]} if only_claimed else {p[1], p[2], p[4]})
    assert kept.get(b.id, set()) == (set() if only_claimed else {p[1], p[3]})
    with Session(engine) as session:
        shown = {(s.subscriber_id, s.paper_id): s for s in session.scalars(select(Shown))}
    assert len(shown) == 1 + len(kept[a.id]) + len(kept.get(b.id, set()))
    assert shown[(a.id, p[0])].delivery_id is None  # the earlier one, untouched
    assert (shown[(a.id, p[1])].delivery_id, shown[(a.id, p[1])].position) == (delivery_id, 0)
    assert (shown[(a.id, p[2])].delivery_id, shown[(a.id, p[2])].position) == (delivery_id, 1)
    assert shown[(a.id, p[1])].reason == "why 1 «ü» ' \\ NULL"
