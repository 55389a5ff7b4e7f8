"""Delivery: the one module that claims, sends and records digests — for the scheduled sweep,
/digest and `feedbot digest --send` alike.

A delivery row is unique on (subscriber, local date) and is claimed with INSERT … ON CONFLICT DO
NOTHING before anything is sent, its picks recorded with it. Its states:

    claimed → sending → sent | empty | blocked | failed | uncertain      (skipped: a missed day)

What state follows an attempt is decided by one pure function, `after`, from the outcome of the
part just tried and how many parts were already confirmed. Parts are recorded one by one, so a
retry (a 429 that outlasted the retries, a refused connection: nothing reached Telegram) resumes
at the first unconfirmed part and never repeats one. An outcome that may or may not have reached
the subscriber (timeout, 5xx, a dropped connection, a crash mid-send) ends `uncertain`, never
re-sent, because a second copy is worse than a missing one; the admin sees it in `feedbot status`.

Ranking runs outside write transactions (SQLite readers never take the write lock); the write
that follows is short and keeps only the picks the database accepted as new for the subscriber,
so two claimers racing (the sweep and /digest, two processes) can never show a paper twice.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta

import httpx
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter, TelegramError, TimedOut

from feedbot.clock import utcnow
from feedbot.config import Settings
from feedbot.delivery import digests, schedule
from feedbot.delivery.messages import Reply
from feedbot.delivery.telegram_send import Blocked
from feedbot.ranking import recommend
from feedbot.ranking.textmodel import TextModel
from feedbot.store.db import insert_for, transaction
from feedbot.store.links import DEFAULT_PAPER_LINK
from feedbot.store.models import Delivery, Paper, Shown, Subscriber

log = logging.getLogger(__name__)

# Outcomes of one attempt to send one part.
DELIVERED = "delivered"  # Telegram confirmed it
REFUSED = "refused"  # nothing reached Telegram: 429 past the retries, connection refused
UNKNOWN = "unknown"  # it may have arrived: timeout, 5xx, dropped connection, crash mid-request
BLOCKED = "blocked"  # 403: the subscriber blocked the bot
REJECTED = "rejected"  # 400: Telegram will never take this message
EXPIRED = "expired"  # still unsent when its late window closed
WITHDRAWN = "withdrawn"  # the subscriber stopped or blocked before it went out
OUTCOMES = (DELIVERED, REFUSED, UNKNOWN, BLOCKED, REJECTED, EXPIRED, WITHDRAWN)

FINAL = ("sent", "empty", "blocked", "failed", "uncertain", "skipped")
IN_FLIGHT = ("claimed", "sending")
STALE = timedelta(minutes=10)  # a `sending` row untouched this long belongs to a dead process


def after(outcome: str, confirmed: int, total: int, empty: bool = False) -> str:
    """The row's state after `outcome`, with `confirmed` parts of `total` known delivered
    (counting the part just delivered). `sending` means: go on with the next part."""
    if outcome == DELIVERED:
        if confirmed < total:
            return "sending"
        return "empty" if empty else "sent"
    if outcome == REFUSED:
        return "claimed"  # resume at part confirmed + 1 on the next sweep
    if outcome == UNKNOWN:
        return "uncertain"
    if outcome == BLOCKED:
        return "blocked"
    if outcome in (EXPIRED, WITHDRAWN):
        return "skipped" if confirmed == 0 else "failed"
    return "failed"


def describe(outcome: str, error: str, confirmed: int, total: int) -> str:
    """The reason stored with a row, for the admin: what happened and which parts went out."""
    parts = f"; parts 1–{confirmed} of {total} were delivered" if confirmed and total > 1 else ""
    if outcome == UNKNOWN:
        return f"{error}; part {confirmed + 1} of {total} may or may not have arrived{parts}; not re-sent"
    return f"{error}{parts}"


def classify(exc: BaseException) -> str:
    """Which outcome a python-telegram-bot exception means for the part being sent."""
    if isinstance(exc, Blocked | Forbidden):
        return BLOCKED
    if isinstance(exc, RetryAfter):
        return REFUSED
    cause = exc.__cause__
    if isinstance(cause, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
        return REFUSED  # no connection was made, so no request was sent
    if isinstance(exc, TimedOut | NetworkError):
        return UNKNOWN  # includes 5xx answers and connections dropped mid-request
    if isinstance(exc, BadRequest | TelegramError):
        return REJECTED
    return UNKNOWN


def as_utc(moment: datetime) -> datetime:
    """Datetimes read back from SQLite are naive; feedbot stores UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


