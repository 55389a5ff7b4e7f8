"""Digests: pick (one batched ranking pass), record (what was shown, never again), render (one
message, split only past Telegram's 4096 characters). The same code serves /digest, the
scheduled digest and the console chat.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from feedbot import recommend, schedule, subscribers
from feedbot.config import Settings
from feedbot.messages import Reply, escape, snippet, split_items, vote_keyboard, vote_row
from feedbot.models import Shown, Subscriber
from feedbot.papers import latest_dump_failed
from feedbot.textmodel import TextModel

STARTER_SIZE = 5


@dataclass
class Digest:
    subscriber_id: int
    local_date: date
    listed_on: date | None
    picks: list[recommend.Suggestion] = field(default_factory=list)
    empty_reason: str = ""


def empty_reason(session: Session, subscriber: Subscriber, day: date, listed_on: date | None) -> str:
    if subscriber.state == "stopped":
        return "you have unsubscribed (send /start to come back)"
    if subscriber.state == "blocked":
        return "this chat blocked the bot"
    if subscribers.is_paused(subscriber, day):
        return f"your digest is paused{_until(subscriber)} (send /resume to restart it)"
    if latest_dump_failed(session):
        return "the latest papers dump failed to ingest; the team has been told"
    if listed_on is None:
        return "no papers have been listed yet"
    return f"no new papers since the listing of {listed_on:%a %d %b} (you have seen them all)"


def _until(subscriber: Subscriber) -> str:
    if subscriber.paused_until is None or subscriber.paused_until == date.max:
        return ""
    return f" until {subscriber.paused_until:%a %d %b}"


def build(session: Session, model: TextModel | None, subs: list[Subscriber], now: datetime,
          settings: Settings) -> dict[int, Digest]:
    """Digests for these subscribers, ranked together (one pass per local date)."""
    by_day: dict[date, list[Subscriber]] = defaultdict(list)
    for subscriber in subs:
        by_day[schedule.local_date(subscriber, now)].append(subscriber)
    out: dict[int, Digest] = {}
    for day, group in by_day.items():
        active = [s for s in group if s.state == "active" and not subscribers.is_paused(s, day)]
        picks = recommend.recommend(session, model, active, day, now, settings.candidate_days,
                                    settings.vote_half_life_days) if active and model else {}
        listed_on = recommend.latest_listing(session, day)
        for subscriber in group:
            digest = Digest(subscriber.id, day, listed_on, picks.get(subscriber.id, []))
            if not digest.picks:
                digest.empty_reason = empty_reason(session, subscriber, day, listed_on)
            out[subscriber.id] = digest
    return out


def record(session: Session, recorded: list[tuple[Digest, int | None]], now: datetime) -> None:
    """Remember digests' picks as shown (the database refuses a repeat), each tied to its delivery."""
    subscribers.record_shown_many(session, [
        (digest.subscriber_id, [(p.paper_id, p.score, p.why) for p in digest.picks], delivery_id)
        for digest, delivery_id in recorded], "digest", now)


def render(digest: Digest, votes: dict[int, int] | None = None) -> list[Reply]:
    """The digest as messages: header, numbered picks with their why-lines, a 👍/👎 row per pick."""
    votes = votes or {}
    day = f"{digest.local_date:%a %d %b}"
    if not digest.picks:
        return [Reply(f"<b>📚 feedbot · {day}</b>\nNo papers for you today: {escape(digest.empty_reason)}.")]
    count = len(digest.picks)
    listed = f" from the listing of {digest.listed_on:%d %b}" if digest.listed_on else ""
    header = f"<b>📚 feedbot · {day}</b>\n{count} pick{'s' if count != 1 else ''} for you{listed}. " \
             f"Tap 👍/👎 to teach me."
    items = [
        (_item(n, pick), vote_row(n, pick.paper_id, votes.get(pick.paper_id, 0)))
        for n, pick in enumerate(digest.picks, 1)
    ]
    return split_items(header, items)


def _item(number: int, pick: recommend.Suggestion) -> str:
    why = pick.why if len(pick.why) <= 600 else pick.why[:599] + "…"
    return f"{number}. <b>{escape(pick.title)}</b>\n{escape(snippet(pick.abstract))}\n<i>{escape(why)}</i>"


def starter(session: Session, model: TextModel, subscriber: Subscriber, now: datetime,
            settings: Settings, size: int = STARTER_SIZE) -> list[Reply]:
    """About five recent papers to rate during onboarding (led by the typed interests), recorded as shown."""
    day = schedule.local_date(subscriber, now)
    pool = recommend.candidates(session, day, max(settings.candidate_days, 7))
    seen = set(session.scalars(select(Shown.paper_id).where(Shown.subscriber_id == subscriber.id)))
    pool = [c for c in pool if c.id not in seen]
    if not pool:
        return []
    chosen = recommend.starters(session, model, subscriber, pool, size)
    subscribers.record_shown(session, subscriber, [(c.id, 0.0, "starter") for c in chosen], "starter", now=now)
    lines = [f"{n}. <b>{escape(c.title)}</b>\n{escape(snippet(c.abstract, 200))}" for n, c in enumerate(chosen, 1)]
    text = "<b>Rate a few papers</b> so your first digest already knows your taste:\n\n" + "\n\n".join(lines)
    return [Reply(text, vote_keyboard([(n, c.id) for n, c in enumerate(chosen, 1)], {}))]
