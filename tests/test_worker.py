"""The worker end to end against the fake Bot API server: sweeps, local times across DST,
exactly-once delivery through crashes, faults during a broadcast, and the real process
(second instance refused on SQLite, SIGTERM, kill -9 mid-broadcast)."""

import asyncio
import dataclasses
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from feedbot.chat.conversation import Chat
from feedbot.chat.telegram import build_application
from feedbot.delivery import deliveries, rows, schedule
from feedbot.sources.dumps import parse_dump
from feedbot.store import subscribers
from feedbot.store.db import transaction
from feedbot.store.models import Delivery, Heartbeat, Paper, Shown, Subscriber
from feedbot.worker import Worker
from tests.conftest import EXAMPLE_DUMPS, BotRunner

BERLIN, NEW_YORK = 201, 202


class FakeClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock():
    return FakeClock(datetime(2026, 3, 28, 23, 0, tzinfo=UTC))


@pytest.fixture
def running(engine, settings, telegram, clock):
    """The bot and a worker sharing one event loop, with the fake clock."""
    bot_settings = dataclasses.replace(settings, telegram_token=telegram.token, telegram_api_url=telegram.base_url)
    chat = Chat(engine, bot_settings, clock)
    runner = BotRunner(build_application(bot_settings, chat, timeout=2.0, max_retries=3))
    runner.start()
    worker = Worker(bot_settings, engine, runner.application.bot, clock, broadcast_rate=0, part_pause=0)
    yield runner, worker
    runner.stop()


def an_hour_ago() -> str:
    """A delivery time that is due now on the real clock, whatever the time of day."""
    return f"{datetime.now(UTC) - timedelta(hours=1):%H:%M}"


def drop_dump(inbox, name, raw: bytes, day: date) -> None:
    inbox.mkdir(parents=True, exist_ok=True)
    path = inbox / name
    path.write_bytes(raw)
    stamp = datetime(day.year, day.month, day.day, 12, tzinfo=UTC).timestamp()
    os.utime(path, (stamp, stamp))


def add_subscriber(engine, telegram_id, zone="UTC", at="08:00", interests=""):
    with transaction(engine) as session:
        subscriber, _ = subscribers.subscribe(session, telegram_id, telegram_id, f"u{telegram_id}")
        subscriber.timezone, subscriber.send_time = zone, at
        if interests:
            subscribers.add_interests(session, subscriber, interests)


def digests_to(telegram, chat_id):
    return [m for m in telegram.messages_to(chat_id) if "for you" in m.text or "No papers for you" in m.text]


def picked_ids(message):
    return [int(row[0]["callback_data"].split(":")[1]) for row in message.buttons]


def revisited_dump(titles_with: tuple[str, ...]) -> bytes:
    """A next-day dump: seed papers on these topics, re-titled so they are new papers."""
    lines = ["new", "", "Mar 30", ""]
    for path in sorted(EXAMPLE_DUMPS.iterdir()):
        for entry in parse_dump(path.read_bytes(), path.name, date(2026, 3, 20)).entries:
            if any(word in entry.title.casefold() for word in titles_with):
                lines += [f"Revisited: {entry.title}", "", entry.abstract, ""]
    return "\n".join(lines).encode()


