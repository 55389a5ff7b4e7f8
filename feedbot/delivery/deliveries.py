"""Delivery: the one module that claims, sends and records digests — for the scheduled sweep,
/digest and `feedbot digest --send` alike.

A digest is claimed (`rows`) with its picks recorded before anything is sent; its parts are sent
one by one, each recorded as it goes, so a retry (a 429 past the retries, a refused connection:
nothing was sent) resumes at the first unconfirmed part and never repeats one. What state follows
an attempt is decided by `outcomes.after`. An outcome that may or may not have reached the
subscriber (timeout, 5xx, a dropped connection, a crash mid-send) ends `uncertain`, never re-sent,
because a second copy is worse than a missing one; the admin sees it in `feedbot status`.

Ranking runs outside write transactions (SQLite readers never take the write lock); the write
that follows is short and keeps only the picks the database accepted as new for the subscriber,
so two claimers racing (the sweep and /digest, two processes) can never show a paper twice. No
path records picks as shown without sending them: picks are recorded only with a claim that
sends them (or as /digest's extra picks, sent at once), and a digest that ends without sending
some parts gives their picks back (`rows.finish`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta

from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session
from telegram.error import TelegramError

from feedbot.clock import utcnow
from feedbot.config import Settings
from feedbot.delivery import digests, heartbeat, schedule
from feedbot.delivery.messages import Reply
from feedbot.delivery.outcomes import (
    DELIVERED,
    EXPIRED,
    MIGRATED,
    REJECTED,
    UNKNOWN,
    WITHDRAWN,
    after,
    classify,
    describe,
)
from feedbot.delivery.ownership import as_utc, owner_alive, this_process
from feedbot.delivery.rows import (
    claim_many,
    finish,
    finish_many,
    mark_sending,
    move_chat,
    next_claimed,
    reached,
    record_part,
    start_sending,
)
from feedbot.delivery.runs import Trouble
from feedbot.ranking import recommend
from feedbot.ranking.textmodel import TextModel
from feedbot.store.db import transaction
from feedbot.store.links import DEFAULT_PAPER_LINK
from feedbot.store.models import Delivery, Paper, Shown, Subscriber

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Claim:
    """How a caller claims a subscriber's digest for a day."""

    source: str  # stored with the row: who asked
    empty_claims_day: bool  # an empty digest still becomes the day's delivery
    extra_picks: bool  # when the day is someone else's, the picks still go out (recorded unclaimed)


SCHEDULED = Claim("schedule", empty_claims_day=True, extra_picks=False)
ADMIN = Claim("admin", empty_claims_day=True, extra_picks=False)  # `feedbot digest --send`: the day or nothing
COMMAND = Claim("command", empty_claims_day=False, extra_picks=True)  # /digest: extra picks when the day is taken


def histories(session: Session, subscriber_ids: Iterable[int] | None, now: datetime) -> dict[int, schedule.History]:
    """Recent delivery rows per subscriber, in the shape `schedule.decide` takes: the rows of
    every local date that can be anyone's yesterday, today or tomorrow."""
    today = now.date()
    query = select(Delivery.subscriber_id, Delivery.local_date, Delivery.status, Delivery.claimed_at,
                   Delivery.parts_sent, Delivery.source).where(
                       Delivery.local_date.between(today - timedelta(days=3), today + timedelta(days=2)))
    ids = list(subscriber_ids) if subscriber_ids is not None else None
    chunks = [ids[n : n + 500] for n in range(0, len(ids), 500)] if ids is not None else [None]
    rows: dict[int, dict[date, str]] = {}
    last: dict[tuple[int, bool], datetime] = {}  # (subscriber, pulled with /digest) → latest claim
    latest_day: dict[int, date] = {}
    for chunk in chunks:
        for sid, day, status, claimed_at, parts, source in session.execute(
                query if chunk is None else query.where(Delivery.subscriber_id.in_(chunk))):
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


RANK_FAILURES = 32  # failed ranking passes a sweep spends isolating the subscribers ranking fails for


