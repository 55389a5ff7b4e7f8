"""Several `feedbot worker` processes on one PostgreSQL database, against the fake Bot API server:
one leads, the others stand by and take over when it dies or loses its lock's connection; every
worker sends, each part once, and together within FEEDBOT_SEND_RATE. On SQLite a second worker is
refused."""

import asyncio
import subprocess
import sys
import threading
import time
from datetime import date

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from feedbot import locks
from feedbot.delivery import deliveries, rows
from feedbot.delivery.messages import Reply
from feedbot.delivery.ownership import Owner
from feedbot.roles import Turn
from feedbot.store.db import transaction
from feedbot.store.models import Delivery, Heartbeat, Subscriber
from feedbot.worker import Worker
from tests.test_bot import talk
from tests.test_worker import add_subscriber, an_hour_ago, digests_to

POSTGRESQL = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
SQLITE = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
RATE = 10  # FEEDBOT_SEND_RATE for the workers here: messages a second, all workers together


def start_worker(env, telegram, **extra):
    return subprocess.Popen(
        [sys.executable, "-m", "feedbot.cli", "worker"],
        env={**env, "TELEGRAM_BOT_TOKEN": telegram.token, "FEEDBOT_TELEGRAM_API_URL": telegram.base_url,
             "FEEDBOT_LOG_LEVEL": "INFO", "FEEDBOT_LEADER_CHECK_SECONDS": "1", "FEEDBOT_SEND_RATE": str(RATE),
             **extra},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True,
    )


def roles(engine) -> dict[int, tuple[str | None, bool]]:
    """pid → (role, polling) of every worker that reported."""
    with Session(engine) as session:
        return {pid: (role, polling) for pid, role, polling in session.execute(
            select(Heartbeat.pid, Heartbeat.role, Heartbeat.polling))}


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def wait_roles(engine, workers: list[subprocess.Popen]) -> int:
    """Every worker reported a role, and exactly one leads: its pid."""
    def settled():
        seen = roles(engine)
        if all(seen.get(w.pid, (None,))[0] for w in workers):
            leaders = [w.pid for w in workers if seen[w.pid][0] == "leader"]
            return leaders[0] if len(leaders) == 1 else None
        return None
    return wait_for(settled, 60, "every worker to report its role, one leading")


def pollers(engine) -> list[int]:
    """The pids of the workers that say they poll Telegram."""
    return [pid for pid, (_, polling) in roles(engine).items() if polling]


def lock_backend(engine, name: str) -> int | None:
    """The PostgreSQL backend (pid) holding feedbot's advisory lock `name` for this database and
    schema, if any: a bigint key is held as (classid, objid) = its high and low 32 bits."""
    with engine.connect() as connection:
        key = locks.key(connection, name)
        return connection.execute(text(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1 "
            "AND classid::bigint = :high AND objid::bigint = :low"),
            {"high": (key >> 32) & 0xFFFFFFFF, "low": key & 0xFFFFFFFF}).scalar()


def cut_lock_connection(engine, name: str) -> int:
    """End the database session holding the advisory lock `name` (as a lost connection would; the
    process holding it lives on); that session's backend pid."""
    backend = wait_for(lambda: lock_backend(engine, name), 30, f"the {name} lock to be held")
    with engine.connect() as connection:
        assert connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": backend}).scalar()
    return backend


def sending_with_more_to_come(engine, pids: set[int]) -> bool:
    """Every worker of `pids`, and no other, is sending digests, and at least five wait."""
    with Session(engine) as session:
        owners = {Owner.parse(o).pid for o in session.scalars(select(Delivery.owner)) if o}
        waiting = session.scalar(select(func.count()).where(Delivery.status == "claimed"))
    return owners == pids and waiting >= 5


def stop(workers: list[subprocess.Popen]) -> None:
    for worker in workers:
        if worker.poll() is None:
            worker.terminate()
    for worker in workers:
        try:
            worker.wait(15)
        except subprocess.TimeoutExpired:
            worker.kill()


def statuses(engine) -> dict[str, int]:
    with Session(engine) as session:
        return dict(session.execute(select(Delivery.status, func.count()).group_by(Delivery.status)).all())


