"""Vote latency while the worker is busy: 👍/👎 taps through the conversation layer (the same
`Chat.button` the bot calls) while a digest broadcast to N subscribers (default 10,000; the real
sweep: claim, rank, record, send to the tests' Bot API server in its own process) and model
refits in another process (as the worker's refit child or `feedbot model refit`) run — against
the same taps with nothing else running. SQLite and PostgreSQL.

    .venv/bin/python benchmarks/vote_latency.py [--subscribers 10000] [--votes 300]

Ends with `RESULT vote_latency sqlite_p99_ms=… postgresql_p99_ms=… idle_p99_ms=…` (idle: the
worse of the two databases). Goal: p99 ≤ 250 ms while busy.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import multiprocessing
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy.orm import Session  # noqa: E402

from benchmarks.common import result_line, scratch_database  # noqa: E402
from benchmarks.delivery import NOW, TOKEN, populate, start_server  # noqa: E402
from feedbot.chat import telegram  # noqa: E402
from feedbot.chat.conversation import Chat, User  # noqa: E402
from feedbot.config import load_settings  # noqa: E402
from feedbot.ranking import textmodel  # noqa: E402
from feedbot.store import db, subscribers  # noqa: E402
from feedbot.store.db import transaction  # noqa: E402
from feedbot.worker import Worker  # noqa: E402

VOTER = 42


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def taps(chat: Chat, paper_ids: list[int], count: int, until: threading.Event | None = None) -> list[float]:
    """Vote `count` times (or until `until` is set, at least `count`), 20 ms apart; latencies in ms."""
    out = []
    n = 0
    while n < count or (until is not None and not until.is_set()):
        paper = paper_ids[n % len(paper_ids)]
        start = time.perf_counter()
        answer = chat.button(User(VOTER, VOTER), f"v:{paper}:{'+' if n % 3 else '-'}")
        out.append((time.perf_counter() - start) * 1000)
        assert answer.notice.startswith(("Saved", "Vote")), answer.notice
        n += 1
        time.sleep(0.02)
    return out


def run(kind: str, work: Path, base_url: str, count: int, votes: int) -> tuple[list[float], list[float]]:
    with scratch_database(kind, work) as url:
        data_dir = work / f"data-{kind}"
        populate(url, data_dir, count)
        settings = dataclasses.replace(load_settings({"DATABASE_URL": url, "FEEDBOT_DATA_DIR": str(data_dir)}),
                                       telegram_token=TOKEN, telegram_api_url=base_url)
        engine = db.make_engine(url)
        chat = Chat(engine, settings, lambda: NOW)
        with transaction(engine) as session:
            voter, _ = subscribers.subscribe(session, VOTER, VOTER, "voter")
            voter.send_time = "23:00"  # not part of the broadcast
            subscribers.add_interests(session, voter, "speech recognition")
        papers = [int(row[0].data.split(":")[1]) for reply in chat.digest(User(VOTER, VOTER))
                  for row in reply.keyboard]
        idle = taps(chat, papers, votes)
        bot = telegram.build_application(settings, Chat(engine, settings), rate_limit=False, connections=8).bot
        worker = Worker(settings, engine, bot, clock=lambda: NOW, broadcast_rate=0, part_pause=0, concurrency=4)
        done = threading.Event()

        def broadcast() -> None:
            async def sweep():
                async with worker.bot:
                    return await worker.sweep_digests()
            try:
                print(f"  {kind}: broadcast {dict(asyncio.run(sweep()))}")
            finally:
                done.set()

        # Refits in a loop in another process, as the worker's refit child or `feedbot model refit` run.
        context = multiprocessing.get_context("spawn")
        stop = context.Event()
        refits = context.Process(target=refit_loop, args=(url, str(settings.model_dir), stop))
        refits.start()
        thread = threading.Thread(target=broadcast)
        thread.start()
        busy = taps(chat, papers, votes, until=done)
        thread.join()
        stop.set()
        refits.join(120)
        engine.dispose()
        return idle, busy


def refit_loop(url: str, model_dir: str, stop) -> None:
    """Fit the text model again and again until told to stop (a child process)."""
    engine = db.make_engine(url)
    while not stop.is_set():
        with Session(engine) as session:
            textmodel.ensure(session, Path(model_dir), force=True)
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, default=10_000)
    parser.add_argument("--votes", type=int, default=300)
    args = parser.parse_args()
    server, base_url = start_server()
    results = {}
    try:
        with tempfile.TemporaryDirectory() as folder:
            for kind in ("sqlite", "postgresql"):
                results[kind] = run(kind, Path(folder), base_url, args.subscribers, args.votes)
    finally:
        server.terminate()
        server.wait(10)
    print(f"{'database':<11} {'phase':<38} {'votes':>6} {'median ms':>10} {'p99 ms':>8} {'max ms':>8}")
    for kind, (idle, busy) in results.items():
        for phase, values in (("idle", idle), (f"broadcast to {args.subscribers:,} + refit", busy)):
            print(f"{kind:<11} {phase:<38} {len(values):>6} {statistics.median(values):>10.1f} "
                  f"{percentile(values, 0.99):>8.1f} {max(values):>8.1f}")
    for kind, (idle, busy) in results.items():
        print(f"{kind}: busy p99 / idle p99 = {percentile(busy, 0.99) / percentile(idle, 0.99):.1f}")
    print(result_line("vote_latency", sqlite_p99_ms=percentile(results["sqlite"][1], 0.99),
                      postgresql_p99_ms=percentile(results["postgresql"][1], 0.99),
                      idle_p99_ms=max(percentile(results[k][0], 0.99) for k in results)))


if __name__ == "__main__":
    main()
