"""When a subscriber's digest is due: wall-clock times in their own zone, DST-safe, decided by one
function (`decide`) that the worker, /status, `feedbot status` and `digest --dry-run` all call.

The rule, for a subscriber who is active and not paused on a delivery day of their frequency:
- the digest for local date D is due from their delivery time on D (a time that DST skips moves
  to the next valid minute; one that happens twice counts once, the first) until LATE_WINDOW
  after it — so 23:30, 23:59 and 00:00 are all delivered, the late part falling on D+1;
- at most one scheduled digest per real day: one per local date (the delivery row's unique key),
  local dates only going forward (after the digest for D, moving west never brings one for D-1),
  and none sooner than MIN_GAP after the previous scheduled one, whatever they did with their
  zone or time (moving east after a digest, or from 23:59 to 00:00, only delays the next one);
- a digest pulled with /digest takes its day's place but does not move the next one: pulled at
  23:13, the next morning's still comes at the subscriber's time.
A slot whose window closes undelivered is recorded `skipped`, with why.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from feedbot.clock import parse_hhmm
from feedbot.store.models import Subscriber
from feedbot.store.subscribers import is_paused, zone

LATE_WINDOW = timedelta(hours=12)
MIN_GAP = timedelta(hours=12)  # between scheduled digests; at most LATE_WINDOW: a delayed one fits its window


def local_date(subscriber: Subscriber, now: datetime) -> date:
    return now.astimezone(zone(subscriber.timezone)).date()


def is_delivery_day(frequency: str, day: date) -> bool:
    """daily: every day; weekdays: Monday to Friday; weekly: Mondays."""
    if frequency == "weekdays":
        return day.weekday() < 5
    if frequency == "weekly":
        return day.weekday() == 0
    return True


def wall_clock(day: date, at: time, tz) -> datetime:
    """The instant `day at` in zone `tz`; a time skipped by DST becomes the next valid minute."""
    naive = datetime.combine(day, at)
    for shift in range(0, 181):
        candidate = (naive + timedelta(minutes=shift)).replace(tzinfo=tz, fold=0)
        round_trip = candidate.astimezone(UTC).astimezone(tz)
        if round_trip.replace(tzinfo=None) == candidate.replace(tzinfo=None):
            return candidate
    return naive.replace(tzinfo=tz)


def send_at(subscriber: Subscriber, day: date) -> datetime:
    """When the digest for local date `day` is due, as an aware datetime."""
    return wall_clock(day, parse_hhmm(subscriber.send_time), zone(subscriber.timezone))


@dataclass(frozen=True)
class History:
    """What `decide` needs to know of past deliveries: rows by local date, and the last digests
    that may have reached the subscriber."""

    rows: Mapping[date, str]  # local date → delivery status
    last_at: datetime | None = None  # when the latest scheduled digest was claimed: MIN_GAP runs from it
    pulled_at: datetime | None = None  # when the latest /digest that took a day's place was claimed
    latest_day: date | None = None  # the latest local date whose digest (any) may have reached them

    def had(self, day: date) -> bool:
        """Whether the digest for `day` is done: it has a row, or a later date's digest went out."""
        return day in self.rows or (self.latest_day is not None and day < self.latest_day)


@dataclass(frozen=True)
class Slot:
    """The decision for one subscriber now: a reason code (see feedbot.delivery.reasons), the local date it
    concerns, and when the next digest goes out (None: none is scheduled)."""

    reason: str
    day: date
    at: datetime | None = None


def _open(subscriber: Subscriber, day: date) -> bool:
    return is_delivery_day(subscriber.frequency, day) and not is_paused(subscriber, day)


def decide(subscriber: Subscriber, now: datetime, history: History) -> Slot:
    """Due now, waiting (and until when), or why not. Pure: the same inputs, the same answer."""
    tz = zone(subscriber.timezone)
    today = now.astimezone(tz).date()
    if subscriber.state != "active":
        return Slot("stopped" if subscriber.state == "stopped" else "blocked", today)
    earliest = history.last_at + MIN_GAP if history.last_at else None
    waiting: Slot | None = None
    for day in (today - timedelta(days=1), today):
        if not _open(subscriber, day) or history.had(day):
            continue
        start = send_at(subscriber, day)
        if now >= start + LATE_WINDOW:
            if day == today:
                return Slot("missed", day, _next(subscriber, today, history))
            continue  # yesterday's slot closed: recorded as missed by the sweep, look at today
        if now < start:
            waiting = Slot("before_time", day, max(start, earliest) if earliest else start)
            break
        if earliest is not None and now < earliest:
            return Slot("too_soon", day, earliest)
        return Slot("due", day, now)
    if waiting is not None:
        return waiting
    if history.had(today):
        reason = "missed" if history.rows.get(today) == "skipped" else "delivered"
    elif not is_delivery_day(subscriber.frequency, today):
        reason = "not_today"
    elif is_paused(subscriber, today):
        reason = "paused"
    else:
        reason = "delivered"
    return Slot(reason, today, _next(subscriber, today, history))


def missed_days(subscriber: Subscriber, now: datetime, history: History) -> list[date]:
    """Slots (yesterday's, today's) whose late window closed with nothing sent: to record as skipped."""
    if subscriber.state != "active":
        return []
    tz = zone(subscriber.timezone)
    today = now.astimezone(tz).date()
    last = max((t for t in (history.last_at, history.pulled_at) if t is not None), default=None)
    out = []
    for day in (today - timedelta(days=1), today):
        if not _open(subscriber, day) or history.had(day):
            continue
        start = send_at(subscriber, day)
        if now >= start + LATE_WINDOW and not (last and last >= start):
            out.append(day)  # (a digest that went out after it began, under another zone, counts)
    return out


def _next(subscriber: Subscriber, today: date, history: History) -> datetime | None:
    """The first slot after today not yet done: its delivery time, or later when MIN_GAP says so."""
    if subscriber.paused_until == date.max:
        return None
    earliest = history.last_at + MIN_GAP if history.last_at else None
    for offset in range(1, 400):
        day = today + timedelta(days=offset)
        if _open(subscriber, day) and not history.had(day):
            start = send_at(subscriber, day)
            return max(start, earliest) if earliest else start
    return None