# --- who is sending ----------------------------------------------------------------------------

def this_process() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def owner_alive(owner: str | None, attempted_at: datetime | None, now: datetime) -> bool:
    """Whether the process that marked a row `sending` may still be at it: a process on this host
    is asked directly; one elsewhere counts as alive until the row is STALE."""
    host, _, pid = (owner or "").rpartition(":")
    if host == socket.gethostname() and pid.isdigit():
        if int(pid) == os.getpid():
            return True
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return attempted_at is not None and now - as_utc(attempted_at) < STALE


# --- rows --------------------------------------------------------------------------------------

def claim(session: Session, subscriber_id: int, day: date, now: datetime | None = None,
          status: str = "claimed", source: str = "schedule") -> int | None:
    """Take the delivery for (subscriber, day); its id, or None when someone already has it."""
    insert = insert_for(session)
    result = session.execute(
        insert(Delivery).values(subscriber_id=subscriber_id, local_date=day, status=status, source=source,
                                claimed_at=now or utcnow())
        .on_conflict_do_nothing(index_elements=["subscriber_id", "local_date"])
        .returning(Delivery.id)
    ).first()
    return result[0] if result else None


def claim_many(session: Session, wanted: list[tuple[int, date]], now: datetime | None = None,
               source: str = "schedule") -> dict[int, int]:
    """Claim (subscriber, day) pairs in bulk, in subscriber order (a fixed lock order between
    concurrent claimers); {subscriber id: delivery id} for the ones won."""
    insert = insert_for(session)
    when = now or utcnow()
    won: dict[int, int] = {}
    wanted = sorted(wanted)
    for start in range(0, len(wanted), 500):
        rows = [{"subscriber_id": sid, "local_date": day, "status": "claimed", "source": source, "claimed_at": when}
                for sid, day in wanted[start : start + 500]]
        result = session.execute(
            insert(Delivery).values(rows)
            .on_conflict_do_nothing(index_elements=["subscriber_id", "local_date"])
            .returning(Delivery.subscriber_id, Delivery.id)
        )
        won.update(dict(result.all()))
    return won


def start_sending(session: Session, delivery_id: int, owner: str | None = None,
                  now: datetime | None = None, part_picks: str | None = None) -> int | None:
    """claimed → sending, owned by this process, with the picks of each part about to go out;
    the parts already confirmed, or None when the row is no longer ours to send (someone else
    took it, or it is finished)."""
    values = {"status": "sending", "owner": owner or this_process(), "attempted_at": now or utcnow()}
    if part_picks is not None:
        values["part_picks"] = part_picks[:255]
    row = session.execute(
        update(Delivery).where(Delivery.id == delivery_id, Delivery.status == "claimed")
        .values(**values)
        .returning(Delivery.parts_sent)
    ).first()
    return None if row is None else int(row[0])


def record_part(session: Session, delivery_id: int, confirmed: int, message_ids: list[int],
                now: datetime | None = None) -> None:
    """Part `confirmed` went out: remember it before the next one is tried."""
    session.execute(update(Delivery).where(Delivery.id == delivery_id).values(
        parts_sent=confirmed, message_ids=_ids(message_ids), attempted_at=now or utcnow()))