def test_two_days_two_zones_across_dst(running, telegram, engine, settings, clock):
    runner, worker = running
    for path in sorted(EXAMPLE_DUMPS.iterdir()):
        drop_dump(settings.inbox, path.name, path.read_bytes(), date(2026, 3, 20))
    reports = runner.call(worker.sweep_inbox())
    assert sum(r.new for r in reports) == 354
    assert sorted(p.name for p in (settings.inbox / "done").iterdir()) == sorted(
        p.name for p in EXAMPLE_DUMPS.iterdir())
    # Berlin springs forward on 29 March: 02:30 does not exist that night, so 03:00 CEST (01:00 UTC).
    add_subscriber(engine, BERLIN, "Europe/Berlin", "02:30", "speech recognition")
    add_subscriber(engine, NEW_YORK, "America/New_York", "08:00", "graph neural networks")

    sent_at = {BERLIN: [], NEW_YORK: []}
    while clock.now < datetime(2026, 3, 29, 23, 0, tzinfo=UTC):
        counts = {c: len(digests_to(telegram, c)) for c in sent_at}
        runner.call(worker.sweep_digests())
        for chat_id in sent_at:
            sent_at[chat_id] += [clock.now] * (len(digests_to(telegram, chat_id)) - counts[chat_id])
        clock.now += timedelta(minutes=15)
    # New York joined at 19:00 local on the 28th, past its 08:00: it gets the 28th's digest at once.
    assert sent_at == {BERLIN: [datetime(2026, 3, 29, 1, 0, tzinfo=UTC)],
                       NEW_YORK: [datetime(2026, 3, 28, 23, 0, tzinfo=UTC), datetime(2026, 3, 29, 12, 0, tzinfo=UTC)]}
    [day_one] = digests_to(telegram, BERLIN)
    assert "speech" in day_one.text.casefold()

    # Votes: two 👍 on the speech picks, one 👎.
    ups = [row[0]["callback_data"] for row in day_one.buttons[:2]]
    for data in ups + [day_one.buttons[2][1]["callback_data"]]:
        telegram.wait_answer(telegram.press(BERLIN, day_one, data))

    # Day 2: a new dump arrives in the inbox; picks follow the votes and repeat nothing.
    drop_dump(settings.inbox, "day2.txt", revisited_dump(("speech", "graph", "vision")), date(2026, 3, 30))
    clock.now = datetime(2026, 3, 29, 23, 30, tzinfo=UTC)
    reports = runner.call(worker.sweep_inbox())
    assert reports[0].status == "ingested" and reports[0].new > 10
    while clock.now < datetime(2026, 3, 30, 13, 0, tzinfo=UTC):
        runner.call(worker.sweep_digests())
        clock.now += timedelta(minutes=15)
    day_one_berlin, day_two_berlin = digests_to(telegram, BERLIN)
    assert not set(picked_ids(day_one_berlin)) & set(picked_ids(day_two_berlin))
    assert day_two_berlin.text.count("Revisited: ") == 5
    assert sum("speech" in block.casefold() for block in day_two_berlin.text.split("\n\n")[1:]) >= 4
    assert len(digests_to(telegram, NEW_YORK)) == 3
    with Session(engine) as session:
        rows = session.execute(select(Delivery.subscriber_id, Delivery.local_date, Delivery.status)).all()
    assert sorted((d.isoformat(), s) for _, d, s in rows) == [
        ("2026-03-28", "sent"), ("2026-03-29", "sent"), ("2026-03-29", "sent"), ("2026-03-30", "sent"),
        ("2026-03-30", "sent")]


def test_repeated_hour_on_fall_back_delivers_once(running, telegram, engine, settings, clock, example_dumps):
    runner, worker = running
    for path in sorted(example_dumps.iterdir()):
        drop_dump(settings.inbox, path.name, path.read_bytes(), date(2026, 3, 20))
    runner.call(worker.sweep_inbox())
    add_subscriber(engine, BERLIN, "Europe/Berlin", "02:30")
    berlin = ZoneInfo("Europe/Berlin")
    first = schedule.wall_clock(date(2026, 10, 25), datetime.strptime("02:30", "%H:%M").time(), berlin)
    assert first.astimezone(UTC) == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)  # the first 02:30 (CEST)
    clock.now = datetime(2026, 10, 24, 22, 0, tzinfo=UTC)
    sent_at = []
    while clock.now < datetime(2026, 10, 25, 4, 0, tzinfo=UTC):
        before = len(digests_to(telegram, BERLIN))
        runner.call(worker.sweep_digests())
        if len(digests_to(telegram, BERLIN)) > before:
            sent_at.append(clock.now)
        clock.now += timedelta(minutes=10)
    assert sent_at == [datetime(2026, 10, 25, 0, 30, tzinfo=UTC)]


