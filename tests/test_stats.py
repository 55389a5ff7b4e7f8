"""`feedbot stats`: engagement per UTC day from a known history, exact on both databases; the
table and plot from the CLI; and a clear message (exit 2) when matplotlib is missing."""

import subprocess
import sys
from datetime import UTC, date, datetime, time, timedelta

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy import delete, text
from sqlalchemy.orm import Session

from feedbot import stats
from feedbot.stats import DayStats
from feedbot.store.db import transaction
from feedbot.store.models import Delivery, Interest, Paper, Shown, Subscriber, Vote


def seed_history(engine, last: date) -> list[date]:
    """Five days d0..d4 ending `last`; subscribers A, B (active), C (stopped), D (blocked), E."""
    d = [last - timedelta(days=4 - n) for n in range(5)]

    def at(n: int, clock: str) -> datetime:
        return datetime.combine(d[0] + timedelta(days=n), time.fromisoformat(clock), UTC)

    with transaction(engine) as session:
        for n in range(1, 7):
            session.add(Paper(id=n, key=f"p{n}", title=f"Paper {n}", abstract="a", first_listed=d[0]))
        people = {"A": (at(0, "09:00"), "active"), "B": (at(2, "23:59:59"), "active"),
                  "C": (at(1, "08:00"), "stopped"), "D": (at(-9, "10:00"), "blocked"),
                  "E": (at(-8, "10:00"), "active")}
        ids = {}
        for n, (name, (created, state)) in enumerate(people.items(), 1):
            session.add(Subscriber(id=n, telegram_id=1000 + n, chat_id=1000 + n, state=state, created_at=created))
            ids[name] = n
        session.flush()

        def delivery(key, who, day, status, finished, picks=(), source="schedule"):
            session.add(Delivery(id=key, subscriber_id=ids[who], local_date=d[0] + timedelta(days=day), status=status,
                                 claimed_at=finished, finished_at=finished, source=source))
            session.flush()
            for position, paper in enumerate(picks):
                session.add(Shown(subscriber_id=ids[who], paper_id=paper, delivery_id=key, source="digest",
                                  position=position, shown_at=finished))

        delivery(1, "A", 0, "sent", at(0, "08:00:05"), (1, 2, 3))
        delivery(2, "A", 1, "sent", at(1, "08:00"), (4, 5))
        delivery(3, "C", 1, "sent", at(1, "08:01"), (1,))
        delivery(4, "B", 3, "sent", at(3, "00:00:00"), (1, 2), source="command")  # /digest just after midnight
        delivery(5, "D", 2, "blocked", at(2, "07:00"))  # a 403: D blocked the bot
        delivery(6, "E", 2, "uncertain", at(2, "08:00"), (6,))  # never counted as delivered
        delivery(7, "E", 3, "empty", at(3, "08:00"))
        delivery(8, "E", 4, "sent", at(4, "08:00"), (2,))
        delivery(9, "E", -6, "sent", at(-6, "08:00"), (5,))  # before the period
        session.add(Shown(subscriber_id=ids["C"], paper_id=6, source="search", shown_at=at(2, "10:00")))
        session.add(Interest(subscriber_id=ids["A"], text="robots", created_at=at(4, "06:00")))
        for who, paper, value, when in [("A", 1, 1, at(0, "12:00")), ("A", 2, -1, at(3, "23:59:59")),
                                        ("A", 4, 1, at(1, "09:00")), ("A", 5, 1, at(1, "09:01")),
                                        ("C", 1, -1, at(1, "09:00")), ("B", 1, 1, at(3, "00:05")),
                                        ("E", 2, 1, at(4, "09:00")), ("E", 5, -1, at(-6, "09:00"))]:
            session.add(Vote(subscriber_id=ids[who], paper_id=paper, value=value, voted_at=when))
    return d


def expected(d: list[date]) -> list[DayStats]:
    return [
        DayStats(d[0], digests=1, picks=3, likes=1, dislikes=1, active=2, new=1, stopped=0),  # A, and E's old vote
        DayStats(d[1], digests=2, picks=3, likes=2, dislikes=1, active=2, new=1, stopped=0),
        DayStats(d[2], digests=0, picks=0, likes=0, dislikes=0, active=3, new=1, stopped=2),
        DayStats(d[3], digests=1, picks=2, likes=1, dislikes=0, active=3, new=0, stopped=0),
        DayStats(d[4], digests=1, picks=1, likes=1, dislikes=0, active=4, new=0, stopped=0),
    ]