def rank(engine: Engine, model: TextModel | None, subs: list[Subscriber], days: dict[int, date], now: datetime,
         settings: Settings, trouble: Trouble | None = None, budget: list[int] | None = None,
         ) -> dict[int, digests.Digest]:
    """Digests for these subscribers, ranked together in a read-only session (no write lock).
    With `trouble`, a failing pass is split in halves until the subscribers it fails for are
    found: they are left out (and said why), everyone else is ranked. A failure that hits
    everyone (the database is down) stops after RANK_FAILURES passes."""
    budget = [RANK_FAILURES] if budget is None else budget
    try:
        with Session(engine) as session:
            return digests.build(session, model, subs, now, settings, days=days)
    except Exception as exc:
        if trouble is None:
            raise
        budget[0] -= 1
        if len(subs) == 1 or budget[0] <= 0:
            who = f"subscriber #{subs[0].id}" if len(subs) == 1 else f"{len(subs)} subscribers (giving up)"
            trouble.add(f"ranking {who}", exc)
            return {}
    half = len(subs) // 2
    return {**rank(engine, model, subs[:half], days, now, settings, trouble, budget),
            **rank(engine, model, subs[half:], days, now, settings, trouble, budget)}


def claim_and_record(engine: Engine, subs: list[Subscriber], built: dict[int, digests.Digest], now: datetime,
                     claim: Claim, chunk: int = 50) -> list[tuple[Subscriber, digests.Digest, int | None]]:
    """Short write transactions (a chunk of subscribers each): claim each digest's day and record
    its picks as shown, keeping only the picks the database accepted as new. A digest whose day
    someone else has comes back with delivery id None: with `claim.extra_picks` its picks are
    recorded (the caller sends them at once), otherwise nothing is recorded for it."""
    out = []
    for start in range(0, len(subs), chunk):
        group = subs[start : start + chunk]
        with transaction(engine) as session:
            won = claim_many(session, [(s.id, built[s.id].local_date) for s in group
                                       if claim.empty_claims_day or built[s.id].picks], now, claim.source)
            kept = digests.record(session, [(built[s.id], won.get(s.id)) for s in group], now,
                                  only_claimed=not claim.extra_picks)
        for subscriber in group:
            digest = built[subscriber.id]
            digest = replace(digest, picks=[p for p in digest.picks if p.paper_id in kept.get(subscriber.id, set())])
            if not digest.picks and not digest.empty_reason:
                digest.empty_reason = built[subscriber.id].empty_reason or "your picks were just shown to you"
            out.append((subscriber, digest, won.get(subscriber.id)))
    return out


def prepare(engine: Engine, model: TextModel | None, due: list[tuple[Subscriber, date]], now: datetime,
            settings: Settings, claim: Claim = SCHEDULED, trouble: Trouble | None = None) -> list[Outgoing]:
    """Rank the due subscribers, then claim and record: what to send, for the claims won. A
    digest that cannot be rendered ends `failed` at once, its picks given back."""
    if not due:
        return []
    subs = [s for s, _ in due]
    built = rank(engine, model, subs, {s.id: day for s, day in due}, now, settings, trouble)
    subs = [s for s in subs if s.id in built]
    out, broken = [], []
    for subscriber, digest, delivery_id in claim_and_record(engine, subs, built, now, claim):
        if delivery_id is None:
            continue
        try:
            replies = digests.render(digest)
        except Exception as exc:
            if trouble is None:
                raise
            trouble.add(f"rendering delivery {delivery_id}", exc)
            broken.append((delivery_id, f"could not be rendered: {type(exc).__name__}: {exc}"))
            continue
        out.append(Outgoing(delivery_id, subscriber.id, subscriber.telegram_id, subscriber.chat_id,
                            digest.local_date, replies, empty=not digest.picks, note=digest.empty_reason,
                            paper_ids=[p.paper_id for p in digest.picks]))
    if broken:
        with transaction(engine) as session:
            for delivery_id, error in broken:  # unless a sender took it meanwhile, and rendered it itself
                if session.scalar(select(Delivery.id).where(Delivery.id == delivery_id, Delivery.status == "claimed")
                                  .with_for_update(skip_locked=True)) is not None:
                    finish(session, delivery_id, "failed", now=now, error=error)
    return out


