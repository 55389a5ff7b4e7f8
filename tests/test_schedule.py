"""When digests are due: at most one scheduled digest per real day whatever a subscriber does
with their zone or time, and every delivery time they can set is delivered — with /status, the
worker and `feedbot status` reading the same decision."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from feedbot.delivery import schedule
from feedbot.store.models import Subscriber

ZONES = ["UTC", "Pacific/Honolulu", "America/New_York", "Europe/Berlin", "Asia/Tokyo", "Pacific/Kiritimati",
         "Asia/Kolkata", "America/St_Johns"]
TIMES = ["00:00", "00:30", "06:15", "08:00", "12:00", "23:00", "23:30", "23:59"]


def subscriber(zone="UTC", at="08:00") -> Subscriber:
    return Subscriber(id=1, telegram_id=1, chat_id=1, state="active", timezone=zone, send_time=at,
                      frequency="daily", paused_until=None, created_at=datetime(2020, 1, 1, tzinfo=UTC))


def simulate(sub: Subscriber, start: datetime, hours: int, changes: dict[int, tuple[str, str]], step: int = 10):
    """A worker sweeping every `step` minutes; changes[minute] = (zone, time) set at that minute."""
    rows: dict[date, str] = {}
    sent: list[tuple[datetime, date, str]] = []
    last = None
    for minute in range(0, hours * 60, step):
        now = start + timedelta(minutes=minute)
        if minute in changes:
            sub.timezone, sub.send_time = changes[minute]
        slot = schedule.decide(sub, now, schedule.History(rows, last))
        for day in schedule.missed_days(sub, now, schedule.History(rows, last)):
            rows[day] = "skipped"
        if slot.reason == "due":
            assert slot.day not in rows
            rows[slot.day] = "sent"
            last = now
            sent.append((now, slot.day, sub.timezone))
    return sent


def assert_one_a_day(sent):
    """Never two within MIN_GAP, never two for one local date."""
    for (earlier, _, _), (later, _, _) in zip(sent, sent[1:], strict=False):
        assert later - earlier >= schedule.MIN_GAP, sent
    assert len({day for _, day, _ in sent}) == len(sent), sent


def test_moving_west_after_a_digest_gives_no_second_one_that_day():
    sub = subscriber("UTC", "08:00")
    start = datetime(2026, 3, 12, 7, 0, tzinfo=UTC)
    sent = simulate(sub, start, 40, {70: ("Pacific/Honolulu", "08:00")})  # 08:10 UTC = 22:10 the day before
    # 12 March had its digest (as dated in UTC), so Honolulu's 12 March counts as done: next on the 13th.
    assert [s[0] for s in sent] == [datetime(2026, 3, 12, 8, 0, tzinfo=UTC), datetime(2026, 3, 13, 18, 0, tzinfo=UTC)]
    assert_one_a_day(sent)


def test_moving_east_across_midnight_gives_no_second_one_that_day():
    sub = subscriber("America/New_York", "23:30")
    start = datetime(2026, 3, 12, 3, 0, tzinfo=UTC)  # 23:00 in New York
    # Digest at 23:30 New York (03:30 UTC); at 03:40 they move to Berlin, where it is 04:40 next day.
    sent = simulate(sub, start, 40, {40: ("Europe/Berlin", "00:00")})
    assert_one_a_day(sent)
    assert sent[1][0] >= sent[0][0] + schedule.MIN_GAP


def test_a_time_change_right_after_midnight_waits_for_the_gap():
    sub = subscriber("UTC", "23:59")
    sent = simulate(sub, datetime(2026, 3, 12, 23, 0, tzinfo=UTC), 30, {70: ("UTC", "00:00")}, step=1)
    assert sent[0][0] == datetime(2026, 3, 12, 23, 59, tzinfo=UTC)
    assert sent[1][0] == datetime(2026, 3, 13, 11, 59, tzinfo=UTC)  # 12 h later, not one minute


def test_every_settable_time_is_delivered_every_day():
    for zone in ZONES:
        for hour in range(24):
            for minute in (0, 30, 59):
                at = f"{hour:02d}:{minute:02d}"
                sub = subscriber(zone, at)
                sent = simulate(sub, datetime(2026, 3, 10, 0, 0, tzinfo=UTC), 24 * 4, {}, step=15)
                days = [d for _, d, _ in sent]
                assert len(days) >= 3 and days == sorted(set(days)), (zone, at, sent)
                for moment, day, _ in sent[1:]:  # the first may be yesterday's, caught up late
                    due = schedule.send_at(sub, day)
                    assert due <= moment < due + timedelta(minutes=15), (zone, at, moment)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 72 * 6 - 1), st.sampled_from(ZONES), st.sampled_from(TIMES)),
                max_size=6),
       st.sampled_from(ZONES), st.sampled_from(TIMES))
def test_whatever_they_change_never_two_digests_in_a_day(changes, zone, at):
    sub = subscriber(zone, at)
    sent = simulate(sub, datetime(2026, 3, 27, 0, 0, tzinfo=UTC), 72, {m * 10: (z, t) for m, z, t in changes})
    assert_one_a_day(sent)


def test_status_and_worker_agree_on_the_next_digest():
    sub = subscriber("Asia/Tokyo", "23:30")
    now = datetime(2026, 3, 12, 10, 0, tzinfo=UTC)  # 19:00 in Tokyo
    slot = schedule.decide(sub, now, schedule.History({}))
    assert slot.reason == "before_time" and slot.at == datetime(2026, 3, 12, 14, 30, tzinfo=UTC)
    assert schedule.decide(sub, slot.at, schedule.History({})).reason == "due"
    assert schedule.decide(sub, slot.at - timedelta(minutes=1), schedule.History({})).reason == "before_time"