def test_engagement_of_a_known_history(engine):
    d = seed_history(engine, date(2026, 3, 14))
    with Session(engine) as session:
        if engine.dialect.name == "postgresql":  # days are UTC whatever the session's zone
            session.execute(text("SET TIME ZONE 'Pacific/Kiritimati'"))
        rows = stats.engagement(session, d[4], 5)
        assert rows == expected(d)
        assert rows[0].like_rate == pytest.approx(1 / 3) and rows[2].like_rate is None
        # A longer period adds the days before, where E's old digest and D's and E's sign-ups fall.
        longer = stats.engagement(session, d[4], 14)
        assert longer[9:] == expected(d)
        by_day = {r.day: r for r in longer}
        assert by_day[d[0] - timedelta(days=6)] == DayStats(d[0] - timedelta(days=6), 1, 1, 0, 1, 2, 0, 0)
        assert by_day[d[0] - timedelta(days=9)].new == 1 and by_day[d[0] - timedelta(days=8)].new == 1
        assert stats.engagement(session, d[4], 1) == expected(d)[4:]
        with pytest.raises(ValueError, match="between 1 and 366"):
            stats.engagement(session, d[4], 367)


def test_an_empty_database_gives_zero_rows(engine):
    with Session(engine) as session:
        rows = stats.engagement(session, date(2026, 3, 14), 3)
    assert rows == [DayStats(date(2026, 3, 12)), DayStats(date(2026, 3, 13)), DayStats(date(2026, 3, 14))]
    assert stats.table(rows)[-1].split() == ["total", "0", "0", "-", "-", "0", "0", "0"]


def test_table_lines():
    d = [date(2026, 3, 10) + timedelta(days=n) for n in range(5)]
    lines = stats.table(expected(d))
    assert lines[0].split() == ["day", "digests", "picks", "👍", "rate", "👎", "rate", "active", "7d", "new",
                                "stopped"]
    assert lines[1].split() == ["2026-03-10", "1", "3", "33.3%", "33.3%", "2", "1", "0"]
    assert lines[3].split() == ["2026-03-12", "0", "0", "-", "-", "3", "1", "2"]
    assert lines[-1].split() == ["total", "5", "9", "55.6%", "22.2%", "4", "3", "2"]


def run_cli(env, *args, prelude: str = ""):
    code = f"import sys\n{prelude}\nfrom feedbot.cli import main\nsys.exit(main({list(args)!r}))"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)


def test_cli_prints_the_table_and_writes_the_plot(engine, env, tmp_path):
    today = datetime.now(UTC).date()
    seed_history(engine, today)
    png = tmp_path / "engagement.png"
    done = run_cli(env, "stats", "--days", "5", "--plot", str(png))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[1].split() == [(today - timedelta(days=4)).isoformat(), "1", "3", "33.3%", "33.3%", "2", "1", "0"]
    assert lines[6].split() == ["total", "5", "9", "55.6%", "22.2%", "4", "3", "2"]
    assert lines[7] == f"plot written to {png}"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


def test_cli_without_matplotlib_says_so_and_exits_2(engine, env, tmp_path):
    png = tmp_path / "engagement.png"
    # matplotlib made unimportable in the child, as on an install without the plot extra.
    done = run_cli(env, "stats", "--plot", str(png), prelude="sys.modules['matplotlib'] = None")
    assert done.returncode == 2
    assert "--plot needs matplotlib, which is not installed: pip install 'feedbot[plot]'" in done.stderr
    assert done.stdout == "" and not png.exists()
    table = run_cli(env, "stats", "--days", "2", prelude="sys.modules['matplotlib'] = None")
    assert table.returncode == 0 and table.stdout.splitlines()[-1].split()[0] == "total"


@pytest.mark.parametrize("days", ["0", "367", "x", "²"])
def test_cli_refuses_a_bad_number_of_days(env, days):
    done = run_cli(env, "stats", "--days", days)
    assert done.returncode == 2 and "expected a number of days from 1 to 366" in done.stderr


# --- any history: the SQL aggregates against a plain Python count of the same rows ----------------

LAST = date(2026, 3, 14)
STATUSES = ("sent", "empty", "uncertain", "blocked", "failed", "skipped", "claimed")
# Seconds into a day, the edges included: midnight and the last second belong to different days.
moments = st.builds(lambda day, second: datetime.combine(LAST, time(), UTC) + timedelta(days=day, seconds=second),
                    st.integers(-12, 1), st.sampled_from([0, 1, 3600, 43200, 86399]) | st.integers(0, 86399))