def status_output(env) -> str:
    """`feedbot status`, after checking that `feedbot status --check` passes."""
    def feedbot(*args):
        return subprocess.run([sys.executable, "-m", "feedbot.cli", *args], env=env, capture_output=True, text=True,
                              timeout=120)
    check = feedbot("status", "--check")
    assert check.returncode == 0, check.stdout + check.stderr
    return feedbot("status").stdout


@SQLITE
def test_a_second_worker_on_sqlite_is_refused_and_told_to_use_postgresql(seeded, env, telegram):
    first = start_worker(env, telegram)
    try:
        wait_for(lambda: roles(seeded).get(first.pid, (None,))[0] == "leader", 60, "the first worker to lead")
        second = subprocess.run([sys.executable, "-m", "feedbot.cli", "worker"], capture_output=True, text=True,
                                timeout=60, env={**env, "TELEGRAM_BOT_TOKEN": telegram.token,
                                                 "FEEDBOT_TELEGRAM_API_URL": telegram.base_url})
        assert second.returncode == 3
        assert "already running" in second.stdout and "PostgreSQL" in second.stdout
    finally:
        stop([first])


@POSTGRESQL
@pytest.mark.parametrize("count", [2, 3])
def test_workers_send_each_digest_once_and_together_within_the_rate(seeded, env, telegram, count):
    workers = [start_worker(env, telegram) for _ in range(count)]
    try:
        leader = wait_roles(seeded, workers)
        wait_for(lambda: sum(polling for _, polling in roles(seeded).values()) == 1, 30, "one worker to poll")
        out = status_output(env)
        assert f"pid {leader}: leader" in out and f"({count} live workers)" in out
        assert out.count(": standby since") == count - 1 and out.count("polling Telegram") == 1
        time.sleep(2)  # every worker has counted the others (its rate is RATE / count)
        chats = list(range(3001, 3041))
        for chat_id in chats:
            add_subscriber(seeded, chat_id, "UTC", an_hour_ago(), "language models")
        telegram.wait(lambda: all(digests_to(telegram, c) for c in chats), 150, "every subscriber's digest")
        time.sleep(2)  # nothing more may arrive
        assert [len(digests_to(telegram, c)) for c in chats] == [1] * len(chats)  # none missed, none twice
        with Session(seeded) as session:
            senders = set(session.scalars(select(Delivery.owner)))
        assert len(senders) >= 2  # the standbys sent too
        assert statuses(seeded) == {"sent": len(chats)}
        times = sorted(m.received_at for c in chats for m in digests_to(telegram, c))
        measured = (len(times) - 1) / (times[-1] - times[0])
        assert measured <= RATE * 1.2, f"{measured:.1f} messages/s with FEEDBOT_SEND_RATE={RATE}"
    finally:
        stop(workers)


def mid_broadcast(seeded, env, telegram, chats: list[int], started: list[subprocess.Popen],
                  ) -> tuple[subprocess.Popen, subprocess.Popen]:
    """Two workers sending one slow digest to each of `chats` (at 4 a second: over ten seconds for
    50), the first leading, both with more to send: (leader, standby). Each worker goes into
    `started` as it starts, for the caller to stop."""
    for chat_id in chats:
        add_subscriber(seeded, chat_id, "UTC", an_hour_ago(), "language models")
        telegram.inject(chat_id, "slow", "sendMessage", delay=0.5)  # sends in flight have landed
    leader = start_worker(env, telegram, FEEDBOT_SEND_RATE="4")
    started.append(leader)
    wait_for(lambda: roles(seeded).get(leader.pid, (None,))[0] == "leader", 60, "the first worker to lead")
    standby = start_worker(env, telegram, FEEDBOT_SEND_RATE="4")
    started.append(standby)
    assert wait_roles(seeded, [leader, standby]) == leader.pid
    wait_for(lambda: sending_with_more_to_come(seeded, {leader.pid, standby.pid}), 120,
             "both workers sending, with more to send")
    return leader, standby