def test_crash_between_claim_and_send_then_restart(running, telegram, seeded, settings, clock):
    runner, worker = running
    clock.now = datetime(2026, 3, 12, 9, 0, tzinfo=UTC)
    for chat_id in (301, 302, 303):
        add_subscriber(seeded, chat_id, interests="language models")
    outgoing, _ = worker.digests.prepare()  # claimed and recorded... then the process dies before sending
    assert len(outgoing) == 3 and telegram.messages_to(301) == []
    with transaction(seeded) as session:  # and one row was mid-send when it died
        assert rows.start_sending(session, outgoing[0].delivery_id, owner=dead_process()) == 0

    restarted = Worker(worker.settings, seeded, runner.application.bot, clock, broadcast_rate=0, part_pause=0)
    results = runner.call(restarted.sweep_digests())
    assert results["uncertain"] == 1 and results["sent"] == 2
    runner.call(restarted.sweep_digests())
    counts = [len(digests_to(telegram, c)) for c in (301, 302, 303)]
    assert sorted(counts) == [0, 1, 1]  # the uncertain one is never re-sent blindly
    with Session(seeded) as session:
        for item in outgoing[1:]:
            recorded = session.scalars(select(Shown.paper_id).where(Shown.delivery_id == item.delivery_id)
                                       .order_by(Shown.position)).all()
            [message] = digests_to(telegram, item.chat_id)
            assert picked_ids(message) == recorded  # the same picks as claimed
        statuses = sorted(session.scalars(select(Delivery.status)))
    assert statuses == ["sent", "sent", "uncertain"]


def dead_process() -> str:
    """The owner name of a process that has exited."""
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    return f"{socket.gethostname()}:{gone.pid}"


def test_403_during_broadcast_blocks_one_and_the_rest_get_theirs(running, telegram, seeded, clock):
    runner, worker = running
    clock.now = datetime(2026, 3, 12, 9, 0, tzinfo=UTC)
    for chat_id in (401, 402, 403):
        add_subscriber(seeded, chat_id, interests="diffusion")
    telegram.inject(402, "403", "sendMessage")
    results = runner.call(worker.sweep_digests())
    assert results["sent"] == 2 and results["blocked"] == 1
    assert len(digests_to(telegram, 401)) == 1 and len(digests_to(telegram, 403)) == 1
    with Session(seeded) as session:
        assert session.scalar(select(Subscriber.state).where(Subscriber.telegram_id == 402)) == "blocked"
    clock.now += timedelta(days=1)
    runner.call(worker.sweep_digests())
    assert digests_to(telegram, 402) == [] and len(digests_to(telegram, 401)) == 2


def test_429_storm_delays_but_loses_nothing(running, telegram, seeded, clock):
    runner, worker = running
    clock.now = datetime(2026, 3, 12, 9, 0, tzinfo=UTC)
    add_subscriber(seeded, 501, interests="reinforcement learning")
    add_subscriber(seeded, 502, interests="speech")
    telegram.inject(501, "429", "sendMessage", times=6, retry_after=1)
    first = runner.call(worker.sweep_digests())
    assert first["sent"] >= 1
    for _ in range(3):
        if len(digests_to(telegram, 501)) == 1:
            break
        runner.call(worker.sweep_digests())
    assert len(digests_to(telegram, 501)) == 1 and len(digests_to(telegram, 502)) == 1
    with Session(seeded) as session:
        assert set(session.scalars(select(Delivery.status))) == {"sent"}


def test_empty_day_says_why(running, telegram, engine, clock):
    runner, worker = running
    add_subscriber(engine, 601)
    clock.now = datetime(2026, 3, 12, 9, 0, tzinfo=UTC)
    runner.call(worker.sweep_digests())
    [message] = digests_to(telegram, 601)
    assert "No papers for you today: no papers yet — your first digest comes after the first listing" in message.text
    with Session(engine) as session:
        assert session.scalar(select(Delivery.status)) == "empty"


# --- the real process ------------------------------------------------------------------------