def recover(session: Session, now: datetime, paper_link: str = DEFAULT_PAPER_LINK,
            trouble: Trouble | None = None) -> tuple[list[Outgoing], int, int]:
    """Rows left in flight: `sending` whose process is gone becomes `uncertain`; `claimed` is
    rendered again from its recorded picks and resumed at its first unconfirmed part (or closed
    when its window passed or the subscriber left). A row that cannot be rendered again ends
    `failed`. Returns (to send, uncertain, closed)."""
    uncertain = closed = 0
    seen = heartbeat.last_seen(session)
    for row in session.scalars(select(Delivery).where(Delivery.status == "sending")):
        if owner_alive(row.owner, row.attempted_at, now, seen.get(row.owner or ""), heartbeat.DEAD_AFTER):
            continue
        total = _parts(session, row, paper_link)
        finish(session, row.id, "uncertain", now=now, error=describe(
            UNKNOWN, f"the sending process ({row.owner or 'unknown'}) stopped mid-send", row.parts_sent, total))
        uncertain += 1
    out = []
    # A row a sender is taking right now (another worker's `take`) is its: skipped, never closed
    # under it; the rows read here stay locked until the caller's transaction ends.
    for row, subscriber in session.execute(
        select(Delivery, Subscriber).join(Subscriber, Subscriber.id == Delivery.subscriber_id)
        .where(Delivery.status == "claimed").order_by(Delivery.id)
        .with_for_update(skip_locked=True, of=Delivery)
    ):
        outcome = None
        if subscriber.state != "active":
            outcome, error = WITHDRAWN, f"subscriber {subscriber.state} before it went out"
        elif now >= window_end(subscriber, row):
            outcome, error = EXPIRED, f"not delivered within its late window ({row.error or 'never attempted'})"
        try:
            if outcome is None:
                out.append(resumed(session, subscriber, row, paper_link))
                continue
            total = _parts(session, row, paper_link)
        except Exception as exc:
            if trouble is None:
                raise
            trouble.add(f"rendering delivery {row.id} again", exc)
            outcome, error, total = None, f"could not be rendered again: {type(exc).__name__}: {exc}", 0
        finish(session, row.id, after(outcome, row.parts_sent, total) if outcome else "failed", now=now,
               error=describe(outcome, error, row.parts_sent, total) if outcome else error)
        closed += 1
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
    digest = digests.Digest(subscriber.id, row.local_date, listed_on, picks, paper_link=paper_link,
                            kind=subscriber.kind)
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
               started: int | None = None) -> Result | None:
    """Send a claimed digest from its first unconfirmed part, recording each part as it goes.
    None when the row was not ours to send. The final state is returned, not written: the caller
    writes it (`write_results`), possibly batched — until then the row reads `sending`, which a
    restart turns into `uncertain`, never into a second copy. A group that became a supergroup
    gets the part again at its new chat id, which is stored for the digests to come. `started`:
    the row is already `sending` (`take`), with that many parts confirmed. The first part is
    paced before the row reads `sending`: a crash while waiting leaves it `claimed`, not uncertain."""
    if started is None:
        if pause is not None:
            await pause(0)
        started = await write(_in_session, start_sending, engine, item.delivery_id, None, clock(), item.part_picks())
        if started is None:
            return None
    confirmed = first = started
    # ids[:recorded] are stored with the row; None after a progress write failed, perhaps after its
    # commit: the next one merges all of them with what the row holds.
    total, ids, moved, recorded = len(item.replies), [], False, 0
    status = after(DELIVERED, confirmed, total, item.empty) if confirmed >= total else "sending"
    number = confirmed
    while number < total:
        if pause is not None and number > first:
            await pause(number - item.confirmed)
        try:
            ids.append(await transport(item, item.replies[number]))
        except Exception as exc:  # noqa: BLE001 - every failure decides a state; none may leave it `sending`
            outcome = classify(exc)
            if outcome == MIGRATED and not moved:
                moved, item.chat_id = True, exc.new_chat_id
                await write(_in_session, move_chat, engine, item.delivery_id, item.chat_id)
                continue  # the same part, to the new chat
            if outcome == UNKNOWN and not isinstance(exc, TelegramError):
                log.exception("unexpected error sending delivery %s", item.delivery_id)
            outcome = REJECTED if outcome == MIGRATED else outcome  # migrated twice: it was not sent
            error = describe(outcome, f"{type(exc).__name__}: {exc}", confirmed, total)
            return Result(item, after(outcome, confirmed, total, item.empty), confirmed, ids, error)
        confirmed = number = confirmed + 1
        status = after(DELIVERED, confirmed, total, item.empty)
        if status == "sending":
            try:  # only what a crash would need; the end state written next records the same
                await write(_in_session, record_part, engine, item.delivery_id, confirmed,
                            ids[recorded or 0:], clock(), recorded is None)
                recorded = len(ids)
            except Exception:  # noqa: BLE001 - a failed progress write must not stop a digest half sent
                recorded = None
                log.exception("could not record part %s of delivery %s; sending on", confirmed, item.delivery_id)
    return Result(item, status, confirmed, ids, item.note if status == "empty" else None)


