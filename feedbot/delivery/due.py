"""Who gets a digest now, decided from database state (never from in-memory jobs) by
`schedule.decide`, so a restart or a second process loses nothing and doubles nothing. Claiming,
sending and recording are feedbot.delivery.deliveries' job.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

from sqlalchemy import case, exists, or_, select
from sqlalchemy.orm import Session

from feedbot.delivery import deliveries, schedule
from feedbot.delivery.ownership import as_utc
from feedbot.delivery.rows import REACHED, skip_days
from feedbot.store.models import Delivery, Subscriber


@dataclass
class Plan:
    due: list[tuple[Subscriber, date]] = field(default_factory=list)  # (subscriber, the local date due)
    missed: list[tuple[Subscriber, date]] = field(default_factory=list)  # windows closed undelivered
    slots: dict[int, schedule.Slot] = field(default_factory=dict)  # subscriber id → the decision

    @property
    def waiting(self) -> dict[int, str]:
        return {sid: slot.reason for sid, slot in self.slots.items() if slot.reason != "due"}


def plan(session: Session, now: datetime, only: list[Subscriber] | None = None) -> Plan:
    """Decide every subscriber who may be due or missed now (or `only` these, whatever their
    state): due now, missed, or why not yet."""
    result = Plan()
    candidates = only if only is not None else maybe_due(session, now)
    if not candidates:
        return result
    history = deliveries.histories(session, [s.id for s in candidates], now)
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


def maybe_due(session: Session, now: datetime) -> list[Subscriber]:
    """The active subscribers without a digest for their local today: the only ones who can be
    due or missed now (one with today's digest had one under MIN_GAP ago, or after yesterday's
    slot began). One query, however many subscribers are served already."""
    zones = session.scalars(select(Subscriber.timezone).where(Subscriber.state == "active").distinct()).all()
    if not zones:
        return []
    today = case({name: now.astimezone(schedule.zone(name)).date() for name in zones}, value=Subscriber.timezone)
    served = exists().where(Delivery.subscriber_id == Subscriber.id, Delivery.local_date == today,
                            or_(Delivery.status.in_(REACHED), Delivery.parts_sent > 0))
    return list(session.scalars(select(Subscriber).where(Subscriber.state == "active", ~served)
                                .order_by(Subscriber.id)))


def _subscribed_by(subscriber: Subscriber, when: datetime) -> bool:
    created = subscriber.created_at
    if created is None:
        return False
    return as_utc(created) <= when


def skip_missed(session: Session, missed: list[tuple[Subscriber, date]], now: datetime) -> int:
    """Record the days whose late window closed undelivered (the worker was down), with why."""
    return skip_days(session, [(subscriber.id, day, (
        f"not sent within {schedule.LATE_WINDOW.seconds // 3600} h of {subscriber.send_time} "
        f"({subscriber.timezone}): no worker ran the digest sweep then")) for subscriber, day in missed], now)
