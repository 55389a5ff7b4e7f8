"""When digests are due: at most one scheduled digest per real day whatever a subscriber does
with their zone or time, and every delivery time they can set is delivered — with /status, the
worker and `feedbot status` reading the same decision."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.orm import Session

from feedbot.chat.conversation import Chat, User
from feedbot.delivery import deliveries, schedule
from feedbot.store import subscribers
from feedbot.store.models import Subscriber
from feedbot.store.subscribers import zone as zone_of

ZONES = ["UTC", "Pacific/Honolulu", "America/New_York", "Europe/Berlin", "Asia/Tokyo", "Pacific/Kiritimati",
         "Asia/Kolkata", "America/St_Johns"]
TIMES = ["00:00", "00:30", "06:15", "08:00", "12:00", "23:00", "23:30", "23:59"]


def subscriber(zone="UTC", at="08:00") -> Subscriber:
    return Subscriber(id=1, telegram_id=1, chat_id=1, state="active", timezone=zone, send_time=at,
                      frequency="daily", paused_until=None, created_at=datetime(2020, 1, 1, tzinfo=UTC))


def simulate(sub: Subscriber, start: datetime, hours: int, changes: dict[int, tuple[str, str]], step: int = 10,
             pulls: frozenset[int] = frozenset()):
    """A worker sweeping every `step` minutes; changes[minute] = (zone, time) set at that minute;
    at each minute in `pulls` the subscriber sends /digest, which takes today's place when today
    has no digest yet. Returns the digests that took a day's place: (when, local date, zone, pulled)."""
    rows: dict[date, str] = {}
    sent: list[tuple[datetime, date, str, bool]] = []
    last = pulled = None

    def history() -> schedule.History:
        reached = [day for day, status in rows.items() if status == "sent"]
        return schedule.History(rows, last, pulled, max(reached, default=None))

    for minute in range(0, hours * 60, step):
        now = start + timedelta(minutes=minute)
        if minute in changes:
            sub.timezone, sub.send_time = changes[minute]
        if minute in pulls and schedule.local_date(sub, now) not in rows:
            rows[schedule.local_date(sub, now)] = "sent"
            pulled = now
            sent.append((now, schedule.local_date(sub, now), sub.timezone, True))
        slot = schedule.decide(sub, now, history())
        for day in schedule.missed_days(sub, now, history()):
            rows[day] = "skipped"
        if slot.reason == "due":
            assert slot.day not in rows
            rows[slot.day] = "sent"
            last = now
            sent.append((now, slot.day, sub.timezone, False))
    return sent


def assert_one_a_day(sent):
    """Scheduled digests never within MIN_GAP of each other; never two for one local date."""
    scheduled = [moment for moment, _, _, pulled in sent if not pulled]
    for earlier, later in zip(scheduled, scheduled[1:], strict=False):
        assert later - earlier >= schedule.MIN_GAP, sent
    assert len({day for _, day, _, _ in sent}) == len(sent), sent


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
                days = [d for _, d, _, _ in sent]
                assert len(days) >= 3 and days == sorted(set(days)), (zone, at, sent)
                for moment, day, _, _ in sent[1:]:  # the first may be yesterday's, caught up late
                    due = schedule.send_at(sub, day)
                    assert due <= moment < due + timedelta(minutes=15), (zone, at, moment)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 72 * 6 - 1), st.sampled_from(ZONES), st.sampled_from(TIMES)),
                max_size=6),
       st.sampled_from(ZONES), st.sampled_from(TIMES), st.frozensets(st.integers(0, 72 * 6 - 1), max_size=4))
def test_whatever_they_change_or_pull_never_two_scheduled_digests_in_a_day(changes, zone, at, pulls):
    sub = subscriber(zone, at)
    sent = simulate(sub, datetime(2026, 3, 27, 0, 0, tzinfo=UTC), 72, {m * 10: (z, t) for m, z, t in changes},
                    pulls=frozenset(m * 10 for m in pulls))
    assert_one_a_day(sent)
    scheduled = [day for _, day, _, pulled in sent if not pulled]
    assert scheduled == sorted(scheduled)  # scheduled local dates only go forward


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(ZONES + ["Europe/London", "Australia/Sydney", "America/Santiago"]), st.sampled_from(TIMES),
       st.integers(0, 400), st.integers(0, 24 * 60 - 1))