def take(engine: Engine, prepared: dict[int, Outgoing], skip: set[int], now: datetime,
         paper_link: str = DEFAULT_PAPER_LINK, trouble: Trouble | None = None,
         limit: int = 1) -> list[tuple[Outgoing, int]]:
    """The next digests this process sends, `limit` at most: the oldest `claimed` rows no other
    process is taking (`next_claimed`), marked `sending` by this process in the same transaction
    — so every worker sends, and no two send the same row. Each is rendered as this process
    prepared it, or again from its recorded picks. A row whose subscriber left or whose window
    closed is left for the leader's sweep to close (`recover`), and skipped for the rest of the
    run (`skip`: only the rows left `claimed`, so the query stays short). [(item, parts
    confirmed)], empty when none is left."""
    taken: list[tuple[Outgoing, int]] = []
    with transaction(engine) as session:
        while len(taken) < limit:
            found = next_claimed(session, skip | {item.delivery_id for item, _ in taken}, limit - len(taken))
            if not found:
                break
            for row in found:
                item = prepared.get(row.id) or _again(session, row.id, now, skip, paper_link, trouble)
                if item is not None:
                    taken.append((item, row.parts_sent))
        mark_sending(session, [(item.delivery_id, item.part_picks()) for item, _ in taken], now)
    return taken


def _again(session: Session, delivery_id: int, now: datetime, skip: set[int], paper_link: str,
           trouble: Trouble | None) -> Outgoing | None:
    """A claimed row this process did not prepare, rendered again to send (`resumed`); None when it
    is not to be sent now: skipped (its subscriber left, its window closed) or failed to render."""
    row = session.get(Delivery, delivery_id)
    subscriber = session.get(Subscriber, row.subscriber_id)
    if subscriber.state != "active" or now >= window_end(subscriber, row):
        skip.add(row.id)  # stays `claimed`: not taken again this run
        return None
    try:
        return resumed(session, subscriber, row, paper_link)
    except Exception as exc:
        if trouble is None:
            raise
        trouble.add(f"rendering delivery {row.id} again", exc)
        finish(session, row.id, "failed", now=now, error=f"could not be rendered again: {type(exc).__name__}: {exc}")
        return None


def _in_session(function, engine: Engine, *args):
    with transaction(engine) as session:
        return function(session, *args)


def hand_back(engine: Engine, delivery_id: int, now: datetime) -> None:
    """An attempt broke off between parts (not in a send): `claimed` again, resumed after the
    parts it recorded by the next sweep."""
    with transaction(engine) as session:
        session.execute(update(Delivery).where(Delivery.id == delivery_id, Delivery.status == "sending",
                                               Delivery.owner == this_process()).values(
            status="claimed", attempted_at=now))


def write_results(engine: Engine, results: list[Result], now: datetime) -> None:
    """Store attempts' end states in one short transaction."""
    with transaction(engine) as session:
        finish_many(session, [(r.item.delivery_id, r.status, r.message_ids, r.error, r.confirmed) for r in results],
                    now)


def shown_in_console(engine: Engine, delivery_id: int, parts: int, now: datetime | None = None) -> None:
    """The console chat printed a claimed digest: it counts as sent (a terminal cannot refuse)."""
    with transaction(engine) as session:
        if start_sending(session, delivery_id, now=now) is not None:
            finish(session, delivery_id, "sent", now=now, confirmed=parts)


async def send_now(engine: Engine, item: Outgoing, transport: Transport,
                   clock: Callable[[], datetime] = utcnow) -> str:
    """Send one digest and write its outcome at once (/digest, `feedbot digest --send`)."""
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