def worker_process(env, telegram):
    return subprocess.Popen(
        [sys.executable, "-m", "feedbot.cli", "worker"],
        env={**env, "TELEGRAM_BOT_TOKEN": telegram.token, "FEEDBOT_TELEGRAM_API_URL": telegram.base_url,
             "FEEDBOT_LOG_LEVEL": "INFO"},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def wait_polling(telegram, count=1):
    telegram.wait(lambda: sum(m == "getUpdates" for m, _ in telegram.calls) >= count, 30, "the worker to poll")


def test_second_worker_refused_and_sigterm_exits_promptly(seeded, env, telegram):
    first = worker_process(env, telegram)
    try:
        wait_polling(telegram)
        second = worker_process(env, telegram)
        if env["DATABASE_URL"].startswith("sqlite"):
            out, _ = second.communicate(timeout=60)
            assert second.returncode == 3 and "already running" in out and "PostgreSQL" in out
        else:  # on PostgreSQL several workers run: the second stands by (tests/test_workers.py)
            with Session(seeded) as session:
                telegram.wait(lambda: session.scalar(select(func.count()).where(Heartbeat.role == "standby")) == 1,
                              60, "the second worker to stand by")
            assert second.poll() is None
            second.send_signal(signal.SIGTERM)
            second.communicate(timeout=15)
            assert second.returncode == 0
        started = time.monotonic()
        first.send_signal(signal.SIGTERM)
        first.wait(timeout=15)
        assert time.monotonic() - started < 10 and first.returncode == 0
    finally:
        if first.poll() is None:
            first.kill()


def test_kill_9_mid_broadcast_then_restart_gives_exactly_one_each(seeded, env, telegram):
    chats = list(range(701, 713))
    for chat_id in chats:
        add_subscriber(seeded, chat_id, "UTC", an_hour_ago(), "language models")
        telegram.inject(chat_id, "slow", "sendMessage", delay=1.5)
    first = worker_process(env, telegram)
    try:
        # Kill while every sender is waiting on an answer the server holds (the messages landed).
        telegram.wait(lambda: len([m for c in chats for m in digests_to(telegram, c)]) >= 4 and telegram.held >= 4,
                      60, "a broadcast in full flight")
        first.kill()
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
    delivered_before = {c for c in chats if digests_to(telegram, c)}
    assert 0 < len(delivered_before) < len(chats)

    second = worker_process(env, telegram)
    try:
        telegram.wait(lambda: all(digests_to(telegram, c) for c in chats), 90, "every subscriber's digest")
        time.sleep(2)  # nothing more may arrive
        assert [len(digests_to(telegram, c)) for c in chats] == [1] * len(chats)

        deadline = time.monotonic() + 60  # the last answers came back and their outcomes were written
        while time.monotonic() < deadline:
            with Session(seeded) as session:
                if not session.scalar(select(func.count()).select_from(Delivery)
                                      .where(Delivery.status.in_(("claimed", "sending")))):
                    break
            time.sleep(0.2)
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=15)
    finally:
        if second.poll() is None:
            second.kill()
    with Session(seeded) as session:
        statuses = session.execute(select(Delivery.status, func.count()).group_by(Delivery.status)).all()
        assert sum(n for _, n in statuses) == len(chats)
        assert {s for s, _ in statuses} <= {"sent", "uncertain"}
        assert session.scalar(select(func.count()).select_from(Paper)) == 354


