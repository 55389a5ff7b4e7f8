"""The delivery row: claimed before anything is sent, then sending, then one final state.

A row is unique on (subscriber, local date) and is claimed with INSERT … ON CONFLICT DO NOTHING.
Its picks are recorded (`shown`) with it; a row that ends without delivering some of its parts
(failed, skipped, blocked, or the parts after the one in doubt of an uncertain row) gives those
picks back, so a paper is recorded as shown only when it went out or may have.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import date, datetime, timedelta

from sqlalchemy import Connection, Row, Text, bindparam, case, delete, or_, select, update
from sqlalchemy.orm import Session

from feedbot.clock import utcnow
from feedbot.delivery.ownership import as_utc, this_process
from feedbot.store import groups
from feedbot.store.db import chunks, insert_for
from feedbot.store.models import Delivery, Shown, Subscriber

UNDELIVERED = ("failed", "skipped", "blocked")  # final states whose unsent picks are given back
REACHED = ("claimed", "sending", "sent", "empty", "uncertain")  # a digest the subscriber had, or may have
_table = Delivery.__table__  # the Core table: batched statements skip the ORM's per-row work


def stored_error(error: str | None) -> str | None:
    """An attempt's error as a row keeps it: at most 2,000 characters, none for an empty one."""
    return error[:2000] if error else None


def claim(session: Session, subscriber_id: int, day: date, now: datetime | None = None,
          source: str = "schedule") -> int | None:
    """Take the delivery for (subscriber, day); its id, or None when someone already has it."""
    return claim_many(session, [(subscriber_id, day)], now, source).get(subscriber_id)


def _insert_new(session: Session, rows: list[dict]) -> list[tuple[int, int]]:
    """Insert the rows no one has yet (unique on subscriber and local date), in one statement;
    (subscriber id, delivery id) of the ones inserted."""
    if not rows:
        return []
    statement = insert_for(session)(_table).on_conflict_do_nothing(index_elements=["subscriber_id", "local_date"]) \
        .returning(_table.c.subscriber_id, _table.c.id)
    return [tuple(row) for row in session.execute(statement, rows)]  # batched by SQLAlchemy


def claim_many(session: Session, wanted: list[tuple[int, date]], now: datetime | None = None,
               source: str = "schedule") -> dict[int, int]:
    """Claim (subscriber, day) pairs in bulk, in subscriber order (a fixed lock order between
    concurrent claimers); {subscriber id: delivery id} for the ones won."""
    when = now or utcnow()
    return dict(_insert_new(session, [
        {"subscriber_id": sid, "local_date": day, "status": "claimed", "source": source, "claimed_at": when}
        for sid, day in sorted(wanted)]))


def skip_days(session: Session, days: list[tuple[int, date, str]], now: datetime | None = None) -> int:
    """Record (subscriber, day, why) as `skipped` where the day has no row yet (its window closed
    with nothing sent): one statement, however many; how many were recorded. Nothing was
    recorded as shown for them, so there is nothing to give back."""
    when = now or utcnow()
    return len(_insert_new(session, [
        {"subscriber_id": sid, "local_date": day, "status": "skipped", "source": "schedule", "claimed_at": when,
         "attempted_at": when, "finished_at": when, "error": stored_error(why)}
        for sid, day, why in sorted(days)]))


def start_sending(session: Session, delivery_id: int, owner: str | None = None,
                  now: datetime | None = None, part_picks: str | None = None) -> int | None:
    """claimed → sending, owned by this process, with the picks of each part about to go out;
    the parts already confirmed, or None when the row is no longer ours to send (someone else
    took it, or it is finished)."""
    values = {"status": "sending", "owner": owner or this_process(), "attempted_at": now or utcnow()}
    if part_picks is not None:
        values["part_picks"] = part_picks
    # SKIP LOCKED: a row another process is taking right now is passed over, never waited for.
    free = select(Delivery.id).where(Delivery.id == delivery_id, Delivery.status == "claimed") \
        .with_for_update(skip_locked=True).scalar_subquery()
    row = session.execute(
        update(Delivery).where(Delivery.id == free, Delivery.status == "claimed")
        .values(**values)
        .returning(Delivery.parts_sent)
    ).first()
    return None if row is None else int(row[0])


# Built once: it runs once per few digests sent, where building a statement costs as much as running it.
_NEXT_CLAIMED = select(_table.c.id, _table.c.subscriber_id, _table.c.parts_sent).where(
    _table.c.status == "claimed", _table.c.id.not_in(bindparam("skip", expanding=True))
).order_by(_table.c.id).limit(bindparam("count")).with_for_update(skip_locked=True)


