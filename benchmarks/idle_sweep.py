"""What the worker's minute costs when almost nobody is due, and what `feedbot status` costs.

N subscribers over a few time zones, each already holding its digest for its local yesterday and
today, and 1 % not yet served today (due now). Timed on SQLite and PostgreSQL:
- the digest sweep's planning (`due.plan`: who is due or missed now), against the baseline of
  loading every subscriber and planning them all (what the sweep did every minute before);
- `feedbot status`'s delivery report, against the baseline of reading today's row of each
  subscriber one query at a time. SQL statements are counted as well.

    .venv/bin/python benchmarks/idle_sweep.py [--subscribers 20000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import event, select  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from benchmarks.common import result_line, scratch_database, timed  # noqa: E402
from feedbot.delivery import due, schedule, status  # noqa: E402
from feedbot.store import db  # noqa: E402
from feedbot.store.db import transaction  # noqa: E402
from feedbot.store.models import Delivery, Subscriber  # noqa: E402

NOW = datetime(2026, 3, 12, 15, 0, tzinfo=UTC)
ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Asia/Tokyo", "Asia/Kolkata", "Pacific/Kiritimati"]


def populate(engine, count: int) -> None:
    subs = [{"telegram_id": n, "chat_id": n, "name": "", "state": "active", "timezone": ZONES[n % len(ZONES)],
             "send_time": "08:00" if n % 100 else "14:30", "digest_size": 5, "frequency": "daily",
             "created_at": NOW - timedelta(days=30)} for n in range(1, count + 1)]
    with transaction(engine) as session:
        for start in range(0, len(subs), 2000):
            session.execute(Subscriber.__table__.insert(), subs[start : start + 2000])
        rows = []
        for sid, zone in session.execute(select(Subscriber.id, Subscriber.timezone)):
            today = NOW.astimezone(schedule.zone(zone)).date()
            for back in range(0 if sid % 100 else 1, 3):  # 1 % have no digest for today yet
                rows.append({"subscriber_id": sid, "local_date": today - timedelta(days=back), "status": "sent",
                             "claimed_at": NOW - timedelta(days=back, hours=5), "parts_sent": 1,
                             "source": "schedule"})
        for start in range(0, len(rows), 2000):
            session.execute(Delivery.__table__.insert(), rows[start : start + 2000])


class Statements:
    def __init__(self, engine) -> None:
        self.count = 0
        event.listen(engine, "before_cursor_execute", self._seen)

    def _seen(self, *args) -> None:
        self.count += 1

    def during(self, function) -> int:
        before = self.count
        function()
        return self.count - before


def one_database(kind: str, folder: Path, count: int, repeat: int) -> dict[str, float]:
    with scratch_database(kind, folder) as url:
        db.upgrade(url)
        engine = db.make_engine(url)
        populate(engine, count)
        statements = Statements(engine)

        def plan() -> due.Plan:
            with Session(engine) as session:
                return due.plan(session, NOW)

        def plan_everyone() -> due.Plan:
            with Session(engine) as session:
                return due.plan(session, NOW, list(session.scalars(select(Subscriber).order_by(Subscriber.id))))

        def report() -> list[str]:
            with Session(engine) as session:
                return list(status.delivery_report(session, NOW))

        def rows_one_by_one() -> list:
            with Session(engine) as session:
                subs = session.scalars(select(Subscriber)).all()
                return [session.scalar(select(Delivery).where(Delivery.subscriber_id == s.id,
                                                              Delivery.local_date == schedule.local_date(s, NOW)))
                        for s in subs]

        plan_s, planned = timed(plan, repeat)
        everyone_s, everyone = timed(plan_everyone, repeat)
        assert sorted(s.id for s, _ in planned.due) == sorted(s.id for s, _ in everyone.due), "plans differ"
        report_s, _ = timed(report, max(1, repeat // 2))
        one_by_one_s, _ = timed(rows_one_by_one, max(1, repeat // 2))
        out = {"plan_s": plan_s, "plan_everyone_s": everyone_s, "due": len(planned.due),
               "plan_statements": statements.during(plan), "report_s": report_s,
               "report_statements": statements.during(report), "one_by_one_s": one_by_one_s,
               "one_by_one_statements": statements.during(rows_one_by_one)}
        engine.dispose()
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        for kind in ("sqlite", "postgresql"):
            results[kind] = r = one_database(kind, Path(folder), args.subscribers, args.repeat)
            print(f"{kind}: {args.subscribers} subscribers, {r['due']} due")
            print(f"  sweep planning      {r['plan_s'] * 1000:8.1f} ms  {r['plan_statements']:6d} statements")
            print(f"  plan everyone       {r['plan_everyone_s'] * 1000:8.1f} ms  (baseline; "
                  f"{r['plan_everyone_s'] / r['plan_s']:.1f}x)")
            print(f"  status report       {r['report_s'] * 1000:8.1f} ms  {r['report_statements']:6d} statements")
            print(f"  today's rows 1 by 1 {r['one_by_one_s'] * 1000:8.1f} ms  {r['one_by_one_statements']:6d} "
                  "statements (baseline)")
    s, p = results["sqlite"], results["postgresql"]
    print(result_line("idle_sweep", subscribers=args.subscribers, sqlite_plan_ms=s["plan_s"] * 1000,
                      sqlite_plan_vs_everyone=s["plan_everyone_s"] / s["plan_s"],
                      postgresql_plan_ms=p["plan_s"] * 1000,
                      postgresql_plan_vs_everyone=p["plan_everyone_s"] / p["plan_s"],
                      sqlite_status_ms=s["report_s"] * 1000, postgresql_status_ms=p["report_s"] * 1000,
                      status_statements=p["report_statements"]))


if __name__ == "__main__":
    main()
