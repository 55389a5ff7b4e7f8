"""Delivery rows: one per subscriber and local date, claimed before anything is sent.

States: claimed → sending → sent | empty | failed | blocked | uncertain, and skipped for a day
that passed its cutoff. The UNIQUE (subscriber, local date) key is what makes a second digest
for the same day impossible, whichever process (worker, /digest, a second worker) gets there.

The rule for doubt: a row is marked `sending` (committed) just before its HTTP request. A row
found `sending` after a crash, or whose request timed out, may or may not have reached the
subscriber; it becomes `uncertain` and is never re-sent automatically, because a second copy is
worse than a missing one and the subscriber can always ask with /digest. A row still `claimed`
was never attempted and is sent after a restart.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Connection, select, update
from sqlalchemy.orm import Session

from feedbot.clock import utcnow
from feedbot.db import insert_for
from feedbot.models import Delivery


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


def claim_many(session: Session, wanted: list[tuple[int, date]], now: datetime | None = None) -> dict[int, int]:
    """Claim (subscriber, day) pairs in bulk; {subscriber id: delivery id} for the ones won."""
    if not wanted:
        return {}
    insert = insert_for(session)
    when = now or utcnow()
    won = {}
    for start in range(0, len(wanted), 500):
        rows = [{"subscriber_id": sid, "local_date": day, "status": "claimed", "claimed_at": when}
                for sid, day in wanted[start : start + 500]]
        result = session.execute(
            insert(Delivery).values(rows)
            .on_conflict_do_nothing(index_elements=["subscriber_id", "local_date"])
            .returning(Delivery.subscriber_id, Delivery.id)
        )
        won.update(dict(result.all()))
    return won


def finish(session: Session, delivery_id: int, status: str, message_ids: list[int] | None = None,
           error: str | None = None, now: datetime | None = None) -> None:
    session.execute(
        update(Delivery).where(Delivery.id == delivery_id).values(
            status=status, finished_at=now or utcnow(), error=(error or None) and error[:2000],
            message_ids=",".join(map(str, message_ids)) if message_ids else None,
        )
    )


def start_sending(session: Session | Connection, delivery_id: int) -> bool:
    """claimed → sending; False when the row is no longer ours to send."""
    return session.execute(
        update(Delivery).where(Delivery.id == delivery_id, Delivery.status == "claimed").values(status="sending")
    ).rowcount == 1


def release(session: Session, delivery_id: int, error: str) -> None:
    """sending → claimed: nothing reached Telegram (e.g. flood limit), so the next sweep retries."""
    session.execute(update(Delivery).where(Delivery.id == delivery_id).values(status="claimed", error=error[:2000]))


def for_day(session: Session, subscriber_id: int, day: date) -> Delivery | None:
    return session.scalar(select(Delivery).where(Delivery.subscriber_id == subscriber_id,
                                                 Delivery.local_date == day))
