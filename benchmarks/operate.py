"""Operating costs: one Prometheus scrape of the worker's /metrics, the count of who is due that
it refreshes once a minute, and one `feedbot stats` table,
on a history of N subscribers × D days (a sent digest of 5 picks a day each, a third of the picks
voted, a search a week), on SQLite and PostgreSQL.

Baselines in the same run: the scrape of the event metrics alone (no database gauges), and the
engagement table computed the naive way, every row loaded and counted in Python (the tests'
reference count), on the same database. Medians of repeated runs.

    .venv/bin/python benchmarks/operate.py [--subscribers 2000] [--days 30]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import urllib.request
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from prometheus_client import start_http_server  # noqa: E402
from sqlalchemy import insert, select  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from benchmarks.common import result_line, scratch_database, timed  # noqa: E402
from feedbot import metrics, stats  # noqa: E402
from feedbot.delivery import due  # noqa: E402
from feedbot.store import db  # noqa: E402
from feedbot.store.models import Delivery, Interest, Paper, Shown, Subscriber, Vote  # noqa: E402
from tests.test_stats import count_by_hand  # noqa: E402

LAST = date(2026, 3, 14)


def populate(engine, subscribers: int, days: int, seed: int = 1) -> int:
    """The history; the number of rows written."""
    rng = random.Random(seed)
    papers = [{"id": n, "key": f"p{n}", "title": f"Paper {n}", "abstract": "a", "first_listed": LAST}
              for n in range(1, 3001)]
    people, deliveries, shown, votes = [], [], [], []
    for sid in range(1, subscribers + 1):
        start = datetime.combine(LAST - timedelta(days=days + rng.randrange(30)), time(), UTC)
        people.append({"id": sid, "telegram_id": sid, "chat_id": sid, "created_at": start,
                       "state": "active" if rng.random() < 0.9 else "stopped"})
        picked = rng.sample(range(1, 3001), 5 * days + days // 7)
        for day in range(days):
            at = datetime.combine(LAST - timedelta(days=day), time(8), UTC) + timedelta(seconds=rng.randrange(3600))
            key = len(deliveries) + 1
            deliveries.append({"id": key, "subscriber_id": sid, "local_date": at.date(), "status": "sent",
                               "claimed_at": at, "finished_at": at, "source": "schedule"})
            for position in range(5):
                paper = picked[5 * day + position]
                shown.append({"subscriber_id": sid, "paper_id": paper, "delivery_id": key, "source": "digest",
                              "position": position, "shown_at": at})
                if rng.random() < 1 / 3:
                    votes.append({"subscriber_id": sid, "paper_id": paper, "value": rng.choice((1, -1)),
                                  "voted_at": at + timedelta(hours=rng.randrange(1, 12))})
        for week in range(days // 7):
            searched = datetime.combine(LAST - timedelta(days=7 * week), time(12), UTC)
            shown.append({"subscriber_id": sid, "paper_id": picked[5 * days + week], "delivery_id": None,
                          "source": "search", "position": 0, "shown_at": searched})
    with engine.begin() as connection:
        for table, rows in ((Paper, papers), (Subscriber, people), (Delivery, deliveries), (Shown, shown),
                            (Vote, votes)):
            for start in range(0, len(rows), 5000):
                connection.execute(insert(table.__table__), rows[start : start + 5000])
    return len(papers) + len(people) + len(deliveries) + len(shown) + len(votes)


def naive(engine, count: int) -> list[stats.DayStats]:
    """Every row loaded, then counted in Python."""
    with Session(engine) as session:
        people = [(created.replace(tzinfo=UTC) if created.tzinfo is None else created, state) for created, state in
                  session.execute(select(Subscriber.created_at, Subscriber.state).order_by(Subscriber.id))]

        def utc(moment):
            return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment

        deliveries = [(k, s, 0, status, utc(at), source) for k, s, status, at, source in session.execute(
            select(Delivery.id, Delivery.subscriber_id, Delivery.status, Delivery.finished_at, Delivery.source))]
        shown = [(s, p, k, source, utc(at)) for s, p, k, source, at in session.execute(
            select(Shown.subscriber_id, Shown.paper_id, Shown.delivery_id, Shown.source, Shown.shown_at))]
        votes = {(s, p): (v, utc(at)) for s, p, v, at in session.execute(
            select(Vote.subscriber_id, Vote.paper_id, Vote.value, Vote.voted_at))}
        interests = [(s, utc(at)) for s, at in session.execute(select(Interest.subscriber_id, Interest.created_at))]
    days = [LAST - timedelta(days=n) for n in range(count - 1, -1, -1)]
    return count_by_hand(people, deliveries, shown, votes, interests, days)


def scrape_seconds(port: int, repeat: int) -> float:
    def scrape() -> None:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=60) as response:
            response.read()

    return timed(scrape, repeat)[0]


def run(kind: str, subscribers: int, days: int, folder: Path) -> dict[str, float]:
    with scratch_database(kind, folder) as url:
        db.upgrade(url)
        engine = db.make_engine(url)
        try:
            rows = populate(engine, subscribers, days)
            events = metrics.Metrics()
            bare, bare_thread = start_http_server(0, addr="127.0.0.1", registry=events.registry)
            full_metrics = metrics.Metrics()
            full, full_thread = metrics.serve(full_metrics, engine, "127.0.0.1", 0,
                                              clock=lambda: datetime.combine(LAST, time(12), UTC))
            try:
                events_only = scrape_seconds(bare.server_port, 20)
                with_database = scrape_seconds(full.server_port, 20)  # who is due: counted by the first only
                with Session(engine) as session:
                    due_seconds = timed(lambda: due.plan(session, datetime.combine(LAST, time(12), UTC)), 5)[0]
            finally:
                for server, thread in ((bare, bare_thread), (full, full_thread)):
                    server.shutdown()
                    server.server_close()
                    thread.join(5)

            def table() -> list[stats.DayStats]:
                with Session(engine) as session:
                    return stats.engagement(session, LAST, days)

            sql_seconds, sql_rows = timed(table, 5)
            naive_seconds, naive_rows = timed(lambda: naive(engine, days), 3)
            assert sql_rows == naive_rows, "the SQL table differs from the naive count"
        finally:
            engine.dispose()
    print(f"{kind}: {rows:,} rows; scrape median {1000 * with_database:.1f} ms "
          f"(event metrics alone {1000 * events_only:.2f} ms; who is due, once a minute, {1000 * due_seconds:.0f} ms); "
          f"stats table median {1000 * sql_seconds:.0f} ms, "
          f"naive {1000 * naive_seconds:.0f} ms ({naive_seconds / sql_seconds:.1f}x)", flush=True)
    return {"scrape_ms": 1000 * with_database, "events_ms": 1000 * events_only, "due_ms": 1000 * due_seconds,
            "stats_ms": 1000 * sql_seconds,
            "naive_ms": 1000 * naive_seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=2000)
    parser.add_argument("--days", type=int, default=30)
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        for kind in ("sqlite", "postgresql"):
            results[kind] = run(kind, args.subscribers, args.days, Path(folder))
    print("| database | scrape ms (median of 20) | event metrics alone ms | who is due ms (once a minute) | "
          "stats table ms (median of 5) | naive Python count ms (median of 3) | naive / SQL |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for kind, r in results.items():
        print(f"| {kind} | {r['scrape_ms']:.1f} | {r['events_ms']:.2f} | {r['due_ms']:.0f} | {r['stats_ms']:.0f} | "
              f"{r['naive_ms']:.0f} | {r['naive_ms'] / r['stats_ms']:.1f} |")
    print(result_line("operate", subscribers=args.subscribers, days=args.days,
                      sqlite_scrape_ms=results["sqlite"]["scrape_ms"],
                      postgresql_scrape_ms=results["postgresql"]["scrape_ms"],
                      sqlite_due_ms=results["sqlite"]["due_ms"], postgresql_due_ms=results["postgresql"]["due_ms"],
                      sqlite_stats_ms=results["sqlite"]["stats_ms"],
                      postgresql_stats_ms=results["postgresql"]["stats_ms"],
                      sqlite_stats_vs_naive=results["sqlite"]["naive_ms"] / results["sqlite"]["stats_ms"],
                      postgresql_stats_vs_naive=results["postgresql"]["naive_ms"] / results["postgresql"]["stats_ms"]))


if __name__ == "__main__":
    main()