def test_dry_run_and_send_one_from_the_cli(seeded, env, telegram):
    add_subscriber(seeded, 801, "UTC", an_hour_ago(), "speech recognition")
    run_env = {**env, "TELEGRAM_BOT_TOKEN": telegram.token, "FEEDBOT_TELEGRAM_API_URL": telegram.base_url}

    def feedbot(*args):
        return subprocess.run([sys.executable, "-m", "feedbot.cli", *args], env=run_env, capture_output=True,
                              text=True, timeout=120)

    dry = feedbot("digest", "--dry-run")
    assert dry.returncode == 0 and "== 801" in dry.stdout and "matches your interest" in dry.stdout
    with Session(seeded) as session:
        assert session.scalar(select(func.count()).select_from(Shown)) == 0
        assert session.scalar(select(func.count()).select_from(Delivery)) == 0
    sent = feedbot("digest", "--send", "--user", "801")
    assert sent.returncode == 0 and ": sent" in sent.stdout, sent.stdout + sent.stderr
    assert len(digests_to(telegram, 801)) == 1
    with Session(seeded) as session:
        shown = session.scalar(select(func.count()).select_from(Shown))
    again = feedbot("digest", "--send", "--user", "801")
    assert again.returncode == 2 and "already has a digest" in again.stderr
    with Session(seeded) as session:  # nothing sent, so nothing recorded as shown
        assert session.scalar(select(func.count()).select_from(Shown)) == shown
    listing = feedbot("subscribers")
    assert "801" in listing.stdout and "(1 subscribers)" in listing.stdout
    status = feedbot("status")
    assert "deliveries today: sent 1" in status.stdout


class MenuBot:
    def __init__(self) -> None:
        self.menu = None

    async def set_my_commands(self, commands) -> None:
        self.menu = [c.command for c in commands]


def test_sigterm_stops_new_digests_at_once_and_a_second_one_is_ignored(engine, settings):
    """The worker's own handler replaces run_polling's: the first SIGTERM stops the sweeps before
    polling winds down, and a second cannot cut short the wait for the send in flight."""
    from apscheduler.schedulers.base import STATE_PAUSED

    from feedbot.store.models import Heartbeat

    worker = Worker(settings, engine)
    worker.jobs = lambda: []  # the lifecycle only: no sweep runs here
    application = dataclasses.make_dataclass("App", [("bot", MenuBot), ("updater", object)])(MenuBot(), None)
    loop = asyncio.new_event_loop()
    fallback = []
    try:
        loop.add_signal_handler(signal.SIGTERM, fallback.append, "run_polling's handler")
        loop.run_until_complete(worker.post_init(application))
        assert "skip" not in application.bot.menu and application.bot.menu[0] == "start"
        with pytest.raises(SystemExit):
            loop.call_soon(os.kill, os.getpid(), signal.SIGTERM)
            loop.run_until_complete(asyncio.sleep(30))  # ends at once with SystemExit, unless ignored
        assert fallback == [] and worker.stopping.is_set() and worker.scheduler.state == STATE_PAUSED
        os.kill(os.getpid(), signal.SIGTERM)
        loop.run_until_complete(asyncio.sleep(0.2))  # the second signal is handled and ignored
        loop.run_until_complete(worker.post_stop(application))
        loop.run_until_complete(worker.post_shutdown(application))
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        loop.close()
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(Heartbeat)) == 0


# --- chats that are gone or moved ------------------------------------------------------------

def test_chat_not_found_deactivates_and_a_migrated_group_gets_its_digest_at_the_new_id(running, telegram, seeded,
                                                                                        clock):
    runner, worker = running
    clock.now = datetime(2026, 3, 12, 9, 0, tzinfo=UTC)
    for chat_id in (811, 812, 813):
        add_subscriber(seeded, chat_id, interests="language models")
    telegram.inject(811, "chat_not_found", "sendMessage", times=100)
    telegram.inject(812, "migrated", "sendMessage", times=100, migrate_to=-100812)  # as Telegram: every time
    results = runner.call(worker.sweep_digests())
    assert results["sent"] == 2 and results["blocked"] == 1
    assert len(digests_to(telegram, -100812)) == 1 and digests_to(telegram, 812) == []
    assert len(digests_to(telegram, 813)) == 1
    with Session(seeded) as session:
        gone = session.scalar(select(Subscriber).where(Subscriber.telegram_id == 811))
        moved = session.scalar(select(Subscriber).where(Subscriber.telegram_id == 812))
        assert (gone.state, moved.state, moved.chat_id) == ("blocked", "active", -100812)
        row = session.scalar(select(Delivery).where(Delivery.subscriber_id == gone.id))
        assert row.status == "blocked" and "chat not found" in row.error.lower()
        # Nothing reached the gone chat, so nothing is recorded as shown to it.
        assert session.scalar(select(func.count()).select_from(Shown).where(Shown.subscriber_id == gone.id)) == 0
    clock.now += timedelta(days=1)
    calls_before = len(telegram.calls)
    runner.call(worker.sweep_digests())
    assert len(digests_to(telegram, -100812)) == 2 and digests_to(telegram, 811) == []
    sent_to = [int(p["chat_id"]) for m, p in telegram.calls[calls_before:] if m == "sendMessage"]
    assert 812 not in sent_to and 811 not in sent_to  # straight to the new id; the gone chat is left alone