def finish(session: Session, delivery_id: int, status: str, message_ids: list[int] | None = None,
           error: str | None = None, now: datetime | None = None, confirmed: int | None = None) -> None:
    """Write an attempt's end state; `claimed` hands the row back for the next sweep."""
    values = {"status": status, "error": (error or None) and error[:2000], "attempted_at": now or utcnow()}
    if status != "claimed":
        values["finished_at"] = now or utcnow()
    if confirmed is not None:
        values["parts_sent"] = confirmed
    if message_ids is not None:
        values["message_ids"] = _ids(message_ids)
    session.execute(update(Delivery).where(Delivery.id == delivery_id).values(**values))
    if status == "blocked":
        session.execute(update(Subscriber).where(
            Subscriber.id == select(Delivery.subscriber_id).where(Delivery.id == delivery_id).scalar_subquery()
        ).values(state="blocked"))


def _ids(message_ids: list[int]) -> str | None:
    return ",".join(map(str, message_ids))[:255] or None


def for_day(session: Session, subscriber_id: int, day: date) -> Delivery | None:
    return session.scalar(select(Delivery).where(Delivery.subscriber_id == subscriber_id,
                                                 Delivery.local_date == day))


def reached(status: str, parts_sent: int) -> bool:
    """Whether a row counts as a digest the subscriber had (or may have had) for `MIN_GAP`."""
    return status in ("claimed", "sending", "sent", "empty", "uncertain") or parts_sent > 0


def stuck(session: Session, now: datetime, older: timedelta = STALE) -> list[Delivery]:
    """Rows in flight (`claimed`, `sending`) untouched for `older`: nobody is finishing them."""
    rows = session.scalars(select(Delivery).where(Delivery.status.in_(IN_FLIGHT)).order_by(Delivery.id)).all()
    return [r for r in rows if now - as_utc(r.attempted_at or r.claimed_at) >= older]


def histories(session: Session, subscriber_ids: Iterable[int] | None, now: datetime) -> dict[int, schedule.History]:
    """Recent delivery rows per subscriber, in the shape `schedule.decide` takes."""
    today = now.date()
    query = select(Delivery.subscriber_id, Delivery.local_date, Delivery.status, Delivery.claimed_at,
                   Delivery.parts_sent, Delivery.source).where(
                       Delivery.local_date.between(today - timedelta(days=3), today + timedelta(days=2)))
    ids = list(subscriber_ids) if subscriber_ids is not None else None
    if ids is not None and len(ids) <= 500:
        query = query.where(Delivery.subscriber_id.in_(ids))
    rows: dict[int, dict[date, str]] = {}
    last: dict[tuple[int, bool], datetime] = {}  # (subscriber, pulled with /digest) → latest claim
    latest_day: dict[int, date] = {}
    for sid, day, status, claimed_at, parts, source in session.execute(query):
        rows.setdefault(sid, {})[day] = status
        if not reached(status, parts):
            continue
        key, claimed_at = (sid, source == "command"), as_utc(claimed_at)
        last[key] = max(last.get(key, claimed_at), claimed_at)
        latest_day[sid] = max(latest_day.get(sid, day), day)
    wanted = ids if ids is not None else set(rows)
    return {sid: schedule.History(rows.get(sid, {}), last.get((sid, False)), last.get((sid, True)),
                                  latest_day.get(sid)) for sid in wanted}


# --- preparing ---------------------------------------------------------------------------------

