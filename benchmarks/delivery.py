"""Delivery throughput: 10,000 subscribers' digests ranked, rendered and sent in one sweep.

The worker's real digest sweep (claim, batched ranking, record, render, send, record the outcome)
against the tests' Bot API server running in its own process on 127.0.0.1, with Telegram rate
limiting off, on SQLite and PostgreSQL. Reports digests per second and the share of the time
spent ranking, rendering, in HTTP, and in the database and the rest, and the CPU time of this
process (feedbot's side: the sweep, python-telegram-bot, SQLite; not the Bot API server, nor the
PostgreSQL server) per digest. As a baseline in the same run: the same sweep sending one message per
pick (what a bot that sends each paper separately would do), on a tenth of the subscribers.

With `--latency-ms N` the server holds every answer N ms (Telegram far away) and the sweep is paced
at `--rate` messages/s (FEEDBOT_SEND_RATE's default, 25, unless given): it reports the rate reached
while sending and the most requests the server held at once. The one-message-per-pick baseline is
left out then (it measures cost, not pace).

    .venv/bin/python benchmarks/delivery.py [--subscribers 10000] [--latency-ms 500] [--rate 25] [--processes N]

With --processes N it runs N `feedbot worker` processes on one PostgreSQL database instead (they
share the rows to send, with FEEDBOT_PAID_BROADCAST=1 and FEEDBOT_SEND_RATE=1000), and adds
`processes=N` and feedbot's own CPU per digest (the workers' user + system time, read from /proc;
the Bot API server's is not counted) to the RESULT line.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import defaultdict
from datetime import UTC, date, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from benchmarks.common import ROOT, result_line, scratch_database  # noqa: E402
from feedbot.chat import telegram  # noqa: E402
from feedbot.chat.conversation import Chat  # noqa: E402
from feedbot.config import load_settings  # noqa: E402
from feedbot.delivery import digests  # noqa: E402
from feedbot.delivery.messages import Reply  # noqa: E402
from feedbot.ranking import recommend, textmodel  # noqa: E402
from feedbot.sources.ingest import ingest_paths  # noqa: E402
from feedbot.store import db  # noqa: E402
from feedbot.store.db import insert_for, transaction  # noqa: E402
from feedbot.store.models import Interest, Subscriber  # noqa: E402
from feedbot.worker import CONNECTIONS, Worker  # noqa: E402

TOKEN = "123456:BENCH"
NOW = datetime(2026, 3, 12, 9, 0, tzinfo=UTC)
TOPICS = ["language models", "diffusion", "speech recognition", "graph neural networks", "reinforcement learning",
          "vision transformers", "robotics", "retrieval", "benchmark datasets", "optimization"]


class Timer:
    """Adds up wall time spent inside wrapped functions, by label."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.originals: list[tuple[object, str, object]] = []

    def restore(self) -> None:
        for owner, name, original in reversed(self.originals):
            setattr(owner, name, original)

    def wrap(self, owner, name: str, label: str) -> None:
        original = getattr(owner, name)
        self.originals.append((owner, name, original))
        if asyncio.iscoroutinefunction(original):
            async def timed_async(*args, **kwargs):
                start = time.perf_counter()
                try:
                    return await original(*args, **kwargs)
                finally:
                    self.seconds[label] += time.perf_counter() - start
            setattr(owner, name, timed_async)
        else:
            def timed(*args, **kwargs):
                start = time.perf_counter()
                try:
                    return original(*args, **kwargs)
                finally:
                    self.seconds[label] += time.perf_counter() - start
            setattr(owner, name, timed)


def start_server(latency_ms: float = 0.0) -> tuple[subprocess.Popen, str]:
    server = subprocess.Popen([sys.executable, "-m", "tests.fake_telegram", TOKEN, "--latency-ms", str(latency_ms)],
                              cwd=ROOT, stdout=subprocess.PIPE, text=True)
    return server, server.stdout.readline().strip()


def stats(base_url: str, reset: bool = False) -> dict:
    """Messages the server took, chats reached, and the most requests it held at once (since the
    last `reset`)."""
    with urllib.request.urlopen(f"{base_url}{TOKEN}/_stats", data=b"reset=1" if reset else b"",
                                timeout=30) as response:
        return json.load(response)["result"]


def populate(url: str, data_dir: Path, count: int, send_time: str = "08:00") -> None:
    db.upgrade(url)
    engine = db.make_engine(url)
    ingest_paths(engine, [ROOT / "examples" / "dumps"], stamp=date(2026, 3, 20))
    rng = np.random.default_rng(0)
    with transaction(engine) as session:
        insert = insert_for(session)
        session.execute(insert(Subscriber), [
            {"telegram_id": 10_000_000 + i, "chat_id": 10_000_000 + i, "name": "", "state": "active",
             "timezone": "UTC", "send_time": send_time, "digest_size": 5, "frequency": "daily", "created_at": NOW}
            for i in range(count)])
        ids = [sid for (sid,) in session.execute(Subscriber.__table__.select().with_only_columns(Subscriber.id))]
        session.execute(insert(Interest), [
            {"subscriber_id": sid, "text": topic, "created_at": NOW}
            for sid in ids for topic in rng.choice(TOPICS, size=int(rng.integers(1, 4)), replace=False)])
    from sqlalchemy.orm import Session

    with Session(engine) as session:
        textmodel.ensure(session, data_dir / "model")
    engine.dispose()