# --- a long broadcast is not stuck while it moves --------------------------------------------

class SlowBroadcast:
    """Stands in for the pacer: each message takes half a minute of the fake clock (four are in
    flight, so the last recorded progress is at most about two minutes old), and at chosen
    messages a check runs (or the broadcast stalls for a while)."""

    interval = 0.0  # unpaced: the sweep keeps its first four in flight

    def __init__(self, clock, at: dict) -> None:
        self.clock, self.at, self.sent = clock, at, 0

    async def wait(self) -> None:
        self.sent += 1
        self.clock.now += timedelta(seconds=30)
        if self.sent in self.at:
            self.at[self.sent]()


def test_a_long_broadcast_that_progresses_is_not_stuck_and_one_that_stops_is(running, telegram, seeded, clock):
    from feedbot.delivery import status

    runner, worker = running
    clock.now = datetime(2026, 3, 12, 8, 0, tzinfo=UTC)
    chats = list(range(1001, 1041))
    for chat_id in chats:
        add_subscriber(seeded, chat_id, interests="language models")
    seen = {}

    def health(label):
        def check():
            with Session(seeded) as session:
                seen[label] = status.health(session, clock.now), list(status.worker_report(session, clock.now))
        return check

    def stall():
        clock.now += timedelta(minutes=15)  # no message goes out for 15 minutes
        # while the heartbeat job keeps beating: through the worker's database thread, after any
        # beat it is writing (one that read the clock before the jump would overwrite this one)
        worker._writer.submit(worker.heartbeat.alive).result(30)
        health("stalled")()  # checked before the senders in flight record any progress

    worker.digests.pacer = SlowBroadcast(clock, {30: health("moving"), 35: stall})
    results = runner.call(worker.sweep_digests())
    assert results["sent"] == len(chats)
    problems, report = seen["moving"]  # 15 minutes into the broadcast, rows claimed 15 minutes ago
    assert problems == [] and report[0].startswith("worker:   alive")
    problems, report = seen["stalled"]
    assert "a digest sweep made no progress for over 10 min" in problems
    assert any("deliveries stuck in claimed/sending" in p for p in problems)
    assert "STUCK" in report[0]
    with Session(seeded) as session:
        assert status.health(session, clock.now) == []  # finished: nothing left in flight


# --- any step of a sweep may fail ------------------------------------------------------------

class Injected(RuntimeError):
    pass


def failing(times: int | None = None):
    """A stand-in that raises `Injected` (the first `times` calls, or always) and otherwise calls through."""
    def wrap(real):
        calls = []

        def call(*args, **kwargs):
            calls.append(1)
            if times is None or len(calls) <= times:
                raise Injected("injected fault")
            return real(*args, **kwargs)
        return call
    return wrap


def break_step(monkeypatch, worker, step):
    from feedbot.delivery import deliveries, digests, due

    places = {
        "recover": (deliveries, "recover", None), "plan": (due, "plan", None),
        "skip_missed": (due, "skip_missed", None),
        "model": (worker.models, "get", None), "rank": (digests, "build", None),
        "claim": (deliveries, "claim_and_record", None), "render": (digests, "render", 1),
        "take": (deliveries, "mark_sending", 1), "write_results": (deliveries, "write_results", None),
        "heartbeat": (worker.heartbeat, "sweep_started", None), "pacing": (worker.digests.pacer, "wait", 1),
    }
    owner, name, times = places[step]
    real = getattr(owner, name)
    if step == "pacing":
        calls = []

        async def wait():
            calls.append(1)
            if len(calls) == 1:
                raise Injected("injected fault")
            await real()
        monkeypatch.setattr(owner, name, wait)
        return
    monkeypatch.setattr(owner, name, failing(times)(real))


