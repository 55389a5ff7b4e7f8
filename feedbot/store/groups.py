"""Groups and channels as subscribers: the chat's id is the subscriber's Telegram id, its members'
👍/👎 are their own rows in member_votes (never their private votes), and a group upgraded to a
supergroup keeps everything under its new chat id."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

from sqlalchemy import delete, exists, func, select, update
from sqlalchemy.orm import Session, aliased

from feedbot.clock import utcnow
from feedbot.store.db import insert_for
from feedbot.store.models import (
    Delivery,
    Import,
    Interest,
    MemberVote,
    Mute,
    Paper,
    Recap,
    Shown,
    Subscriber,
    Vote,
)
from feedbot.store.subscribers import votes_changed

KINDS = ("group", "channel")

# A subscriber's rows, with the columns that make each unique for one subscriber (Import has none).
# Every table with a subscriber_id is here: a row left behind would go with the merged subscriber
# (a recap claimed there, gone, would let that week's recap be sent again).
OWNED = ((Interest, ("text",)), (Mute, ("word",)), (Vote, ("paper_id",)), (Import, ()),
         (MemberVote, ("paper_id", "member_id")), (Delivery, ("local_date",)), (Shown, ("paper_id",)),
         (Recap, ("week",)))


def stop_chat(session: Session, chat_id: int) -> bool:
    """The bot left (or was removed from) the chat: its subscription stops, its data is kept."""
    return session.execute(update(Subscriber).where(Subscriber.telegram_id == chat_id, Subscriber.state == "active")
                           .values(state="stopped")).rowcount > 0


def migrate(session: Session, old_chat_id: int, new_chat_id: int) -> bool:
    """The group `old_chat_id` became the supergroup `new_chat_id`: the same subscriber, under the new
    id. Its rows reference the subscriber's row id, which does not change, so nothing moves. Should
    the new chat already have a subscriber (a command there was answered before the migration
    message), that one's rows are merged in (the group's own win where both have one) and it goes.
    Both service messages may arrive, in any order: the second finds nothing left to do."""
    if old_chat_id == new_chat_id:
        return False
    rows = {s.telegram_id: s for s in session.scalars(
        select(Subscriber).where(Subscriber.telegram_id.in_((old_chat_id, new_chat_id)))
        .order_by(Subscriber.id).with_for_update().execution_options(populate_existing=True))}
    source, target = rows.get(old_chat_id), rows.get(new_chat_id)
    if source is None:
        return False
    moved = {"telegram_id": new_chat_id, "chat_id": new_chat_id}
    if target is not None:
        if target.state == "active":  # started in the supergroup: that is the chat's latest word
            moved["state"] = "active"
        _merge(session, source.id, target.id)
        session.execute(delete(Subscriber).where(Subscriber.id == target.id))
        session.flush()
        votes_changed(session, source.id, target.id)  # the target's votes moved to the source
    session.execute(update(Subscriber).where(Subscriber.id == source.id).values(**moved))
    session.expire(source)
    return True


def _merge(session: Session, source_id: int, target_id: int) -> None:
    """Move `target_id`'s rows to `source_id`, except where the source already has the same one."""
    # A digest of the target on a day the source also had one is dropped: its papers stay shown.
    clashing = select(Delivery.id).where(
        Delivery.subscriber_id == target_id,
        Delivery.local_date.in_(select(Delivery.local_date).where(Delivery.subscriber_id == source_id)))
    session.execute(update(Shown).where(Shown.delivery_id.in_(clashing)).values(delivery_id=None))
    for table, keys in OWNED:
        other = aliased(table)
        clash = exists().where(other.subscriber_id == source_id,
                               *[getattr(other, key) == getattr(table, key) for key in keys])
        moved = update(table).where(table.subscriber_id == target_id)
        session.execute((moved.where(~clash) if keys else moved).values(subscriber_id=source_id))
        session.execute(delete(table).where(table.subscriber_id == target_id))


def member_vote(session: Session, subscriber: Subscriber, member_id: int, paper_id: int, value: int,
                now: datetime | None = None) -> int:
    """A member's tap: their vote on the group's pick, cleared by the same tap again; the value
    now stored (0 when cleared). The caller holds the subscriber's row lock (one tap at a time)."""
    current = session.get(MemberVote, (subscriber.id, paper_id, member_id), populate_existing=True)
    if current is not None and current.value == value:
        session.delete(current)
        session.flush()
        return 0
    when = now or utcnow()
    insert = insert_for(session)
    session.execute(
        insert(MemberVote).values(subscriber_id=subscriber.id, paper_id=paper_id, member_id=member_id,
                                  value=value, voted_at=when)
        .on_conflict_do_update(index_elements=["subscriber_id", "paper_id", "member_id"],
                               set_={"value": value, "voted_at": when})
    )
    return value


def counts(session: Session, subscriber: Subscriber, paper_ids: list[int]) -> dict[int, tuple[int, int]]:
    """(👍, 👎) of the members on each paper: numbers only, never who."""
    out: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    if paper_ids:
        for pid, value, n in session.execute(
            select(MemberVote.paper_id, MemberVote.value, func.count())
            .where(MemberVote.subscriber_id == subscriber.id, MemberVote.paper_id.in_(paper_ids))
            .group_by(MemberVote.paper_id, MemberVote.value)
        ):
            out[pid][0 if value > 0 else 1] = n
    return {pid: (up, down) for pid, (up, down) in out.items()}


def liked_papers(session: Session, subscriber: Subscriber) -> list[Paper]:
    """Papers the members liked on balance (more 👍 than 👎), the latest voted first."""
    liked = (select(MemberVote.paper_id, func.max(MemberVote.voted_at).label("last"))
             .where(MemberVote.subscriber_id == subscriber.id).group_by(MemberVote.paper_id)
             .having(func.sum(MemberVote.value) > 0).subquery())
    return list(session.scalars(select(Paper).join(liked, liked.c.paper_id == Paper.id)
                                .order_by(liked.c.last.desc(), Paper.id.desc())))


def member_votes(session: Session, subscriber_ids: list[int]) -> dict[int, list[tuple[int, int, datetime]]]:
    """Every member vote of these subscribers, as (paper, value, when), by subscriber."""
    out: dict[int, list[tuple[int, int, datetime]]] = defaultdict(list)
    if subscriber_ids:
        for sid, pid, value, when in session.execute(
            select(MemberVote.subscriber_id, MemberVote.paper_id, MemberVote.value, MemberVote.voted_at)
            .where(MemberVote.subscriber_id.in_(subscriber_ids))
        ):
            out[sid].append((pid, value, when))
    return out