def next_claimed(session: Session, skip: Collection[int] = (), limit: int = 1) -> list[Row]:
    """The oldest `limit` `claimed` rows (not in `skip`) that no other process is taking: FOR
    UPDATE SKIP LOCKED, so concurrent senders each get different rows and none waits. The rows
    stay locked until the caller's transaction ends (it marks them `sending` in that same
    transaction: `mark_sending`). Each is (id, subscriber_id, parts_sent)."""
    return list(session.execute(_NEXT_CLAIMED, {"skip": list(skip), "count": limit}))


def mark_sending(session: Session, starts: list[tuple[int, str]], now: datetime, owner: str | None = None) -> None:
    """claimed → sending, owned by this process, for rows this transaction holds (`next_claimed`),
    each with the picks of the parts about to go out ((delivery id, part picks)): one statement,
    so taking several rows costs one round trip."""
    if starts:
        picks = dict(starts)
        session.execute(update(_table).where(_table.c.id.in_(list(picks)), _table.c.status == "claimed").values(
            status="sending", owner=owner or this_process(), attempted_at=now,
            part_picks=case(picks, value=_table.c.id)))


def merge_ids(earlier: str | None, new: list[int]) -> str | None:
    """Stored message ids ("7,8") with `new` added (an attempt resumed after earlier parts went out)."""
    known = [int(i) for i in (earlier or "").split(",") if i]
    return ",".join(map(str, known + [i for i in new if i not in known])) or None


def _merged_ids(session: Session | Connection, delivery_id: int, new: list[int]) -> str | None:
    """The row's message ids with `new` added."""
    return merge_ids(session.scalar(select(Delivery.message_ids).where(Delivery.id == delivery_id)), new)


_NEW_IDS = bindparam("new_ids", type_=Text)
# Appended where the row stands, so recording a part costs one statement and no read.
_RECORD_PART = update(_table).where(_table.c.id == bindparam("row_id")).values(
    parts_sent=bindparam("confirmed"), attempted_at=bindparam("now"),
    message_ids=case((or_(_table.c.message_ids.is_(None), _table.c.message_ids == ""), _NEW_IDS),
                     else_=_table.c.message_ids + "," + _NEW_IDS))


def record_part(session: Session | Connection, delivery_id: int, confirmed: int, message_ids: list[int],
                now: datetime | None = None, merge: bool = False) -> None:
    """Part `confirmed` went out: remember it before the next one is tried. `message_ids` are the
    ids not stored yet (the row is this process's while `sending`), appended in one statement;
    with `merge`, they may be stored already (the write before failed, perhaps after its commit)
    and are merged with the row's, so none is stored twice."""
    now = now or utcnow()
    if merge or not message_ids:
        values = {"parts_sent": confirmed, "attempted_at": now}
        if message_ids:
            values["message_ids"] = _merged_ids(session, delivery_id, message_ids)
        session.execute(update(_table).where(_table.c.id == delivery_id).values(**values))
        return
    session.execute(_RECORD_PART, {"row_id": delivery_id, "confirmed": confirmed, "now": now,
                                   "new_ids": ",".join(map(str, message_ids))})


def finish(session: Session, delivery_id: int, status: str, message_ids: list[int] | None = None,
           error: str | None = None, now: datetime | None = None, confirmed: int | None = None) -> None:
    """Write an attempt's end state; `claimed` hands the row back for the next sweep. A blocked
    row deactivates its subscriber; an undelivered one gives back the picks it did not send."""
    values = {"status": status, "error": stored_error(error), "attempted_at": now or utcnow()}
    if status != "claimed":
        values["finished_at"] = now or utcnow()
    if confirmed is not None:
        values["parts_sent"] = confirmed
    if message_ids is not None:
        values["message_ids"] = _merged_ids(session, delivery_id, message_ids)
    session.execute(update(Delivery).where(Delivery.id == delivery_id).values(**values))
    if status == "blocked":
        session.execute(update(Subscriber).where(
            Subscriber.id == select(Delivery.subscriber_id).where(Delivery.id == delivery_id).scalar_subquery()
        ).values(state="blocked"))
    if status in UNDELIVERED or status == "uncertain":
        release_unsent(session, delivery_id, maybe_sent=int(status == "uncertain"))


DELIVERED_STATES = ("sent", "empty")  # end states that touch nothing but their row