@POSTGRESQL
def test_kill_9_the_leader_mid_broadcast_and_a_standby_leads_and_finishes_it(seeded, env, telegram):
    chats, started = list(range(3101, 3151)), []
    try:
        leader, standby = mid_broadcast(seeded, env, telegram, chats, started)
        leader.kill()
        leader.wait(10)
        killed = time.monotonic()
        wait_for(lambda: roles(seeded).get(standby.pid) == ("leader", True), 60, "the standby to lead and poll")
        assert time.monotonic() - killed < 60
        wait_for(lambda: not {"claimed", "sending"} & set(statuses(seeded)), 120, "the broadcast to finish")
        time.sleep(2)  # nothing more may arrive
        counts = {c: len(digests_to(telegram, c)) for c in chats}
        assert max(counts.values()) == 1  # none twice
        with Session(seeded) as session:
            final = {c: (status, Owner.parse(owner).pid) for c, status, owner in session.execute(
                select(Subscriber.telegram_id, Delivery.status, Delivery.owner)
                .join(Delivery, Delivery.subscriber_id == Subscriber.id))}
        assert set(final) == set(chats) and {s for s, _ in final.values()} <= {"sent", "uncertain"}
        assert all(counts[c] == 1 for c in chats if final[c][0] == "sent")  # every digest sent once
        # In doubt only what the killed worker had sent (its end states are written in batches) or
        # was sending: never a row of the live worker.
        assert all(pid == leader.pid for status, pid in final.values() if status == "uncertain")
        assert any(pid == standby.pid for status, pid in final.values() if status == "sent")
        out = status_output(env)
        assert f"pid {standby.pid}: leader" in out and "polling Telegram" in out
    finally:
        stop(started)


def sweeps_started(engine) -> dict[int, object]:
    """pid → when that worker's last digest sweep started (a leader's job)."""
    with Session(engine) as session:
        return dict(session.execute(select(Heartbeat.pid, Heartbeat.sweep_started_at)).all())


@POSTGRESQL
def test_a_leader_whose_lock_connection_is_cut_steps_down_and_a_standby_leads_mid_broadcast(seeded, env, telegram):
    chats, started = list(range(3201, 3251)), []
    try:
        leader, standby = mid_broadcast(seeded, env, telegram, chats, started)
        assert sweeps_started(seeded)[standby.pid] is None  # a standby runs no digest sweep
        cut = cut_lock_connection(seeded, "leader")

        def swapped() -> bool:
            seen = roles(seeded)
            return seen[standby.pid][0] == "leader" and seen[leader.pid][0] == "standby"

        wait_for(swapped, 60, "the standby to lead and the old leader to stand by")
        assert lock_backend(seeded, "leader") not in (None, cut)
        assert leader.poll() is None  # it lives on, as a standby
        stepped_down = sweeps_started(seeded)[leader.pid]
        wait_for(lambda: sweeps_started(seeded)[standby.pid] is not None, 60, "the new leader's digest sweep")
        wait_for(lambda: not {"claimed", "sending"} & set(statuses(seeded)), 120, "the broadcast to finish")
        time.sleep(3)  # nothing more may arrive, and the old leader has had checks to take the lead back
        assert [len(digests_to(telegram, c)) for c in chats] == [1] * len(chats)  # none missed, none twice
        assert statuses(seeded) == {"sent": len(chats)}  # both lived: nothing in doubt
        assert swapped() and leader.poll() is None
        assert sweeps_started(seeded)[leader.pid] == stepped_down  # no leader's job since it stepped down
        out = status_output(env)
        assert f"pid {standby.pid}: leader" in out and f"pid {leader.pid}: standby" in out
    finally:
        stop(started)


@POSTGRESQL
def test_a_poller_whose_lock_connection_is_cut_stops_and_one_worker_polls(seeded, env, telegram):
    workers = [start_worker(env, telegram) for _ in range(2)]
    try:
        wait_roles(seeded, workers)
        [first] = wait_for(lambda: len(pollers(seeded)) == 1 and pollers(seeded), 30, "one worker to poll")
        [other] = [w.pid for w in workers if w.pid != first]
        cut = cut_lock_connection(seeded, "poller")
        wait_for(lambda: pollers(seeded) == [other], 60, "the other worker to poll instead")
        assert lock_backend(seeded, "poller") not in (None, cut)
        [reply] = talk(telegram, "/help", 3301)  # the new poller polls
        assert "/digest" in reply.text
        conflicts = telegram.conflicts  # so far: the stopped poller's last long poll, ended by the new one
        time.sleep(3)  # two pollers would end each other's long polls (409) all along
        assert telegram.conflicts == conflicts and pollers(seeded) == [other]
        assert len(telegram.messages_to(3301)) == 1  # answered once
        assert all(w.poll() is None for w in workers)
    finally:
        stop(workers)


