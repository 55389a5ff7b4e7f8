"""Digests: pick (one batched ranking pass), record (what was shown, never again), render (one
message, split only past Telegram's 4096 characters). The same code serves /digest, the
scheduled digest and the console chat.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime

from sqlalchemy import text, update
from sqlalchemy.orm import Session

from feedbot.config import Settings
from feedbot.delivery import reasons, schedule
from feedbot.delivery.messages import Reply, count_row, escape, paper_item, split_items, vote_row
from feedbot.ranking import recommend
from feedbot.ranking.textmodel import TextModel
from feedbot.store import subscribers
from feedbot.store.db import insert_for
from feedbot.store.links import DEFAULT_PAPER_LINK
from feedbot.store.models import Shown, Subscriber
from feedbot.store.papers import latest_dump_failed


@dataclass
class Digest:
    subscriber_id: int
    local_date: date
    listed_on: date | None
    picks: list[recommend.Pick] = field(default_factory=list)
    empty_reason: str = ""
    paper_link: str = DEFAULT_PAPER_LINK  # FEEDBOT_PAPER_LINK: where a title without a URL points
    kind: str = "private"  # the subscriber's: a group's or channel's buttons count its members' votes


def empty_reason_code(session: Session, subscriber: Subscriber, day: date, listed_on: date | None) -> str:
    """Why a digest has no picks, as a code from feedbot.delivery.reasons (decided here only)."""
    if subscriber.state in ("stopped", "blocked"):
        return subscriber.state
    if subscribers.is_paused(subscriber, day):
        return "paused"
    if latest_dump_failed(session):
        return "dump_failed"
    if listed_on is None:
        return "no_papers"
    return "seen_all"


def empty_reason(session: Session, subscriber: Subscriber, day: date, listed_on: date | None) -> str:
    """The empty-day message's words for that code."""
    code = empty_reason_code(session, subscriber, day, listed_on)
    return reasons.word(code, "subscriber", until=_until(subscriber),
                        listed_on=f"{listed_on:%a %d %b}" if listed_on else "")


def _until(subscriber: Subscriber) -> str:
    if subscriber.paused_until is None or subscriber.paused_until == date.max:
        return ""
    return f" until {subscriber.paused_until:%a %d %b}"


def build(session: Session, model: TextModel | None, subs: list[Subscriber], now: datetime,
          settings: Settings, days: dict[int, date] | None = None) -> dict[int, Digest]:
    """Digests for these subscribers, ranked together (one pass per local date); `days` names the
    local date each digest is for (default: today in their zone)."""
    by_day: dict[date, list[Subscriber]] = defaultdict(list)
    for subscriber in subs:
        by_day[(days or {}).get(subscriber.id) or schedule.local_date(subscriber, now)].append(subscriber)
    out: dict[int, Digest] = {}
    for day, group in by_day.items():
        active = [s for s in group if s.state == "active" and not subscribers.is_paused(s, day)]
        picks = recommend.recommend(session, model, active, day, now, settings.candidate_days,
                                    settings.vote_half_life_days) if active and model else {}
        listed_on = recommend.latest_listing(session, day)
        for subscriber in group:
            digest = Digest(subscriber.id, day, listed_on, picks.get(subscriber.id, []), paper_link=settings.paper_link,
                            kind=subscriber.kind)
            if not digest.picks:
                digest.empty_reason = empty_reason(session, subscriber, day, listed_on)
            out[subscriber.id] = digest
    return out


_SHOWN_COLUMNS = ("subscriber_id", "paper_id", "delivery_id", "source", "position", "score", "reason", "shown_at")
# On PostgreSQL the picks go in as one array per column: a multi-row VALUES of thousands of
# placeholders costs the driver more to parse, on every claim, than the database to insert.
_RECORD_ARRAYS = text(
    "INSERT INTO shown (subscriber_id, paper_id, delivery_id, source, position, score, reason, shown_at) "
    "SELECT * FROM unnest(CAST(:subscriber_id AS integer[]), CAST(:paper_id AS integer[]), "
    "CAST(:delivery_id AS integer[]), CAST(:source AS varchar[]), CAST(:position AS smallint[]), "
    "CAST(:score AS double precision[]), CAST(:reason AS text[]), CAST(:shown_at AS timestamptz[])) "
    "ON CONFLICT (subscriber_id, paper_id) DO NOTHING RETURNING subscriber_id, paper_id")