def finish_many(session: Session, ends: list[tuple[int, str, list[int], str | None, int]],
                now: datetime | None = None) -> None:
    """`finish` for several attempts (id, status, message ids, error, parts confirmed): the
    delivered ones in one read of their stored ids and one batched update; the others, which
    may touch the subscriber or give picks back, one by one."""
    when = now or utcnow()
    delivered = [end for end in ends if end[1] in DELIVERED_STATES]
    for delivery_id, status, message_ids, error, confirmed in ends:
        if status not in DELIVERED_STATES:
            finish(session, delivery_id, status, message_ids, error, when, confirmed)
    statement = update(_table).where(_table.c.id == bindparam("row_id")).values(
        status=bindparam("new_status"), error=bindparam("new_error"), parts_sent=bindparam("new_parts"),
        message_ids=bindparam("new_ids"), attempted_at=when, finished_at=when)
    for batch in chunks(delivered, 500):
        stored = dict(session.execute(select(Delivery.id, Delivery.message_ids)
                                      .where(Delivery.id.in_([end[0] for end in batch]))).all())
        session.connection().execute(statement, [
            {"row_id": delivery_id, "new_status": status, "new_error": stored_error(error),
             "new_parts": confirmed, "new_ids": merge_ids(stored.get(delivery_id), message_ids)}
            for delivery_id, status, message_ids, error, confirmed in batch])


def release_unsent(session: Session, delivery_id: int, maybe_sent: int = 0) -> int:
    """Forget the picks of the parts that never went out, so later digests may offer them;
    how many. The parts sent are known by `parts_sent` and the picks per part (`part_picks`);
    `maybe_sent` parts after them may have arrived (uncertain) and are kept."""
    parts_sent, part_picks = session.execute(
        select(Delivery.parts_sent, Delivery.part_picks).where(Delivery.id == delivery_id)).one()
    sizes = [int(n) for n in (part_picks or "").split(",") if n.isdigit()]
    kept = parts_sent + maybe_sent
    if kept and len(sizes) < kept:
        return 0  # which picks went out is not known: keep them all
    sent = sum(sizes[:kept])
    return session.execute(delete(Shown).where(Shown.delivery_id == delivery_id, Shown.position >= sent)).rowcount


def move_chat(session: Session, delivery_id: int, chat_id: int) -> None:
    """The subscriber's group became a supergroup: its digests go to the new chat id from now on
    (a group subscriber is known by its chat id, so it moves whole: `groups.migrate`)."""
    subscriber_id = session.scalar(select(Delivery.subscriber_id).where(Delivery.id == delivery_id))
    subscriber = session.get(Subscriber, subscriber_id) if subscriber_id is not None else None
    if subscriber is not None and subscriber.kind != "private":
        groups.migrate(session, subscriber.telegram_id, chat_id)
        return
    session.execute(update(Subscriber).where(
        Subscriber.id == select(Delivery.subscriber_id).where(Delivery.id == delivery_id).scalar_subquery()
    ).values(chat_id=chat_id))


def for_day(session: Session, subscriber_id: int, day: date) -> Delivery | None:
    return session.scalar(select(Delivery).where(Delivery.subscriber_id == subscriber_id,
                                                 Delivery.local_date == day))


def for_days(session: Session, days: dict[int, date]) -> dict[int, tuple[str, str | None]]:
    """(status, error) of each subscriber's row for the local date given, in one query."""
    if not days:
        return {}
    first, last = min(days.values()), max(days.values())
    query = select(Delivery.subscriber_id, Delivery.local_date, Delivery.status, Delivery.error).where(
        Delivery.local_date.between(first, last))
    if len(days) <= 500:
        query = query.where(Delivery.subscriber_id.in_(list(days)))
    return {sid: (status, error) for sid, day, status, error in session.execute(query) if days.get(sid) == day}


def reached(status: str, parts_sent: int) -> bool:
    """Whether a row counts as a digest the subscriber had (or may have had) for `MIN_GAP`."""
    return status in REACHED or parts_sent > 0


def in_flight_since(session: Session, now: datetime, older: timedelta) -> list[Delivery]:
    """Rows in flight (`claimed`, `sending`) untouched for `older`."""
    rows = session.scalars(select(Delivery).where(Delivery.status.in_(("claimed", "sending")))
                           .order_by(Delivery.id)).all()
    return [r for r in rows if now - as_utc(r.attempted_at or r.claimed_at) >= older]