@POSTGRESQL
def test_a_leader_checks_its_lock_before_each_leader_job(seeded, settings):
    """A leader whose lock went with its connection since its last check runs no leader's job: it
    finds the lock lost first, and steps down."""
    worker = Worker(settings, seeded)
    ran = []

    async def job() -> None:
        ran.append(True)

    async def scenario() -> None:
        await worker.check_roles()
        assert worker.leading
        await worker._leading_only(job)()
        assert ran == [True]
        cut_lock_connection(seeded, "leader")
        assert worker.leading  # not checked since
        await worker._leading_only(job)()
        assert ran == [True] and not worker.leading and worker.heartbeat.role == "standby"

    try:
        asyncio.run(scenario())
    finally:
        worker.leader.release()


@POSTGRESQL
def test_a_turn_let_go_is_not_taken_back_by_a_check_already_on_its_way(engine):
    """A stopping worker lets its turn go while a check of it is waiting on another thread (the
    poller's turns, the leader's jobs): that check, running after, must not take the lock again,
    or no worker could take the role until this one exits."""
    turn, other = Turn(engine, "poller", 10), Turn(engine, "poller", 10)
    try:
        assert turn.check()
        with turn._checking:  # a check on its way, behind the release
            waiting = threading.Thread(target=turn.check)
            waiting.start()
            releasing = threading.Thread(target=turn.release)
            releasing.start()
            time.sleep(0.2)
        waiting.join(30)
        releasing.join(30)
        assert not turn.check() and not turn.held
        assert lock_backend(engine, "poller") is None
        assert other.check()  # the next worker takes it at once
    finally:
        turn.release()
        other.release()


@POSTGRESQL
def test_a_lock_connection_gives_up_on_a_silent_server_before_the_server_drops_the_lock(engine):
    """A holder cut off by the network: its own end of the lock's connection gives up before
    PostgreSQL ends the session (and a standby can take the lock), so `held` says the lock is lost
    within seconds, not after minutes waiting on a query."""
    lock = locks.AdvisoryLock(engine, "leader")
    assert lock.try_acquire()
    try:
        connection = lock._connection
        server = {name: int(connection.execute(text(f"SHOW {name}")).scalar()) for name in locks.KEEPALIVE}
        client = {name: int(value) for name, value in
                  connection.connection.dbapi_connection.info.get_parameters().items()
                  if name.startswith(("keepalives", "tcp_user_timeout"))}
        server_gives_up = server["tcp_keepalives_idle"] + \
            server["tcp_keepalives_interval"] * server["tcp_keepalives_count"]
        assert client["keepalives"] == 1
        assert client["keepalives_idle"] + client["keepalives_interval"] * client["keepalives_count"] \
            < server_gives_up
        assert 0 < client["tcp_user_timeout"] / 1000 < server_gives_up
        assert lock_backend(engine, "leader") == connection.execute(text("SELECT pg_backend_pid()")).scalar()
    finally:
        lock.release()
    assert lock_backend(engine, "leader") is None


def test_two_senders_released_together_never_take_the_same_row(engine):
    """SKIP LOCKED: two threads taking claimed rows at the same moment each get different ones."""
    day = date(2026, 3, 12)
    with transaction(engine) as session:
        for telegram_id in range(1, 41):
            session.add(Subscriber(telegram_id=telegram_id, chat_id=telegram_id))
        session.flush()
        ids = session.scalars(select(Subscriber.id)).all()
        won = rows.claim_many(session, [(sid, day) for sid in ids])
    prepared = {delivery_id: deliveries.Outgoing(delivery_id, sid, sid, sid, day, [Reply("digest")])
                for sid, delivery_id in won.items()}
    barrier = threading.Barrier(2)
    taken: list[list[int]] = [[], []]
    errors = []

    def sender(mine: list[int]) -> None:
        try:
            skip: set[int] = set()
            barrier.wait()
            while got := deliveries.take(engine, prepared, skip, deliveries.utcnow(), limit=3):
                mine.extend(item.delivery_id for item, _ in got)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=sender, args=(mine,)) for mine in taken]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    assert not set(taken[0]) & set(taken[1])
    assert sorted(taken[0] + taken[1]) == sorted(won.values())
    assert statuses(engine) == {"sending": len(won)}