# step → how many of the four digests (one claimed earlier and resumed, three fresh) go out meanwhile;
# a claimed row goes out even when recovery fails (any sender takes it), and pacing comes before a
# row is taken, so a failing pacer holds nothing back; a take that fails once rolls back and leaves
# its row `claimed` for the other senders, so it too holds nothing back
STEPS = {"recover": 4, "plan": 1, "skip_missed": 4, "model": 1, "rank": 1, "claim": 1, "render": 3,
         "take": 4, "write_results": 4, "heartbeat": 4, "pacing": 4}


@pytest.mark.parametrize("step", sorted(STEPS))
def test_a_failing_sweep_step_is_logged_shown_and_the_rest_goes_out(running, telegram, seeded, clock, monkeypatch,
                                                                   caplog, step):
    from feedbot.delivery import status

    runner, worker = running
    clock.now = datetime(2026, 3, 12, 9, 0, tzinfo=UTC)
    add_subscriber(seeded, 900, interests="speech")
    claimed, _ = worker.digests.prepare()  # claimed by a sweep that then died: resumed by the next
    assert len(claimed) == 1
    chats = [900, 901, 902, 903]
    for chat_id in chats[1:]:
        add_subscriber(seeded, chat_id, interests="language models")
    break_step(monkeypatch, worker, step)
    runner.call(worker.sweep_digests())  # never raises
    out = [c for c in chats if digests_to(telegram, c)]
    assert len(out) == STEPS[step], (step, out)
    assert "injected fault" in caplog.text
    monkeypatch.undo()  # `feedbot status` runs in a process of its own
    with Session(seeded) as session:
        problems = status.health(session, clock.now)
        report = "\n".join(status.delivery_report(session, clock.now))
    assert any("digests failing since" in p and "injected fault" in p for p in problems), problems
    assert "FAILING since" in report and "injected fault" in report

    clock.now += timedelta(minutes=1)
    runner.call(worker.sweep_digests())
    clock.now += timedelta(minutes=1)
    runner.call(worker.sweep_digests())
    counts = [len(digests_to(telegram, c)) for c in chats]
    assert all(n <= 1 for n in counts), counts  # nothing twice
    with Session(seeded) as session:
        assert status.health(session, clock.now) == []  # recovered: the check passes again
        statuses = Counter(session.scalars(select(Delivery.status)))
        failed = session.scalars(select(Delivery.id).where(Delivery.status == "failed")).all()
        shown_unsent = session.scalar(select(func.count()).select_from(Shown).where(Shown.delivery_id.in_(failed)))
    assert sum(counts) + statuses["failed"] + statuses["uncertain"] == len(chats), (counts, statuses)
    assert statuses["sent"] == sum(counts)
    assert not shown_unsent  # a digest that failed gives its picks back