def test_a_pull_at_any_hour_leaves_the_next_digest_at_the_subscribers_time(zone, at, day_offset, minute):
    """/digest at any minute of any day (DST switches included) takes that day's place; the next
    scheduled digest still comes at the subscriber's time on the next day, and /status says so."""
    sub = subscriber(zone, at)
    day = date(2026, 1, 1) + timedelta(days=day_offset)
    tz = zone_of(zone)
    pulled = schedule.wall_clock(day, time(minute // 60, minute % 60), tz).astimezone(UTC)
    pulled_day = schedule.local_date(sub, pulled)
    yesterday = schedule.send_at(sub, pulled_day - timedelta(days=1))  # had its scheduled digest on time
    history = schedule.History({pulled_day - timedelta(days=1): "sent", pulled_day: "sent"}, yesterday, pulled,
                               pulled_day)
    expected = schedule.send_at(sub, pulled_day + timedelta(days=1))
    assert schedule.decide(sub, pulled + timedelta(minutes=1), history).at == expected
    before = schedule.decide(sub, expected - timedelta(minutes=1), history)
    assert before.reason != "due" and before.at == expected
    assert schedule.decide(sub, expected, history).reason == "due"


def test_status_and_worker_agree_on_the_next_digest():
    sub = subscriber("Asia/Tokyo", "23:30")
    now = datetime(2026, 3, 12, 10, 0, tzinfo=UTC)  # 19:00 in Tokyo
    slot = schedule.decide(sub, now, schedule.History({}))
    assert slot.reason == "before_time" and slot.at == datetime(2026, 3, 12, 14, 30, tzinfo=UTC)
    assert schedule.decide(sub, slot.at, schedule.History({})).reason == "due"
    assert schedule.decide(sub, slot.at - timedelta(minutes=1), schedule.History({})).reason == "before_time"


@pytest.mark.parametrize("zone, day", [
    ("UTC", date(2026, 3, 12)), ("Pacific/Honolulu", date(2026, 3, 12)), ("Pacific/Kiritimati", date(2026, 3, 13)),
    ("Europe/Berlin", date(2026, 3, 28)),  # the night clocks go forward
    ("Europe/Berlin", date(2026, 10, 24)),  # and back
    ("America/New_York", date(2026, 10, 31)), ("Australia/Sydney", date(2026, 4, 4)),
])
def test_an_evening_digest_pull_leaves_the_morning_digest_at_its_time(seeded, settings, zone, day):
    """/digest at 23:13 takes that day's place; the next morning's digest still comes at 08:00,
    as /status says and the worker's decision acts on — across zones and DST switches."""
    tz = zone_of(zone)
    now = [schedule.wall_clock(day, time(23, 13), tz).astimezone(UTC)]
    chat = Chat(seeded, settings, clock=lambda: now[0])
    user = User(5, 5)
    chat.command(user, "start")
    chat.command(user, "skip")
    chat.text(user, zone)
    pulled = chat.command(user, "digest")
    assert pulled[0].delivery is not None and pulled[0].keyboard  # it took the day's place
    morning = schedule.wall_clock(day + timedelta(days=1), time(8, 0), tz)
    [status] = chat.command(user, "status")
    assert f"Next digest: <b>{morning:%a %d %b} 08:00</b>" in status.text, status.text
    with Session(seeded) as session:
        sub = subscribers.get(session, 5)
        for moment, due in [(morning - timedelta(minutes=1), False), (morning, True)]:
            history = deliveries.histories(session, [sub.id], moment.astimezone(UTC))[sub.id]
            assert (schedule.decide(sub, moment.astimezone(UTC), history).reason == "due") is due, moment
