"""Delivery throughput: 10,000 subscribers' digests ranked, rendered and sent in one sweep.

The worker's real digest sweep (claim, batched ranking, record, render, send, record the outcome)
against the tests' Bot API server running in its own process on 127.0.0.1, with Telegram rate
limiting off, on SQLite and PostgreSQL. Reports digests per second and the share of the time
spent ranking, rendering, in HTTP, and in the database and the rest. As a baseline in the same
run: the same sweep sending one message per pick (what a bot that sends each paper separately
would do), on a tenth of the subscribers.

    .venv/bin/python benchmarks/delivery.py [--subscribers 10000]

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
from feedbot.worker import Worker  # noqa: E402

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


def start_server() -> tuple[subprocess.Popen, str]:
    server = subprocess.Popen([sys.executable, "-m", "tests.fake_telegram", TOKEN], cwd=ROOT,
                              stdout=subprocess.PIPE, text=True)
    return server, server.stdout.readline().strip()


def stats(base_url: str) -> dict:
    with urllib.request.urlopen(f"{base_url}{TOKEN}/_stats", data=b"", timeout=30) as response:
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


def run_once(kind: str, work: Path, base_url: str, count: int, one_per_pick: bool = False) -> tuple[float, dict]:
    with scratch_database(kind, work) as url:
        data_dir = work / f"data-{kind}-{count}-{one_per_pick}"
        populate(url, data_dir, count)
        settings = dataclasses.replace(load_settings({"DATABASE_URL": url, "FEEDBOT_DATA_DIR": str(data_dir)}),
                                       telegram_token=TOKEN, telegram_api_url=base_url)
        engine = db.make_engine(url)
        bot = telegram.build_application(settings, Chat(engine, settings), rate_limit=False, connections=8).bot
        worker = Worker(settings, engine, bot, clock=lambda: NOW, broadcast_rate=0, part_pause=0, concurrency=4)
        timer = Timer()
        timer.wrap(recommend, "recommend", "ranking")
        timer.wrap(digests, "render", "rendering")
        timer.wrap(worker.digests, "prepare", "prepare")
        if one_per_pick:
            one_message = digests.render
            timer.originals.append((digests, "render", one_message))

            def render_per_pick(digest, votes=None):
                [single] = one_message(digest, votes)
                blocks = single.text.split("\n\n")
                return [Reply(blocks[0])] + [Reply(block, [row]) for block, row in zip(blocks[1:], single.keyboard,
                                                                                          strict=True)]
            digests.render = render_per_pick
        start = time.perf_counter()
        try:
            results = asyncio.run(sweep(worker))
        finally:
            timer.restore()
        elapsed = time.perf_counter() - start
        engine.dispose()
        assert results.get("sent") == count, results
        # The prepare phase runs alone (ranking, rendering, database); the send phase is HTTP with
        # each delivery's status writes, overlapped across concurrent senders.
        seconds = timer.seconds
        shares = {"ranking": seconds["ranking"] / elapsed, "rendering": seconds["rendering"] / elapsed,
                  "database (claims, loads, records)": (seconds["prepare"] - seconds["ranking"] - seconds["rendering"])
                  / elapsed,
                  "sending (HTTP + status writes)": (elapsed - seconds["prepare"]) / elapsed}
        return elapsed, shares


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
    parser.add_argument("--processes", type=int, default=0, help="N worker processes on one PostgreSQL database")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="feedbot-delivery-"))
    server, base_url = start_server()
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
    try:
        figures = {}
        for kind in args.databases.split(","):
            elapsed, shares = run_once(kind, work, base_url, args.subscribers)
            per_second = args.subscribers / elapsed
            baseline_count = max(100, args.subscribers // 10)
            base_elapsed, _ = run_once(kind, work, base_url, baseline_count, one_per_pick=True)
            base_rate = baseline_count / base_elapsed
            figures[kind] = per_second
            print(f"{kind}: {args.subscribers:,} digests in {elapsed:.1f} s = {per_second:.0f} digests/s "
                  f"(one message per pick: {base_rate:.0f} digests/s, ratio {per_second / base_rate:.1f})")
            print("  time share: " + ", ".join(f"{k} {v:.0%}" for k, v in sorted(shares.items(), key=lambda x: -x[1])))
        print(f"server received {stats(base_url)['sent']:,} messages")
    finally:
        server.terminate()
        server.wait(10)
    first = next(iter(figures))
    print(result_line("delivery", subscribers=args.subscribers, per_second=round(figures[first]),
                      **{f"{k}_per_second": round(v) for k, v in figures.items()}))


if __name__ == "__main__":
    main()
