"""Engagement per UTC day, for `feedbot stats`: digests delivered, picks, 👍/👎 rates, active, new
and stopped subscribers. Computed by SQL aggregates that run alike on SQLite and PostgreSQL: each
day is a row of UTC bounds bound as parameters, and events are matched to days by comparing
timestamps with those bounds (no dialect's date functions or session time zone involved).

Definitions (the database keeps no log of commands, so activity is what it does keep):
- digests: deliveries that ended `sent` (every part confirmed by Telegram) during the day;
- picks: the papers in those digests; 👍/👎 rate: the share of those picks that carry a 👍/👎
  now (a vote changed or cleared later counts as it stands);
- active: subscribers with a sign of use in the 7 days ending that day — a vote, a /digest, the
  starter set shown, an interest added, or subscribing (/search records nothing unless a result
  is rated, which is a vote);
- new: subscribers created that day (rows erased by /delete are gone from every count);
- stopped: subscribers now stopped or blocked, on the day of the last thing the database holds
  from or to them (their last activity or delivery; a 403 `blocked` delivery dates a block exactly).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

from sqlalchemy import Date, DateTime, Engine, and_, case, func, literal, select, union_all
from sqlalchemy.orm import Session

from feedbot.clock import utcnow
from feedbot.store.models import Delivery, Interest, Shown, Subscriber, Vote

ACTIVE_DAYS = 7
MAX_DAYS = 366  # one SELECT per day in a UNION ALL: SQLite allows 500


class PlotUnavailable(RuntimeError):
    """matplotlib is not installed."""


@dataclass(frozen=True)
class DayStats:
    day: date
    digests: int = 0
    picks: int = 0
    likes: int = 0
    dislikes: int = 0
    active: int = 0
    new: int = 0
    stopped: int = 0

    @property
    def like_rate(self) -> float | None:
        return self.likes / self.picks if self.picks else None

    @property
    def dislike_rate(self) -> float | None:
        return self.dislikes / self.picks if self.picks else None


def _start(day: date) -> datetime:
    return datetime.combine(day, time(), UTC)


def _days(last: date, count: int):
    """The days as a derived table: (day, start, end, since) with since the active window's start."""
    stamp = DateTime(timezone=True)
    rows = [select(literal(day, Date).label("day"), literal(_start(day), stamp).label("start"),
                   literal(_start(day + timedelta(days=1)), stamp).label("end"),
                   literal(_start(day - timedelta(days=ACTIVE_DAYS - 1)), stamp).label("since"))
            for day in (last - timedelta(days=n) for n in range(count - 1, -1, -1))]
    return union_all(*rows).subquery("days")


def _activity():
    """(subscriber_id, at) for every sign of use the database keeps."""
    return union_all(
        select(Vote.subscriber_id, Vote.voted_at.label("at")),
        select(Delivery.subscriber_id, Delivery.claimed_at).where(Delivery.source == "command"),
        select(Shown.subscriber_id, Shown.shown_at).where(Shown.source.in_(("search", "starter"))),
        select(Interest.subscriber_id, Interest.created_at),
        select(Subscriber.id, Subscriber.created_at),
    ).subquery("activity")


def _last_seen():
    """(subscriber_id, at): the last activity or delivery of each subscriber."""
    activity = _activity()
    events = union_all(
        select(activity.c.subscriber_id, activity.c.at),
        select(Delivery.subscriber_id, func.coalesce(Delivery.finished_at, Delivery.claimed_at)),
    ).subquery("events")
    return (select(events.c.subscriber_id, func.max(events.c.at).label("at"))
            .group_by(events.c.subscriber_id).subquery("last_seen"))