@dataclass
class Outgoing:
    """One claimed digest, rendered, with the parts already confirmed."""

    delivery_id: int
    subscriber_id: int
    telegram_id: int
    chat_id: int
    local_date: date
    replies: list[Reply]
    empty: bool = False
    note: str = ""  # why an empty digest is empty
    confirmed: int = 0  # parts already delivered by an earlier attempt
    paper_ids: list[int] = field(default_factory=list)
    sizes: list[int] | None = None  # picks per part, earlier attempts' parts included

    def part_picks(self) -> str:
        """Picks per part as stored with the row ("2,1"): what a resume skips."""
        sizes = self.sizes if self.sizes is not None else [len(r.keyboard) for r in self.replies]
        return ",".join(map(str, sizes))

    @classmethod
    def direct(cls, delivery_id: int, chat_id: int, replies: list[Reply]) -> Outgoing:
        """A digest answered to /digest, sent by whoever carries the conversation."""
        return cls(delivery_id, 0, chat_id, chat_id, date.min, replies)


def rank(engine: Engine, model: TextModel | None, subs: list[Subscriber], days: dict[int, date], now: datetime,
         settings: Settings) -> dict[int, digests.Digest]:
    """Digests for these subscribers, ranked together in a read-only session (no write lock)."""
    with Session(engine) as session:
        return digests.build(session, model, subs, now, settings, days=days)


def claim_and_record(engine: Engine, subs: list[Subscriber], built: dict[int, digests.Digest], now: datetime,
                     source: str = "schedule", chunk: int = 50) -> list[tuple[Subscriber, digests.Digest, int | None]]:
    """Short write transactions (a chunk of subscribers each): claim each digest's day and record
    its picks as shown, keeping only the picks the database accepted as new. A digest whose day
    someone else claimed comes back with delivery id None (for /digest: extra picks)."""
    out = []
    for start in range(0, len(subs), chunk):
        group = subs[start : start + chunk]
        with transaction(engine) as session:
            # /digest claims the day only for a digest with picks; an empty answer leaves it to the schedule.
            won = claim_many(session, [(s.id, built[s.id].local_date) for s in group
                                       if source != "command" or built[s.id].picks], now, source)
            kept = digests.record(session, [(built[s.id], won.get(s.id)) for s in group], now,
                                  only_claimed=(source == "schedule"))
        for subscriber in group:
            digest = built[subscriber.id]
            digest = replace(digest, picks=[p for p in digest.picks if p.paper_id in kept.get(subscriber.id, set())])
            if not digest.picks and not digest.empty_reason:
                digest.empty_reason = built[subscriber.id].empty_reason or "your picks were just shown to you"
            out.append((subscriber, digest, won.get(subscriber.id)))
    return out


def prepare(engine: Engine, model: TextModel | None, due: list[tuple[Subscriber, date]], now: datetime,
            settings: Settings, source: str = "schedule") -> list[Outgoing]:
    """Rank the due subscribers, then claim and record: what to send, for the claims won."""
    if not due:
        return []
    subs = [s for s, _ in due]
    built = rank(engine, model, subs, {s.id: day for s, day in due}, now, settings)
    return [Outgoing(delivery_id, subscriber.id, subscriber.telegram_id, subscriber.chat_id, digest.local_date,
                     digests.render(digest), empty=not digest.picks, note=digest.empty_reason,
                     paper_ids=[p.paper_id for p in digest.picks])
            for subscriber, digest, delivery_id in claim_and_record(engine, subs, built, now, source)
            if delivery_id is not None]