def record(session: Session, recorded: list[tuple[Digest, int | None]], now: datetime,
           only_claimed: bool = False) -> dict[int, set[int]]:
    """Remember digests' picks as shown, each tied to its delivery; returns, per subscriber, the
    papers the database accepted as new. A paper someone else recorded meanwhile (a concurrent
    claimer) is refused by the unique key and must not be sent. Rows go in (subscriber, paper)
    order, so concurrent writers lock in the same order."""
    rows = [{"subscriber_id": digest.subscriber_id, "paper_id": pick.paper_id, "delivery_id": delivery_id,
             "source": "digest", "position": n, "score": float(pick.score), "reason": pick.why[:2000],
             "shown_at": now}
            for digest, delivery_id in recorded if delivery_id is not None or not only_claimed
            for n, pick in enumerate(digest.picks)]
    rows.sort(key=lambda r: (r["subscriber_id"], r["paper_id"]))
    kept: dict[int, set[int]] = defaultdict(set)
    if not rows:
        accepted = []
    elif session.get_bind().dialect.name == "postgresql":  # one statement, a few arrays
        accepted = session.execute(_RECORD_ARRAYS, {name: [r[name] for r in rows] for name in _SHOWN_COLUMNS})
    else:
        table = Shown.__table__
        accepted = session.execute(  # one statement, batched by SQLAlchemy
            insert_for(session)(table).on_conflict_do_nothing(index_elements=["subscriber_id", "paper_id"])
            .returning(table.c.subscriber_id, table.c.paper_id), rows)
    for sid, pid in accepted:
        kept[sid].add(pid)
    for digest, delivery_id in recorded:  # positions follow the picks that were kept
        won = kept[digest.subscriber_id]
        if delivery_id is not None and not won.issuperset(p.paper_id for p in digest.picks):
            _renumber(session, delivery_id, [p.paper_id for p in digest.picks if p.paper_id in won])
    return kept


def _renumber(session: Session, delivery_id: int, paper_ids: list[int]) -> None:
    for n, paper_id in enumerate(paper_ids):
        session.execute(update(Shown).where(Shown.delivery_id == delivery_id, Shown.paper_id == paper_id,
                                            Shown.position != n).values(position=n))


def render(digest: Digest, votes: dict[int, int] | None = None, after: int = 0) -> list[Reply]:
    """The digest as messages: header, numbered picks with their why-lines, a 👍/👎 row per pick.
    `after` picks already went out in earlier parts: only the rest, numbered on, no header."""
    votes = votes or {}
    day = f"{digest.local_date:%a %d %b}"
    if not digest.picks:
        return [Reply(f"<b>📚 feedbot · {day}</b>\nNo papers for you today: {escape(digest.empty_reason)}.")]
    count = len(digest.picks)
    listed = f" from the listing of {digest.listed_on:%d %b}" if digest.listed_on else ""
    audience, teach = ("you", "Tap 👍/👎 to teach me.") if digest.kind == "private" else \
        (f"this {digest.kind}", "Tap 👍/👎: every member's vote counts.")
    header = f"<b>📚 feedbot · {day}</b>\n{count} pick{'s' if count != 1 else ''} for {audience}{listed}. {teach}"
    items = [
        (paper_item(f"{n}.", pick.paper, digest.paper_link, abstract_chars=260, why=pick.why),
         vote_row(n, pick.paper_id, votes.get(pick.paper_id, 0)) if digest.kind == "private"
         else count_row(n, pick.paper_id, 0, 0))
        for n, pick in enumerate(digest.picks, 1) if n > after
    ]
    if after:
        return split_items("", items) if items else []
    return split_items(header, items)
