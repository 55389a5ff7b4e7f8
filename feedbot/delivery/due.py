"""Who gets a digest now, decided from database state (never from in-memory jobs) by
`schedule.decide`, so a restart or a second process loses nothing and doubles nothing. Claiming,
sending and recording are feedbot.delivery.deliveries' job.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from feedbot.delivery import deliveries, schedule
from feedbot.store.models import Subscriber


@dataclass
class Plan:
    due: list[tuple[Subscriber, date]] = field(default_factory=list)  # (subscriber, the local date due)
    missed: list[tuple[Subscriber, date]] = field(default_factory=list)  # windows closed undelivered
    slots: dict[int, schedule.Slot] = field(default_factory=dict)  # subscriber id → the decision

    @property
    def waiting(self) -> dict[int, str]:
        return {sid: slot.reason for sid, slot in self.slots.items() if slot.reason != "due"}


def plan(session: Session, now: datetime, only: list[Subscriber] | None = None) -> Plan:
    """Decide every subscriber (or `only` these): due now, missed, or why not yet."""
    result = Plan()
    candidates = only if only is not None else list(session.scalars(select(Subscriber).order_by(Subscriber.id)))
    if not candidates:
        return result
    history = deliveries.histories(session, [s.id for s in candidates] if only is not None else None, now)
    empty = schedule.History({})
    for subscriber in candidates:
        past = history.get(subscriber.id, empty)
        slot = schedule.decide(subscriber, now, past)
        result.slots[subscriber.id] = slot
        if slot.reason == "due":
            result.due.append((subscriber, slot.day))
        for day in schedule.missed_days(subscriber, now, past):
            if _subscribed_by(subscriber, schedule.send_at(subscriber, day)):
                result.missed.append((subscriber, day))
    return result


def _subscribed_by(subscriber: Subscriber, when: datetime) -> bool:
    created = subscriber.created_at
    if created is None:
        return False
    return deliveries.as_utc(created) <= when


def skip_missed(session: Session, missed: list[tuple[Subscriber, date]], now: datetime) -> int:
    """Record the days whose late window closed undelivered (the worker was down), with why."""
    skipped = 0
    for subscriber, day in missed:
        delivery_id = deliveries.claim(session, subscriber.id, day, now, status="skipped")
        if delivery_id is not None:
            deliveries.finish(session, delivery_id, "skipped", now=now, error=(
                f"not sent within {schedule.LATE_WINDOW.seconds // 3600} h of {subscriber.send_time} "
                f"({subscriber.timezone}): no worker ran the digest sweep then"))
            skipped += 1
    return skipped