def recover(session: Session, now: datetime, paper_link: str = DEFAULT_PAPER_LINK) -> tuple[list[Outgoing], int, int]:
    """Rows left in flight: `sending` whose process is gone becomes `uncertain`; `claimed` is
    rendered again from its recorded picks and resumed at its first unconfirmed part (or closed
    when its window passed or the subscriber left). Returns (to send, uncertain, closed)."""
    uncertain = closed = 0
    for row in session.scalars(select(Delivery).where(Delivery.status == "sending")):
        if owner_alive(row.owner, row.attempted_at, now):
            continue
        total = _parts(session, row, paper_link)
        finish(session, row.id, "uncertain", now=now, error=describe(
            UNKNOWN, f"the sending process ({row.owner or 'unknown'}) stopped mid-send", row.parts_sent, total))
        uncertain += 1
    out = []
    for row, subscriber in session.execute(
        select(Delivery, Subscriber).join(Subscriber, Subscriber.id == Delivery.subscriber_id)
        .where(Delivery.status == "claimed").order_by(Delivery.id)
    ):
        outcome = None
        if subscriber.state != "active":
            outcome, error = WITHDRAWN, f"subscriber {subscriber.state} before it went out"
        elif now >= window_end(subscriber, row):
            outcome, error = EXPIRED, f"not delivered within its late window ({row.error or 'never attempted'})"
        if outcome is not None:
            total = _parts(session, row, paper_link)
            finish(session, row.id, after(outcome, row.parts_sent, total), now=now,
                   error=describe(outcome, error, row.parts_sent, total))
            closed += 1
            continue
        out.append(resumed(session, subscriber, row, paper_link))
    return out, uncertain, closed


def resumed(session: Session, subscriber: Subscriber, row: Delivery,
            paper_link: str = DEFAULT_PAPER_LINK) -> Outgoing:
    """A claimed row to send from its first unconfirmed part. Parts already sent are skipped by
    the picks they held (`part_picks`), and only the rest is rendered: a paper whose title,
    authors or links changed since cannot shift a pick into a part already sent (a repeat) or
    out of one still to send (a drop)."""
    digest = recorded_digest(session, subscriber, row, paper_link)
    item = Outgoing(row.id, subscriber.id, subscriber.telegram_id, subscriber.chat_id, row.local_date,
                    digests.render(digest), empty=not digest.picks, note=digest.empty_reason, confirmed=row.parts_sent,
                    paper_ids=[p.paper_id for p in digest.picks])
    sizes = [int(n) for n in (row.part_picks or "").split(",") if n.isdigit()]
    if row.parts_sent and len(sizes) >= row.parts_sent:
        done = sizes[: row.parts_sent]
        rest = digests.render(digest, after=sum(done))
        item.replies = [Reply("") for _ in done] + rest  # the sent parts are never sent again
        item.sizes = done + [len(r.keyboard) for r in rest]
    return item


def window_end(subscriber: Subscriber, row: Delivery) -> datetime:
    return max(schedule.send_at(subscriber, row.local_date), as_utc(row.claimed_at)) + schedule.LATE_WINDOW


def _parts(session: Session, row: Delivery, paper_link: str) -> int:
    subscriber = session.get(Subscriber, row.subscriber_id)
    return len(resumed(session, subscriber, row, paper_link).replies)


def recorded_digest(session: Session, subscriber: Subscriber, row: Delivery,
                    paper_link: str = DEFAULT_PAPER_LINK) -> digests.Digest:
    """A claimed digest rebuilt from the picks recorded with it: the same papers, the same reasons,
    the same links, so it splits into the same parts as when it was first sent."""
    picks = [
        recommend.Pick(paper, shown.score, "", shown.reason)
        for shown, paper in session.execute(
            select(Shown, Paper).join(Paper, Paper.id == Shown.paper_id)
            .where(Shown.delivery_id == row.id).order_by(Shown.position)
        )
    ]
    listed_on = recommend.latest_listing(session, row.local_date)
    digest = digests.Digest(subscriber.id, row.local_date, listed_on, picks, paper_link=paper_link)
    if not picks:
        digest.empty_reason = digests.empty_reason(session, subscriber, row.local_date, listed_on)
    return digest


# --- sending -----------------------------------------------------------------------------------

Transport = Callable[[Outgoing, Reply], Awaitable[int]]  # send one part; its message id
Writer = Callable[..., Awaitable]  # run a database function off the event loop


@dataclass
class Result:
    item: Outgoing
    status: str
    confirmed: int
    message_ids: list[int]
    error: str | None


