"""Concurrency for real: claimers released together by a barrier against the real database
(PostgreSQL and SQLite) — /digest against the sweep, `digest --send` beside the worker, two
sweeps at once. No paper is shown twice and no subscriber gets a second digest for a day. Plus:
SQLite reads (fits, ranking, status) never take the write lock a vote needs; workers heartbeat;
`feedbot status --check`; model fits picked up across processes."""

from __future__ import annotations

import functools
import sqlite3
import threading
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.orm import Session

from feedbot import cli
from feedbot.chat.conversation import Chat, User
from feedbot.delivery import deliveries, heartbeat, rows
from feedbot.ranking import textmodel
from feedbot.store import db, subscribers
from feedbot.store.db import one_write, transaction
from feedbot.store.models import Delivery, Heartbeat, Shown
from feedbot.worker import Worker

NOW = datetime(2026, 3, 12, 9, 0, tzinfo=UTC)
ROUNDS = 6


def add(engine, telegram_id, interests="language models"):
    with transaction(engine) as session:
        subscriber, _ = subscribers.subscribe(session, telegram_id, telegram_id, "u")
        subscriber.send_time = "08:00"
        subscribers.add_interests(session, subscriber, interests)


def together(*functions):
    """Run the functions in threads released at the same instant; their results, in order."""
    barrier = threading.Barrier(len(functions))
    results: list = [None] * len(functions)
    errors: list = []

    def run(n, function):
        try:
            barrier.wait()
            results[n] = function()
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(n, f)) for n, f in enumerate(functions)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    if errors:
        raise errors[0]
    return results


def assert_nothing_twice(engine):
    with Session(engine) as session:
        per_day = session.execute(select(Delivery.subscriber_id, Delivery.local_date, func.count())
                                  .group_by(Delivery.subscriber_id, Delivery.local_date)).all()
        assert all(n == 1 for _, _, n in per_day)


def shown_ids(replies):
    return [int(row[0].data.split(":")[1]) for reply in replies for row in reply.keyboard]


def test_digest_command_racing_the_sweep_shows_no_paper_twice(seeded, settings):
    models = textmodel.ModelCache(settings.model_dir)
    for n in range(ROUNDS):
        telegram_id = 900 + n
        add(seeded, telegram_id)
        worker = Worker(settings, seeded, clock=lambda: NOW)
        worker.models = models
        chat = Chat(seeded, settings, lambda: NOW, models)
        command = functools.partial(chat.digest, User(telegram_id, telegram_id))
        replies, (outgoing, _) = together(command, worker.digests.prepare)
        by_command = shown_ids(replies)
        by_sweep = [pid for item in outgoing if item.telegram_id == telegram_id for pid in item.paper_ids]
        assert by_command or by_sweep
        assert not set(by_command) & set(by_sweep), (by_command, by_sweep)
        claimed_by_command = replies[0].delivery is not None
        assert claimed_by_command != bool(by_sweep)  # exactly one of them is today's digest
    assert_nothing_twice(seeded)


def test_two_sweeps_and_an_admin_send_at_once_claim_each_digest_once(seeded, settings):
    for n in range(ROUNDS):
        add(seeded, 950 + n)
    models = textmodel.ModelCache(settings.model_dir)
    first, second = (Worker(settings, seeded, clock=lambda: NOW) for _ in range(2))
    first.models = second.models = models
    with Session(seeded, expire_on_commit=False) as session:
        admin_target = subscribers.get(session, 950)
    model = models.get(Session(seeded))
    (a, _), (b, _), c = together(first.digests.prepare, second.digests.prepare, lambda: deliveries.prepare(
        seeded, model, [(admin_target, NOW.date())], NOW, settings, deliveries.ADMIN))
    claims = Counter(item.subscriber_id for item in a + b + c)
    assert set(claims.values()) == {1} and len(claims) == ROUNDS
    papers = Counter((item.subscriber_id, pid) for item in a + b + c for pid in item.paper_ids)
    assert set(papers.values()) == {1}
    with Session(seeded) as session:
        assert session.scalar(select(func.count()).select_from(Shown)) == sum(papers.values())
    assert_nothing_twice(seeded)


# --- SQLite: reads never hold the write lock ---------------------------------------------------

def write_lock_free(url: str) -> bool:
    probe = sqlite3.connect(url.split("///", 1)[1], timeout=0)
    try:
        probe.execute("BEGIN IMMEDIATE")
        probe.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError:
        return False
    finally:
        probe.close()


@pytest.mark.parametrize("begin", [transaction, one_write])
def test_sqlite_write_transactions_take_the_write_lock_before_they_read(tmp_path, begin):
    """A write transaction begins IMMEDIATE, taking SQLite's one write lock before its first
    read: one that took it only at its first write could find it taken after reading, and fail."""
    url = f"sqlite:///{tmp_path / 'lock.db'}"
    db.upgrade(url)
    engine = db.make_engine(url)
    try:
        assert write_lock_free(url)
        with begin(engine) as session_or_connection:
            assert session_or_connection.execute(select(func.count()).select_from(Delivery)).scalar() == 0
            assert not write_lock_free(url)
        assert write_lock_free(url)
    finally:
        engine.dispose()