async def sweep(worker: Worker) -> dict:
    async with worker.bot:
        return dict(await worker.sweep_digests())


@dataclasses.dataclass
class Run:
    elapsed: float  # the whole sweep, s
    sending: float  # its send phase (after ranking and claiming), s
    messages: int  # messages the server took
    cpu: float  # this process's CPU time over the sweep, s
    send_cpu: float  # of which in the send phase
    peak: int  # the most requests the server held at once
    shares: dict[str, float]


def run_once(kind: str, work: Path, base_url: str, count: int, one_per_pick: bool = False, rate: float = 0) -> Run:
    with scratch_database(kind, work) as url:
        data_dir = work / f"data-{kind}-{count}-{one_per_pick}"
        populate(url, data_dir, count)
        settings = dataclasses.replace(load_settings({"DATABASE_URL": url, "FEEDBOT_DATA_DIR": str(data_dir)}),
                                       telegram_token=TOKEN, telegram_api_url=base_url)
        engine = db.make_engine(url)
        bot = telegram.build_application(settings, Chat(engine, settings), rate_limit=False,
                                         connections=CONNECTIONS).bot  # the worker's pool
        worker = Worker(settings, engine, bot, clock=lambda: NOW, broadcast_rate=rate, part_pause=0, concurrency=4)
        timer = Timer()
        timer.wrap(recommend, "recommend", "ranking")
        timer.wrap(digests, "render", "rendering")
        timer.wrap(worker.digests, "prepare", "prepare")
        prepared = worker.digests.prepare

        def prepare_then_note_cpu(*args):  # the send phase's CPU is counted from here
            try:
                return prepared(*args)
            finally:
                timer.seconds["cpu at sending"] = time.process_time()
        worker.digests.prepare = prepare_then_note_cpu
        if one_per_pick:
            one_message = digests.render
            timer.originals.append((digests, "render", one_message))

            def render_per_pick(digest, votes=None):
                [single] = one_message(digest, votes)
                blocks = single.text.split("\n\n")
                return [Reply(blocks[0])] + [Reply(block, [row]) for block, row in zip(blocks[1:], single.keyboard,
                                                                                          strict=True)]
            digests.render = render_per_pick
        before = stats(base_url, reset=True)["sent"]
        start, cpu = time.perf_counter(), time.process_time()
        try:
            results = asyncio.run(sweep(worker))
        finally:
            timer.restore()
        elapsed, end_cpu = time.perf_counter() - start, time.process_time()
        cpu, send_cpu = end_cpu - cpu, end_cpu - timer.seconds["cpu at sending"]
        after = stats(base_url)
        engine.dispose()
        assert results.get("sent") == count, results
        # The prepare phase runs alone (ranking, rendering, database); the send phase is HTTP with
        # each delivery's status writes, overlapped across concurrent senders.
        seconds = timer.seconds
        shares = {"ranking": seconds["ranking"] / elapsed, "rendering": seconds["rendering"] / elapsed,
                  "database (claims, loads, records)": (seconds["prepare"] - seconds["ranking"] - seconds["rendering"])
                  / elapsed,
                  "sending (HTTP + status writes)": (elapsed - seconds["prepare"]) / elapsed}
        return Run(elapsed, elapsed - seconds["prepare"], after["sent"] - before, cpu, send_cpu, after["peak"], shares)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a running process, from /proc."""
    import os

    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_processes(work: Path, base_url: str, count: int, processes: int) -> tuple[float, float]:
    """N worker processes on one PostgreSQL database send `count` digests: (digests a second
    from the first claim to the last outcome, the workers' CPU milliseconds per digest)."""
    import os

    from sqlalchemy import func, select, update
    from sqlalchemy.orm import Session

    from feedbot.store.models import Delivery, Heartbeat

    with scratch_database("postgresql", work) as url:
        data_dir = work / f"data-processes-{processes}"
        populate(url, data_dir, count, send_time=f"{(datetime.now(UTC).hour + 23) % 24:02d}:00")
        engine = db.make_engine(url)
        with transaction(engine) as session:  # not due until every worker runs
            session.execute(update(Subscriber).values(state="stopped"))
        env = {**{k: v for k, v in os.environ.items() if not k.startswith(("FEEDBOT_", "TELEGRAM_"))},
               "DATABASE_URL": url, "FEEDBOT_DATA_DIR": str(data_dir), "TELEGRAM_BOT_TOKEN": TOKEN,
               "FEEDBOT_TELEGRAM_API_URL": base_url, "FEEDBOT_PAID_BROADCAST": "1", "FEEDBOT_SEND_RATE": "1000",
               "FEEDBOT_LEADER_CHECK_SECONDS": "2", "FEEDBOT_LOG_LEVEL": "WARNING"}
        workers = [subprocess.Popen([sys.executable, "-m", "feedbot.cli", "worker"], env=env, cwd=ROOT)
                   for _ in range(processes)]
        try:
            while True:  # every worker reported its role
                with Session(engine) as session:
                    if session.scalar(select(func.count()).where(Heartbeat.role.is_not(None))) >= processes:
                        break
                time.sleep(0.5)
            cpu_before = sum(cpu_seconds(w.pid) for w in workers)
            with transaction(engine) as session:  # everyone due now: the leader's next sweep claims them
                session.execute(update(Subscriber).values(state="active"))
            while True:
                with Session(engine) as session:
                    done = session.scalar(select(func.count()).where(Delivery.status == "sent"))
                    if done >= count:
                        first, last = session.execute(select(func.min(Delivery.claimed_at),
                                                              func.max(Delivery.finished_at))).one()
                        break
                time.sleep(0.5)
            cpu = sum(cpu_seconds(w.pid) for w in workers) - cpu_before
        finally:
            for worker in workers:
                worker.terminate()
            for worker in workers:
                worker.wait(30)
            engine.dispose()
        return count / (last - first).total_seconds(), cpu * 1000 / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=10_000)
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--latency-ms", type=float, default=0.0,
                        help="the Bot API server holds every answer this long (then paced at --rate)")
    parser.add_argument("--rate", type=float, default=None,
                        help="messages/s the sweep sends at most (default: unpaced, or 25 with --latency-ms)")
    parser.add_argument("--processes", type=int, default=0, help="N worker processes on one PostgreSQL database")
    args = parser.parse_args()
    rate = args.rate if args.rate is not None else (25.0 if args.latency_ms else 0.0)
    work = Path(tempfile.mkdtemp(prefix="feedbot-delivery-"))
    server, base_url = start_server(args.latency_ms)
    if args.processes:
        try:
            per_second, cpu_ms = run_processes(work, base_url, args.subscribers, args.processes)
        finally:
            server.terminate()
            server.wait(10)
        print(f"{args.processes} worker processes on PostgreSQL: {per_second:.0f} digests/s, "
              f"{cpu_ms:.1f} ms of feedbot CPU a digest")
        print(result_line("delivery", subscribers=args.subscribers, per_second=round(per_second),
                          postgresql_per_second=round(per_second), processes=args.processes,
                          cpu_ms_per_digest=round(cpu_ms, 2)))
        return
    figures: dict[str, Run] = {}
    try:
        for kind in args.databases.split(","):
            run = figures[kind] = run_once(kind, work, base_url, args.subscribers, rate=rate)
            per_second, sending = args.subscribers / run.elapsed, run.messages / run.sending
            line = (f"{kind}: {args.subscribers:,} digests in {run.elapsed:.1f} s = {per_second:.0f} digests/s, "
                    f"{1000 * run.cpu / args.subscribers:.2f} ms CPU a digest "
                    f"({1000 * run.send_cpu / args.subscribers:.2f} sending); sending {sending:.1f} messages/s, "
                    f"at most {run.peak} requests at once")
            if not rate:
                baseline_count = max(100, args.subscribers // 10)
                base = run_once(kind, work, base_url, baseline_count, one_per_pick=True)
                base_rate = baseline_count / base.elapsed
                line += f" (one message per pick: {base_rate:.0f} digests/s, ratio {per_second / base_rate:.1f})"
            print(line)
            print("  time share: " + ", ".join(f"{k} {v:.0%}" for k, v in sorted(run.shares.items(),
                                                                               key=lambda x: -x[1])))
        print(f"server received {stats(base_url)['sent']:,} messages")
    finally:
        server.terminate()
        server.wait(10)
    first = next(iter(figures.values()))
    paced = {}
    if rate:
        paced = {"rate": rate, "latency_ms": round(args.latency_ms),
                 **{f"{k}_rate_share": round(r.messages / r.sending / rate, 3) for k, r in figures.items()},
                 **{f"{k}_peak_in_flight": r.peak for k, r in figures.items()}}
    print(result_line("delivery", subscribers=args.subscribers, per_second=round(args.subscribers / first.elapsed),
                      **{f"{k}_per_second": round(args.subscribers / r.elapsed) for k, r in figures.items()},
                      cpu_ms_per_digest=round(1000 * first.cpu / args.subscribers, 2),
                      **{f"{k}_cpu_ms_per_digest": round(1000 * r.cpu / args.subscribers, 2)
                         for k, r in figures.items()},
                      **{f"{k}_send_cpu_ms_per_digest": round(1000 * r.send_cpu / args.subscribers, 2)
                         for k, r in figures.items()}, **paced))


if __name__ == "__main__":
    main()