def test_a_failing_refit_backs_off_and_digests_go_out_on_the_last_good_model(running, telegram, seeded, settings,
                                                                            clock, caplog, tmp_path):
    from feedbot.delivery import status
    from feedbot.sources.ingest import ingest_paths

    runner, worker = running
    clock.now = datetime(2026, 3, 12, 9, 0, tzinfo=UTC)
    dump = tmp_path / "more.txt"
    dump.write_text("x\n\nMar 12\n\nA brand new paper on quantum widgets\n\nWe study quantum widgets.\n")
    ingest_paths(seeded, [dump])  # the model is stale now
    worker.refits.model_dir = tmp_path / "not-a-folder"
    worker.refits.model_dir.write_text("a file: the fit child cannot save there (disk full would do the same)")
    add_subscriber(seeded, 910, interests="speech")
    runner.call(worker.sweep_digests())
    assert len(digests_to(telegram, 910)) == 1  # on the last good model
    assert "refit failed" in caplog.text and worker.refits.failures == 1
    first_retry = worker.refits.next_try
    with Session(seeded) as session:
        assert status.health(session, clock.now) == []  # within its grace: digests still go out
        report = "\n".join(status.delivery_report(session, clock.now))
        assert "sweep refit" in report and "FAILING since" in report and "next try in 1 min" in report
    caplog.clear()
    clock.now += timedelta(seconds=30)
    runner.call(worker.sweep_digests())
    assert "refit failed" not in caplog.text and worker.refits.next_try == first_retry  # no new fit each minute
    for _ in range(6):  # 1, 2, 4, 8, 16, 32 minutes apart
        clock.now = worker.refits.next_try
        runner.call(worker.sweep_digests())
    assert worker.refits.failures == 7 and worker.refits.next_try - clock.now == timedelta(minutes=60)
    with Session(seeded) as session:
        problems = status.health(session, clock.now)
    assert any(p.startswith("refit failing since 2026-03-12 09:00 UTC") for p in problems), problems
    worker.refits.model_dir = settings.model_dir
    clock.now = worker.refits.next_try
    runner.call(worker.sweep_digests())
    with Session(seeded) as session:
        assert status.health(session, clock.now) == []
        assert worker.models.get(session).corpus_version == textmodel_version(session)


def textmodel_version(session):
    from feedbot.ranking import textmodel

    return textmodel.corpus_version(session)


@pytest.mark.parametrize("job", ["inbox", "sources"])
def test_a_failing_inbox_or_sources_sweep_is_shown_until_it_works_again(running, seeded, clock, monkeypatch,
                                                                       caplog, job):
    from feedbot.delivery import status
    from feedbot.sources import ingest
    from feedbot.sources import run as sources

    runner, worker = running
    owner, name = (ingest, "sweep_inbox") if job == "inbox" else (sources, "run_configured")
    monkeypatch.setattr(owner, name, failing()(getattr(owner, name)))
    sweep = worker.sweep_inbox if job == "inbox" else worker.sweep_sources
    assert runner.call(sweep()) == []
    worker.heartbeat.alive()
    assert "injected fault" in caplog.text
    with Session(seeded) as session:
        assert any(p.startswith(f"{job} failing since") for p in status.health(session, clock.now))
    monkeypatch.undo()
    runner.call(sweep())
    with Session(seeded) as session:
        assert status.health(session, clock.now) == []


class StopAt:
    """Stands in for the pacer: the worker is told to stop while the `at`-th sender waits its pace."""

    interval = 0.0

    def __init__(self, worker, at: int) -> None:
        self.worker, self.at, self.waits = worker, at, 0

    async def wait(self) -> None:
        self.waits += 1
        if self.waits == self.at:
            self.worker.stopping.set()
        await asyncio.sleep(0)


def test_senders_paced_when_the_worker_stops_take_no_row(running, telegram, seeded, clock, monkeypatch):
    """Stopping mid-broadcast: a sender that finishes its pace afterwards takes nothing, so no row
    turns `sending` only to be handed back (a row left so by a failed hand-back would turn uncertain)."""
    runner, worker = running
    clock.now = datetime(2026, 3, 12, 8, 0, tzinfo=UTC)
    for chat_id in range(1101, 1121):
        add_subscriber(seeded, chat_id, interests="language models")
    handed_back = []
    hand_back = deliveries.hand_back

    def counted(*args):
        handed_back.append(args[1])
        return hand_back(*args)

    monkeypatch.setattr(deliveries, "hand_back", counted)
    worker.digests.pacer = StopAt(worker, 6)
    results = runner.call(worker.sweep_digests())
    with Session(seeded) as session:
        states = dict(session.execute(select(Delivery.status, func.count()).group_by(Delivery.status)).all())
    # Only a take already in the database when the worker stopped may have taken rows it then
    # handed back: at most one per sender (four), never one for a sender paced after the stop.
    assert len(handed_back) <= 4
    assert states == {"sent": results["sent"], "claimed": 20 - results["sent"]} and results["sent"] < 20