def test_one_write_commits_by_itself_and_leaves_later_transactions_whole(engine):
    """A part is recorded by one statement that commits as it runs (no transaction around it on
    PostgreSQL); the pooled connection it used must come back making real transactions, or a
    later claim that fails half-way would keep its first half."""
    from sqlalchemy import update

    from feedbot.store.models import Subscriber

    with transaction(engine) as session:
        session.add(Subscriber(telegram_id=1, chat_id=1))
    engine.dispose()  # one pooled connection from here: the one the write used serves the next transaction
    with one_write(engine) as connection:
        connection.execute(update(Subscriber).values(name="recorded"))
        if engine.dialect.name == "postgresql":  # committed as it ran: no BEGIN, no COMMIT
            assert connection.connection.driver_connection.autocommit
    with pytest.raises(RuntimeError), transaction(engine) as session:
        session.execute(update(Subscriber).values(name="half-way"))
        raise RuntimeError("a failure after the first write")
    with Session(engine) as session:
        assert session.scalar(select(Subscriber.name)) == "recorded"


@pytest.fixture
def probe_reads(seeded, database_url):
    """While any SELECT runs outside a write transaction, can someone else take the write lock?"""
    seen: list[bool] = []
    if not database_url.startswith("sqlite"):
        yield seen
        return

    def after(conn, cursor, statement, *args):
        if statement.lstrip().upper().startswith("SELECT") and not conn.get_execution_options().get("feedbot_write"):
            seen.append(write_lock_free(database_url))

    event.listen(seeded, "after_cursor_execute", after)
    yield seen
    event.remove(seeded, "after_cursor_execute", after)


def test_fits_ranking_and_status_leave_the_write_lock_free(seeded, settings, probe_reads, database_url, capsys,
                                                           monkeypatch, env):
    add(seeded, 990)
    with Session(seeded) as session:
        textmodel.ensure(session, settings.model_dir, force=True)
    worker = Worker(settings, seeded, clock=lambda: NOW)
    outgoing, _ = worker.digests.prepare()
    assert outgoing
    # And a vote goes through while a read transaction (ranking, say) is open.
    with Session(seeded) as reading:
        reading.execute(select(func.count()).select_from(Shown)).scalar()
        chat = Chat(seeded, settings, lambda: NOW)
        answer = chat.button(User(990, 990), f"v:{outgoing[0].paper_ids[0]}:+")
        assert answer.notice == "Saved 👍"
    if database_url.startswith("sqlite"):
        assert probe_reads and all(probe_reads)


# --- heartbeat and status --check --------------------------------------------------------------

def run_cli(monkeypatch, env, *args) -> int:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return cli.main(list(args))


def test_status_check_sees_a_dead_worker_and_stuck_deliveries(seeded, settings, env, monkeypatch, capsys):
    assert run_cli(monkeypatch, env, "status", "--check") == 1
    assert "no worker has ever reported" in capsys.readouterr().out
    beat = heartbeat.Beat(seeded)
    beat.alive()
    assert run_cli(monkeypatch, env, "status", "--check") == 0
    with transaction(seeded) as session:
        session.execute(Heartbeat.__table__.update().values(seen_at=datetime.now(UTC) - timedelta(minutes=5)))
    assert run_cli(monkeypatch, env, "status", "--check") == 1
    assert "no worker seen for 5 min" in capsys.readouterr().out
    beat.alive()
    add(seeded, 991)
    with transaction(seeded) as session:
        sid = subscribers.get(session, 991).id
        rows.claim(session, sid, datetime.now(UTC).date(), datetime.now(UTC) - timedelta(minutes=30))
    assert run_cli(monkeypatch, env, "status", "--check") == 1
    assert "1 deliveries stuck" in capsys.readouterr().out
    assert run_cli(monkeypatch, env, "status") == 0
    out = capsys.readouterr().out
    assert "worker:   alive" in out and "deliveries stuck in flight: 1" in out and "UTC" in out


def test_status_views_are_library_functions(seeded):
    from feedbot.delivery import status

    with Session(seeded) as session:
        assert status.health(session, datetime.now(UTC)) == ["no worker has ever reported"]
    heartbeat.Beat(seeded).alive()
    add(seeded, 993)
    with transaction(seeded) as session:
        sid = subscribers.get(session, 993).id
        rows.claim(session, sid, datetime.now(UTC).date(), datetime.now(UTC) - timedelta(minutes=30))
    with Session(seeded) as session:
        now = datetime.now(UTC)
        assert status.health(session, now) == ["1 deliveries stuck in claimed/sending"]
        assert next(status.worker_report(session, now)).startswith("worker:   alive: ")
        assert "deliveries today: claimed 1" in list(status.delivery_report(session, now))
        table = list(status.subscriber_table(session, now))
    assert table[1].split()[0] == "993" and table[-1] == "(1 subscribers)"


def test_an_ingest_elsewhere_is_picked_up_by_the_worker_and_the_chat(seeded, settings):
    from feedbot.sources.ingest import ingest_paths

    worker = Worker(settings, seeded, clock=lambda: NOW)
    with Session(seeded) as session:
        before = worker.models.get(session).corpus_version
        assert not worker.refits.stale()
    dump = settings.data_dir / "extra.txt"
    dump.write_text("x\n\nMar 12\n\nA brand new paper on quantum widgets\n\nWe study quantum widgets.\n")
    ingest_paths(seeded, [dump])  # as `feedbot ingest` in another process would
    assert worker.refits.stale()
    assert worker.refits.run()
    with Session(seeded) as session:
        after = worker.models.get(session).corpus_version
        assert after != before and after == textmodel.corpus_version(session)
        assert Chat(seeded, settings).models.get(session).corpus_version == after


def test_concurrent_saves_and_loads_never_break(seeded, settings):
    with Session(seeded) as session:
        model = textmodel.fit(session)
    failures = []

    def save():
        for _ in range(5):
            textmodel.save(model, settings.model_dir)

    def load():
        for _ in range(20):
            if textmodel.load_latest(settings.model_dir) is None:
                failures.append("none")

    together(save, save, load)
    assert not failures
    assert not list(settings.model_dir.glob(".tfidf-*.tmp"))