@st.composite
def histories(draw):
    people = draw(st.lists(st.tuples(moments, st.sampled_from(["active", "stopped", "blocked"])),
                           min_size=1, max_size=5))
    deliveries, shown = [], set()
    for sid in range(1, len(people) + 1):
        for day in draw(st.sets(st.integers(-12, 1), max_size=3)):
            picks = draw(st.sets(st.integers(1, 6), max_size=3)) - {p for s, p, *_ in shown if s == sid}
            key = len(deliveries) + 1
            deliveries.append((key, sid, day, draw(st.sampled_from(STATUSES)), draw(moments),
                               draw(st.sampled_from(["schedule", "command"]))))
            shown |= {(sid, paper, key, "digest", deliveries[-1][4]) for paper in picks}
        for paper in draw(st.sets(st.integers(1, 6), max_size=2)) - {p for s, p, *_ in shown if s == sid}:
            shown.add((sid, paper, None, draw(st.sampled_from(["search", "starter"])), draw(moments)))
    votes = {(s, p): (draw(st.sampled_from([1, -1])), draw(moments))
             for s, p, *_ in shown if draw(st.booleans())}
    interests = [(s, draw(moments)) for s in range(1, len(people) + 1) if draw(st.booleans())]
    return people, deliveries, sorted(shown, key=str), votes, interests


def count_by_hand(people, deliveries, shown, votes, interests, days):
    def day_of(moment):
        return moment.date()

    sent = {key: finished for key, _, _, status, finished, _ in deliveries if status == "sent"}
    activity = [(s, at) for (s, _), (_, at) in votes.items()]
    activity += [(sid, at) for _, sid, _, _, at, source in deliveries if source == "command"]
    activity += [(s, at) for s, _, key, source, at in shown if source in ("search", "starter")]
    activity += interests + [(n, created) for n, (created, _) in enumerate(people, 1)]
    last_seen = {}
    for s, at in activity + [(sid, at) for _, sid, _, _, at, _ in deliveries]:
        last_seen[s] = max(last_seen.get(s, at), at)
    rows = []
    for day in days:
        picks = [(s, p) for s, p, key, _, _ in shown if key in sent and day_of(sent[key]) == day]
        since = datetime.combine(day - timedelta(days=6), time(), UTC)
        until = datetime.combine(day + timedelta(days=1), time(), UTC)
        rows.append(DayStats(
            day, digests=sum(day_of(at) == day for at in sent.values()), picks=len(picks),
            likes=sum(votes.get(pick, (0,))[0] == 1 for pick in picks),
            dislikes=sum(votes.get(pick, (0,))[0] == -1 for pick in picks),
            active=len({s for s, at in activity if since <= at < until}),
            new=sum(day_of(created) == day for created, _ in people),
            stopped=sum(people[s - 1][1] != "active" and day_of(at) == day for s, at in last_seen.items())))
    return rows


@hypothesis_settings(max_examples=30, deadline=None,
                     suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(history=histories(), count=st.integers(1, 14))
def test_any_history_is_counted_as_by_hand(engine, history, count):
    people, deliveries, shown, votes, interests = history
    with transaction(engine) as session:
        for table in (Vote, Shown, Interest, Delivery, Subscriber, Paper):
            session.execute(delete(table))
        for n in range(1, 7):
            session.add(Paper(id=n, key=f"p{n}", title=f"Paper {n}", abstract="a", first_listed=LAST))
        for n, (created, state) in enumerate(people, 1):
            session.add(Subscriber(id=n, telegram_id=n, chat_id=n, state=state, created_at=created))
        session.flush()
        for key, sid, day, status, at, source in deliveries:
            session.add(Delivery(id=key, subscriber_id=sid, local_date=LAST + timedelta(days=day), status=status,
                                 claimed_at=at, finished_at=at, source=source))
        session.flush()
        for s, p, key, source, at in shown:
            session.add(Shown(subscriber_id=s, paper_id=p, delivery_id=key, source=source, shown_at=at))
        for (s, p), (value, at) in votes.items():
            session.add(Vote(subscriber_id=s, paper_id=p, value=value, voted_at=at))
        for n, (s, at) in enumerate(interests):
            session.add(Interest(subscriber_id=s, text=f"topic {n}", created_at=at))
    with Session(engine) as session:
        rows = stats.engagement(session, LAST, count)
    assert [r.day for r in rows] == [LAST - timedelta(days=n) for n in range(count - 1, -1, -1)]
    assert rows == count_by_hand(people, deliveries, shown, votes, interests, [r.day for r in rows])
    for row in rows:
        assert row.likes + row.dislikes <= row.picks and (row.like_rate is None) == (row.picks == 0)
