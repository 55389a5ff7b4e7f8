"""When a subscriber's digest is due: wall-clock times in their own zone, DST-safe.

A delivery time that does not exist on a DST switch day (02:30 when clocks jump from 02:00 to
03:00) moves to the next valid minute; one that happens twice counts once (the first).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from feedbot.clock import parse_hhmm
from feedbot.models import Subscriber
from feedbot.subscribers import is_paused, zone


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


def cutoff_at(subscriber: Subscriber, day: date, cutoff: str) -> datetime:
    return wall_clock(day, parse_hhmm(cutoff), zone(subscriber.timezone))


def next_delivery(subscriber: Subscriber, now: datetime, delivered_today: bool) -> datetime | None:
    """The next time a digest will go out, or None when none will (stopped, blocked, paused)."""
    if subscriber.state != "active":
        return None
    tz = zone(subscriber.timezone)
    today = now.astimezone(tz).date()
    for offset in range(0, 400):
        day = today + timedelta(days=offset)
        if not is_delivery_day(subscriber.frequency, day) or is_paused(subscriber, day):
            continue
        if offset == 0 and delivered_today:
            continue
        due = send_at(subscriber, day)
        if offset == 0 and due < now:
            return now  # due now: the next sweep sends it
        return due
    return None