async def send(item: Outgoing, transport: Transport, write: Writer, engine: Engine,
               clock: Callable[[], datetime] = utcnow, pause: Callable[[int], Awaitable] | None = None,
               ) -> Result | None:
    """Send a claimed digest from its first unconfirmed part, recording each part as it goes.
    None when the row was not ours to send. The final state is returned, not written: the caller
    writes it (`write_results`), possibly batched — until then the row reads `sending`, which a
    restart turns into `uncertain`, never into a second copy."""
    confirmed = await write(_start, engine, item.delivery_id, clock(), item.part_picks())
    if confirmed is None:
        return None
    total, ids = len(item.replies), []
    status = after(DELIVERED, confirmed, total, item.empty) if confirmed >= total else "sending"
    for number in range(confirmed, total):
        if pause is not None:
            await pause(number - item.confirmed)
        try:
            ids.append(await transport(item, item.replies[number]))
        except Exception as exc:  # noqa: BLE001 - every failure decides a state; none may leave it `sending`
            outcome = classify(exc)
            if outcome == UNKNOWN and not isinstance(exc, TelegramError):
                log.exception("unexpected error sending delivery %s", item.delivery_id)
            error = describe(outcome, f"{type(exc).__name__}: {exc}", confirmed, total)
            return Result(item, after(outcome, confirmed, total, item.empty), confirmed, ids, error)
        confirmed += 1
        status = after(DELIVERED, confirmed, total, item.empty)
        if status == "sending":
            await write(_record_part, engine, item.delivery_id, confirmed, ids, clock())
    return Result(item, status, confirmed, ids, item.note if status == "empty" else None)


def _start(engine: Engine, delivery_id: int, now: datetime, part_picks: str | None = None) -> int | None:
    with transaction(engine) as session:
        return start_sending(session, delivery_id, now=now, part_picks=part_picks)


def _record_part(engine: Engine, delivery_id: int, confirmed: int, ids: list[int], now: datetime) -> None:
    with transaction(engine) as session:
        _append_part(session, delivery_id, confirmed, ids, now)


def _append_part(session: Session, delivery_id: int, confirmed: int, ids: list[int], now: datetime) -> None:
    earlier = session.scalar(select(Delivery.message_ids).where(Delivery.id == delivery_id))
    known = [int(i) for i in (earlier or "").split(",") if i]
    record_part(session, delivery_id, confirmed, known + [i for i in ids if i not in known], now)


def write_results(engine: Engine, results: list[Result], now: datetime) -> None:
    """Store attempts' end states in one short transaction."""
    with transaction(engine) as session:
        for result in results:
            earlier = session.scalar(select(Delivery.message_ids).where(Delivery.id == result.item.delivery_id))
            known = [int(i) for i in (earlier or "").split(",") if i]
            finish(session, result.item.delivery_id, result.status,
                   known + [i for i in result.message_ids if i not in known], result.error, now, result.confirmed)


def shown_in_console(engine: Engine, delivery_id: int, parts: int, now: datetime | None = None) -> None:
    """The console chat printed a claimed digest: it counts as sent (a terminal cannot refuse)."""
    with transaction(engine) as session:
        if start_sending(session, delivery_id, now=now) is not None:
            finish(session, delivery_id, "sent", now=now, confirmed=parts)


async def send_now(engine: Engine, item: Outgoing, transport: Transport,
                   clock: Callable[[], datetime] = utcnow) -> str:
    """Send one digest and write its outcome at once (/digest, `feedbot digest --send`)."""
    import asyncio

    async def write(function, *args):
        return await asyncio.to_thread(function, *args)

    result = await send(item, transport, write, engine, clock)
    if result is None:
        return "taken"
    await write(write_results, engine, [result], clock())
    log.info("delivery id=%s subscriber=%s date=%s status=%s parts=%s/%s%s", item.delivery_id, item.subscriber_id,
             item.local_date, result.status, result.confirmed, len(item.replies),
             f" error={result.error}" if result.error else "")
    return result.status
