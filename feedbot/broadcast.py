"""Who gets a digest now, claimed and prepared from database state (never from in-memory jobs), so
a restart or a second process loses nothing and doubles nothing. Sending is the worker's job.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from feedbot import deliveries, digests, recommend, schedule, subscribers
from feedbot.config import Settings
from feedbot.messages import Reply
from feedbot.models import Delivery, Paper, Shown, Subscriber
from feedbot.textmodel import TextModel


@dataclass
class Outgoing:
    """One claimed digest, rendered and ready to send."""

    delivery_id: int
    subscriber_id: int
    telegram_id: int
    chat_id: int
    local_date: date
    replies: list[Reply]
    empty: bool = False
    note: str = ""  # why an empty digest is empty

    @classmethod
    def of(cls, delivery_id: int, subscriber: Subscriber, digest: digests.Digest) -> Outgoing:
        return cls(delivery_id, subscriber.id, subscriber.telegram_id, subscriber.chat_id, digest.local_date,
                   digests.render(digest), empty=not digest.picks, note=digest.empty_reason)


@dataclass
class Plan:
    due: list[Subscriber] = field(default_factory=list)
    late: list[tuple[Subscriber, date]] = field(default_factory=list)  # past the cutoff, not delivered
    waiting: dict[int, str] = field(default_factory=dict)  # subscriber id → why nothing now


def plan(session: Session, now: datetime, cutoff: str, only: list[Subscriber] | None = None) -> Plan:
    """Sort subscribers into due now, too late today, and waiting (with the reason)."""
    result = Plan()
    candidates = only if only is not None else list(session.scalars(select(Subscriber).order_by(Subscriber.id)))
    if not candidates:
        return result
    today_utc = now.date()
    delivered = {
        (sid, day) for sid, day in session.execute(
            select(Delivery.subscriber_id, Delivery.local_date)
            .where(Delivery.local_date.between(today_utc - timedelta(days=1), today_utc + timedelta(days=1)))
        )
    }
    for subscriber in candidates:
        day = schedule.local_date(subscriber, now)
        if subscriber.state != "active":
            result.waiting[subscriber.id] = "unsubscribed" if subscriber.state == "stopped" else "blocked the bot"
        elif (subscriber.id, day) in delivered:
            result.waiting[subscriber.id] = "already has today's digest"
        elif not schedule.is_delivery_day(subscriber.frequency, day):
            result.waiting[subscriber.id] = f"no digest on {day:%A}s ({subscriber.frequency})"
        elif subscribers.is_paused(subscriber, day):
            result.waiting[subscriber.id] = "paused"
        elif now < schedule.send_at(subscriber, day):
            result.waiting[subscriber.id] = f"before their time ({subscriber.send_time} {subscriber.timezone})"
        elif now >= schedule.cutoff_at(subscriber, day, cutoff):
            result.late.append((subscriber, day))
        else:
            result.due.append(subscriber)
    return result


def skip_late(session: Session, late: list[tuple[Subscriber, date]], now: datetime) -> int:
    """Record the days that passed their cutoff undelivered (the worker was down), with why."""
    skipped = 0
    for subscriber, day in late:
        delivery_id = deliveries.claim(session, subscriber.id, day, now, status="skipped")
        if delivery_id is not None:
            deliveries.finish(session, delivery_id, "skipped", error="past the delivery cutoff", now=now)
            skipped += 1
    return skipped


def prepare(session: Session, model: TextModel | None, subs: list[Subscriber], now: datetime,
            settings: Settings) -> list[Outgoing]:
    """Claim today's delivery for each subscriber (skipping any someone else claimed), rank them
    together, record the picks against their delivery, and render."""
    claimed = deliveries.claim_many(session, [(s.id, schedule.local_date(s, now)) for s in subs], now)
    won = [s for s in subs if s.id in claimed]
    built = digests.build(session, model, won, now, settings) if won else {}
    digests.record(session, [(built[s.id], claimed[s.id]) for s in won], now)
    out = []
    for subscriber in won:
        digest = built[subscriber.id]
        out.append(Outgoing.of(claimed[subscriber.id], subscriber, digest))
    return out


def recover(session: Session, now: datetime, cutoff: str) -> tuple[list[Outgoing], int, int]:
    """After a restart: rows left `sending` become `uncertain`; rows still `claimed` are rendered
    again from their recorded picks (or skipped when past the cutoff). Returns (to send,
    uncertain, skipped)."""
    uncertain = 0
    for row in session.scalars(select(Delivery).where(Delivery.status == "sending")):
        deliveries.finish(session, row.id, "uncertain", error="interrupted while sending; not re-sent", now=now)
        uncertain += 1
    out, skipped = [], 0
    for row, subscriber in session.execute(
        select(Delivery, Subscriber).join(Subscriber, Subscriber.id == Delivery.subscriber_id)
        .where(Delivery.status == "claimed").order_by(Delivery.id)
    ):
        if subscriber.state != "active":
            deliveries.finish(session, row.id, "skipped", error=f"subscriber {subscriber.state}", now=now)
            skipped += 1
            continue
        if now >= schedule.cutoff_at(subscriber, row.local_date, cutoff):
            deliveries.finish(session, row.id, "skipped", error="past the delivery cutoff", now=now)
            skipped += 1
            continue
        digest = recorded_digest(session, subscriber, row)
        out.append(Outgoing.of(row.id, subscriber, digest))
    return out, uncertain, skipped


def recorded_digest(session: Session, subscriber: Subscriber, row: Delivery) -> digests.Digest:
    """A claimed digest rebuilt from the picks recorded with it: the same papers, the same reasons."""
    picks = [
        recommend.Suggestion(paper.id, paper.title, paper.abstract, shown.score, "", shown.reason)
        for shown, paper in session.execute(
            select(Shown, Paper).join(Paper, Paper.id == Shown.paper_id)
            .where(Shown.delivery_id == row.id).order_by(Shown.position)
        )
    ]
    listed_on = recommend.latest_listing(session, row.local_date)
    digest = digests.Digest(subscriber.id, row.local_date, listed_on, picks)
    digests.attach_links(session, digest)
    if not picks:
        digest.empty_reason = digests.empty_reason(session, subscriber, row.local_date, listed_on)
    return digest

