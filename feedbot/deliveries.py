"""Delivery rows: one per subscriber and local date, claimed before anything is sent.

States: claimed → sent | failed | blocked | uncertain; skipped and empty record days on which
nothing was sent and why. The UNIQUE (subscriber, local date) key is what makes a second digest
for the same day impossible, whichever process (worker, /digest, a second worker) gets there.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from feedbot.clock import utcnow
from feedbot.db import insert_for
from feedbot.models import Delivery

FINAL = ("sent", "failed", "blocked", "skipped", "empty")


def claim(session: Session, subscriber_id: int, day: date, now: datetime | None = None,
          status: str = "claimed") -> int | None:
    """Take the delivery for (subscriber, day); its id, or None when someone already has it."""
    insert = insert_for(session)
    result = session.execute(
        insert(Delivery).values(subscriber_id=subscriber_id, local_date=day, status=status,
                                claimed_at=now or utcnow())
        .on_conflict_do_nothing(index_elements=["subscriber_id", "local_date"])
        .returning(Delivery.id)
    ).first()
    return result[0] if result else None


def finish(session: Session, delivery_id: int, status: str, message_ids: list[int] | None = None,
           error: str | None = None, now: datetime | None = None) -> None:
    session.execute(
        update(Delivery).where(Delivery.id == delivery_id).values(
            status=status, finished_at=now or utcnow(), error=(error or None) and error[:2000],
            message_ids=",".join(map(str, message_ids)) if message_ids else None,
        )
    )


def for_day(session: Session, subscriber_id: int, day: date) -> Delivery | None:
    return session.scalar(select(Delivery).where(Delivery.subscriber_id == subscriber_id,
                                                 Delivery.local_date == day))