def test_rows_taken_together_each_keep_their_own_part_sizes(engine):
    """Rows taken in one statement record each its own picks per part (what a resume skips and
    what an unsent part gives back), never another row's."""
    day = date(2026, 3, 12)
    with transaction(engine) as session:
        for telegram_id in range(1, 5):
            session.add(Subscriber(telegram_id=telegram_id, chat_id=telegram_id))
        session.flush()
        ids = session.scalars(select(Subscriber.id).order_by(Subscriber.id)).all()
        won = rows.claim_many(session, [(sid, day) for sid in ids])
    sizes = {delivery_id: ",".join(["3"] * n + ["1"]) for n, delivery_id in enumerate(sorted(won.values()))}
    prepared = {delivery_id: deliveries.Outgoing(delivery_id, sid, sid, sid, day, [Reply("digest")],
                                                 sizes=[int(k) for k in sizes[delivery_id].split(",")])
                for sid, delivery_id in won.items()}
    got = deliveries.take(engine, prepared, set(), deliveries.utcnow(), limit=4)
    assert len(got) == 4
    with Session(engine) as session:
        stored = dict(session.execute(select(Delivery.id, Delivery.part_picks)).all())
    assert stored == sizes


def test_taking_rows_skips_only_those_it_leaves_claimed(engine):
    """A run's skip list holds just the rows `take` leaves `claimed` (a subscriber who stopped),
    not every row it took: it is sent with each query, so it must not grow with the broadcast."""
    day = date(2026, 3, 12)
    with transaction(engine) as session:
        for telegram_id in range(1, 6):
            session.add(Subscriber(telegram_id=telegram_id, chat_id=telegram_id))
        session.flush()
        ids = session.scalars(select(Subscriber.id).order_by(Subscriber.id)).all()
        won = rows.claim_many(session, [(sid, day) for sid in ids])
        session.get(Subscriber, ids[0]).state = "stopped"
    prepared = {delivery_id: deliveries.Outgoing(delivery_id, sid, sid, sid, day, [Reply("digest")])
                for sid, delivery_id in won.items() if sid != ids[0]}
    skip: set[int] = set()
    taken = []
    while got := deliveries.take(engine, prepared, skip, deliveries.utcnow(), limit=2):
        taken.extend(item.delivery_id for item, _ in got)
    assert sorted(taken) == sorted(prepared)
    assert skip == {won[ids[0]]}
    assert statuses(engine) == {"sending": len(prepared), "claimed": 1}


def test_a_row_a_sender_is_taking_is_never_closed_under_it(engine):
    """The leader's recovery closes a claimed row whose window passed; a sender on another worker
    that took it a moment before keeps it: the row ends as the sender made it, never closed and sent."""
    day = date(2026, 3, 12)
    with transaction(engine) as session:
        session.add(Subscriber(telegram_id=1, chat_id=1))
        session.flush()
        sid = session.scalar(select(Subscriber.id))
        [delivery_id] = rows.claim_many(session, [(sid, day)]).values()
    locked, go, errors = threading.Event(), threading.Event(), []
    later = deliveries.utcnow().replace(year=2030)  # past the row's late window

    def sender() -> None:
        try:
            with transaction(engine) as session:
                assert [row.id for row in rows.next_claimed(session)] == [delivery_id]
                locked.set()
                go.wait(30)
                assert rows.start_sending(session, delivery_id, "sender", later) == 0
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
            locked.set()

    def recovery() -> None:
        try:
            with transaction(engine) as session:
                deliveries.recover(session, later)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    taking = threading.Thread(target=sender)
    taking.start()
    locked.wait(30)
    recovering = threading.Thread(target=recovery)
    recovering.start()
    recovering.join(3)  # on PostgreSQL it skips the locked row at once
    go.set()
    taking.join(30)
    recovering.join(30)
    assert not errors
    assert statuses(engine) == {"sending": 1}