def engagement(session: Session, last: date, count: int) -> list[DayStats]:
    """One row per UTC day, the `count` days ending with `last`, oldest first."""
    if not 1 <= count <= MAX_DAYS:
        raise ValueError(f"days must be between 1 and {MAX_DAYS}, got {count}")
    days = _days(last, count)
    rows: dict[date, dict[str, int]] = {}

    def within(column):
        return and_(column >= days.c.start, column < days.c.end)

    def gather(query, *names: str) -> None:
        for day, *values in session.execute(query):
            day = day if isinstance(day, date) else date.fromisoformat(day)  # SQLite hands back text
            rows.setdefault(day, {}).update({name: int(value or 0) for name, value in zip(names, values, strict=True)})

    gather(select(days.c.day, func.count(func.distinct(Delivery.id)), func.count(Shown.paper_id),
                  func.sum(case((Vote.value > 0, 1), else_=0)), func.sum(case((Vote.value < 0, 1), else_=0)))
           .select_from(days)
           .join(Delivery, and_(Delivery.status == "sent", within(Delivery.finished_at)))
           .outerjoin(Shown, Shown.delivery_id == Delivery.id)
           .outerjoin(Vote, and_(Vote.subscriber_id == Shown.subscriber_id, Vote.paper_id == Shown.paper_id))
           .group_by(days.c.day),
           "digests", "picks", "likes", "dislikes")
    activity = _activity()
    gather(select(days.c.day, func.count(func.distinct(activity.c.subscriber_id))).select_from(days)
           .join(activity, and_(activity.c.at >= days.c.since, activity.c.at < days.c.end)).group_by(days.c.day),
           "active")
    gather(select(days.c.day, func.count(Subscriber.id)).select_from(days)
           .join(Subscriber, within(Subscriber.created_at)).group_by(days.c.day), "new")
    last_seen = _last_seen()
    gather(select(days.c.day, func.count(Subscriber.id)).select_from(days)
           .join(last_seen, within(last_seen.c.at))
           .join(Subscriber, and_(Subscriber.id == last_seen.c.subscriber_id, Subscriber.state != "active"))
           .group_by(days.c.day), "stopped")
    return [DayStats(day, **rows.get(day, {})) for day in (last - timedelta(days=n) for n in range(count - 1, -1, -1))]


def _percent(rate: float | None) -> str:
    return "-" if rate is None else f"{100 * rate:.1f}%"


def table(rows: list[DayStats]) -> list[str]:
    """The rows as aligned text, with a total line (rates over all the period's picks)."""
    header = ("day", "digests", "picks", "👍 rate", "👎 rate", f"active {ACTIVE_DAYS}d", "new", "stopped")
    lines = [[r.day.isoformat(), str(r.digests), str(r.picks), _percent(r.like_rate), _percent(r.dislike_rate),
              str(r.active), str(r.new), str(r.stopped)] for r in rows]
    total = DayStats(rows[-1].day, sum(r.digests for r in rows), sum(r.picks for r in rows),
                     sum(r.likes for r in rows), sum(r.dislikes for r in rows), rows[-1].active,
                     sum(r.new for r in rows), sum(r.stopped for r in rows)) if rows else None
    if total is not None:
        lines.append(["total", str(total.digests), str(total.picks), _percent(total.like_rate),
                      _percent(total.dislike_rate), str(total.active), str(total.new), str(total.stopped)])
    widths = [max(len(cell) for cell in column) for column in zip(header, *lines, strict=True)]
    return ["  ".join(cell.rjust(width) if n else cell.ljust(width) for n, (cell, width) in
                      enumerate(zip(row, widths, strict=True))).rstrip() for row in [header, *lines]]


def report(engine: Engine, days: int, plot_to: Path | None = None, today: date | None = None) -> list[str]:
    """`feedbot stats`: the table of the last `days` UTC days, and the plot written when asked.
    A missing matplotlib is said before any work (PlotUnavailable)."""
    if plot_to is not None:
        require_matplotlib()
    with Session(engine) as session:  # read-only: takes no lock
        rows = engagement(session, today or utcnow().date(), days)
    lines = table(rows)
    if plot_to is not None:
        plot(rows, plot_to)
        lines.append(f"plot written to {plot_to}")
    return lines


def require_matplotlib():
    """pyplot on the file-only backend, or PlotUnavailable saying how to install it."""
    try:
        import matplotlib
    except ImportError:
        raise PlotUnavailable("--plot needs matplotlib, which is not installed: "
                              "pip install 'feedbot[plot]' (or matplotlib)") from None
    matplotlib.use("Agg")  # no display needed
    from matplotlib import pyplot

    return pyplot


def plot(rows: list[DayStats], path: Path) -> None:
    """The 👍 rate and the active subscribers per day, on two axes, as a PNG."""
    pyplot = require_matplotlib()
    from matplotlib.ticker import MaxNLocator

    days = [r.day for r in rows]
    figure, rates = pyplot.subplots(figsize=(10, 4.5))
    rates.plot(days, [None if r.like_rate is None else 100 * r.like_rate for r in rows], marker="o",
               color="tab:green")
    rates.set_ylabel("liked picks (%)", color="tab:green")
    rates.set_ylim(bottom=0)
    active = rates.twinx()
    active.plot(days, [r.active for r in rows], marker="s", color="tab:blue")
    active.set_ylabel(f"subscribers active in {ACTIVE_DAYS} days", color="tab:blue")
    active.set_ylim(bottom=0)
    active.yaxis.set_major_locator(MaxNLocator(integer=True))
    rates.set_title("feedbot engagement per UTC day")
    figure.autofmt_xdate()
    figure.tight_layout()
    figure.savefig(path, format="png")
    pyplot.close(figure)
