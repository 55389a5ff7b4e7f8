"""The Sunday recap: once a week, at the subscriber's digest time on Sunday in their zone, one
message: what they liked this week, what feedbot's readers liked most this week that they were not
shown, and how their profile moved (ranking.drift). "This week" is the 7 days before it is built.

Exactly once: a `recaps` row unique on (subscriber, week) — the week is the Monday that starts the
subscriber's local week — is claimed with INSERT … ON CONFLICT DO NOTHING before anything is sent,
so a zone change or a restart finds the week taken. A crash between the claim and the send leaves
the row `claimed`: that week's recap may be lost, never doubled. Like a digest, it is due from the
delivery time until LATE_WINDOW after it, and not while the subscriber is paused.

Readers' likes are shown only for papers at least MIN_READERS distinct readers liked this week, so
no one's like is ever revealed alone. A reader is a person — a Telegram account — who tapped 👍 this
week: in their private chat (a library import is not a like of this week) or as a member of a group
or channel. Each person counts once however many chats they liked it in, so no one can make up the
number alone with a few groups of their own.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from sqlalchemy import Engine, and_, case, exists, func, or_, select, update
from sqlalchemy.orm import Session
from telegram.error import ChatMigrated

from feedbot.config import Settings
from feedbot.delivery import runs, schedule
from feedbot.delivery.messages import Reply, escape, paper_item, split_items
from feedbot.delivery.pacing import Pacer
from feedbot.delivery.rows import stored_error
from feedbot.delivery.telegram_send import Blocked, send_replies
from feedbot.ranking import drift
from feedbot.ranking.groups import member_weights
from feedbot.ranking.textmodel import ModelCache, TextModel
from feedbot.store import groups, subscribers
from feedbot.store.db import chunks, insert_for, transaction
from feedbot.store.models import MemberVote, Paper, Recap, Shown, Subscriber, Vote

log = logging.getLogger(__name__)

WEEK = timedelta(days=7)
SUNDAY = 6
MIN_READERS = 3  # distinct readers behind a paper before the recap names it
POPULAR = 5  # readers' papers listed, at most
LIKED_SHOWN = 10  # own likes listed, at most (the rest: /liked)


def week_of(day: date) -> date:
    """The Monday that starts `day`'s week: the recap's key."""
    return day - timedelta(days=day.weekday())


def due_sunday(subscriber: Subscriber, now: datetime) -> date | None:
    """The local Sunday whose recap is due now (from the delivery time until LATE_WINDOW after)."""
    today = schedule.local_date(subscriber, now)
    for day in (today - timedelta(days=1), today):
        if day.weekday() == SUNDAY:
            start = schedule.send_at(subscriber, day)
            if start <= now < start + schedule.LATE_WINDOW:
                return day
    return None


def due(session: Session, now: datetime) -> list[tuple[Subscriber, date]]:
    """(subscriber, week) for everyone whose recap is due now and not yet claimed for that week.
    Only zones where it is Sunday, or Monday after one, are read, and only subscribers who want a
    recap and have none for that week: on other days this is one small query."""
    zones = session.scalars(select(Subscriber.timezone).where(Subscriber.state == "active").distinct()).all()
    weeks = {}
    for name in zones:
        today = now.astimezone(schedule.zone(name)).date()
        sunday = today if today.weekday() == SUNDAY else today - timedelta(days=1)
        if sunday.weekday() == SUNDAY:
            weeks[name] = week_of(sunday)
    if not weeks:
        return []
    week = case(weeks, value=Subscriber.timezone)
    taken = exists().where(Recap.subscriber_id == Subscriber.id, Recap.week == week)
    wanted = or_(Subscriber.recap.is_(True), and_(Subscriber.recap.is_(None), Subscriber.frequency == "weekly"))
    out = []
    for chunk in chunks(sorted(weeks), 900):
        for subscriber in session.scalars(select(Subscriber).where(
                Subscriber.state == "active", Subscriber.timezone.in_(chunk), wanted, ~taken)
                .order_by(Subscriber.id)):
            sunday = due_sunday(subscriber, now)
            if sunday is not None and not subscribers.is_paused(subscriber, sunday):
                out.append((subscriber, week_of(sunday)))
    return out


def claim(session: Session, subscriber_id: int, week: date, now: datetime) -> int | None:
    """Take (subscriber, week): the row's id, or None when that week's recap is someone else's."""
    return session.execute(
        insert_for(session)(Recap).values(subscriber_id=subscriber_id, week=week, status="claimed", claimed_at=now)
        .on_conflict_do_nothing(index_elements=["subscriber_id", "week"]).returning(Recap.id)
    ).scalar()


def finish(session: Session, recap_id: int, status: str, now: datetime, message_ids: list[int] | None = None,
           error: str | None = None) -> None:
    """Write a recap's end state; a blocked one deactivates its subscriber, as a blocked digest does."""
    session.execute(update(Recap).where(Recap.id == recap_id).values(
        status=status, finished_at=now, message_ids=",".join(map(str, message_ids or [])) or None,
        error=stored_error(error)))
    if status == "blocked":
        session.execute(update(Subscriber).where(
            Subscriber.id == select(Recap.subscriber_id).where(Recap.id == recap_id).scalar_subquery()
        ).values(state="blocked"))


# --- what a recap says ------------------------------------------------------------------------

@dataclass
class Content:
    sunday: date
    liked: list[Paper] = field(default_factory=list)  # this week's own 👍, oldest first
    imported: int = 0  # 👍 added by a library import this week (not listed)
    popular: list[tuple[Paper, int]] = field(default_factory=list)  # (paper, distinct readers)
    moved: drift.Drift = field(default_factory=lambda: drift.Drift([], []))
    paper_link: str = ""
    group: bool = False  # a group's or channel's recap: of its members' votes


    @property
    def empty(self) -> bool:
        return not (self.liked or self.imported or self.popular or self.moved.gained or self.moved.faded)


def readers_likes(session: Session, since: datetime, until: datetime) -> dict[int, int]:
    """Paper -> distinct people who liked it between `since` and `until` (see the module's rule):
    a private subscriber is known by their Telegram id, a group's member by theirs."""
    readers: dict[int, set[int]] = defaultdict(set)
    for person, pid in session.execute(select(Subscriber.telegram_id, Vote.paper_id)
                                       .join(Subscriber, Subscriber.id == Vote.subscriber_id).where(
            Subscriber.kind == "private", Vote.value == 1, Vote.origin == "tap",
            Vote.voted_at >= since, Vote.voted_at < until)):
        readers[pid].add(person)
    for person, pid in session.execute(select(MemberVote.member_id, MemberVote.paper_id).where(
            MemberVote.value == 1, MemberVote.member_id != 0,
            MemberVote.voted_at >= since, MemberVote.voted_at < until)):
        readers[pid].add(person)
    return {pid: len(who) for pid, who in readers.items()}


def likes(session: Session, subscriber: Subscriber, since: datetime | None = None,
          until: datetime | None = None) -> tuple[list[drift.Like], set[int]]:
    """The subscriber's standing 👍 voted in [since, until) (None: unbounded), oldest first, as the
    profile weighs them, and the papers among them a library import added. A group's are also its
    members' votes in that span, netted (ranking.groups)."""
    query = select(Vote.paper_id, Vote.voted_at, Vote.origin).where(Vote.subscriber_id == subscriber.id,
                                                                    Vote.value == 1)
    members = select(MemberVote.paper_id, MemberVote.value, MemberVote.voted_at).where(
        MemberVote.subscriber_id == subscriber.id)
    if since is not None:
        query, members = query.where(Vote.voted_at >= since), members.where(MemberVote.voted_at >= since)
    if until is not None:
        query, members = query.where(Vote.voted_at < until), members.where(MemberVote.voted_at < until)
    rows = session.execute(query).all()
    out = [drift.Like(pid, at) for pid, at, _ in rows]
    imported = {pid for pid, _, origin in rows if origin == "import"}
    if subscriber.kind != "private":
        votes = session.execute(members).all()
        latest: dict[int, datetime] = {}
        for pid, _, at in votes:
            latest[pid] = max(latest.get(pid, at), at)
        own = {like.paper_id for like in out}
        out += [drift.Like(pid, latest[pid], weight) for pid, weight in
                member_weights((pid, value) for pid, value, _ in votes).items() if weight > 0 and pid not in own]
    return sorted(out, key=lambda like: (drift.utc(like.at), like.paper_id)), imported


def build(session: Session, model: TextModel | None, subscriber: Subscriber, now: datetime, settings: Settings,
          popular: dict[int, int]) -> Content:
    """The recap for `subscriber` now; `popular` is `readers_likes` of the week (shared by everyone)."""
    since = now - WEEK
    sunday = due_sunday(subscriber, now) or schedule.local_date(subscriber, now)
    content = Content(sunday, paper_link=settings.paper_link, group=subscriber.kind != "private")
    week_likes, imported = likes(session, subscriber, since, now)
    content.imported = len(imported)
    liked_ids = [like.paper_id for like in week_likes if like.paper_id not in imported]
    if content.group:  # listed as /liked lists them: more 👍 than 👎 (the profile weighs 👎 less)
        on_balance = set(session.scalars(
            select(MemberVote.paper_id).where(MemberVote.subscriber_id == subscriber.id,
                                              MemberVote.voted_at >= since, MemberVote.voted_at < now)
            .group_by(MemberVote.paper_id).having(func.sum(MemberVote.value) > 0)))
        liked_ids = [pid for pid in liked_ids if pid in on_balance]
    papers = {p.id: p for chunk in chunks(liked_ids, 900)
              for p in session.scalars(select(Paper).where(Paper.id.in_(chunk)))}
    content.liked = [papers[pid] for pid in liked_ids if pid in papers]
    wanted = sorted((pid for pid, n in popular.items() if n >= MIN_READERS), key=lambda pid: (-popular[pid], pid))
    if wanted:
        seen = exists().where(Shown.subscriber_id == subscriber.id, Shown.paper_id == Paper.id)
        voted = exists().where(Vote.subscriber_id == subscriber.id, Vote.paper_id == Paper.id)
        # A group's members' votes; or a person's own, cast as a member of some group (they saw it there).
        voter = MemberVote.subscriber_id == subscriber.id if content.group else \
            MemberVote.member_id == subscriber.telegram_id
        member_voted = exists().where(voter, MemberVote.paper_id == Paper.id)
        for chunk in chunks(wanted, 900):
            found = {p.id: p for p in session.scalars(select(Paper).where(
                Paper.id.in_(chunk), ~seen, ~voted, ~member_voted))}
            content.popular += [(found[pid], popular[pid]) for pid in chunk if pid in found]
            if len(content.popular) >= POPULAR:
                break
        content.popular = content.popular[:POPULAR]
    if model is not None:
        before, _ = likes(session, subscriber, until=since)
        current, _ = likes(session, subscriber, until=now)
        content.moved = drift.drift(model, session, before, current, since, now, settings.vote_half_life_days)
    return content


def render(content: Content) -> list[Reply]:
    """The recap as messages (one unless it is very long)."""
    you, your = ("this chat", "this chat's") if content.group else ("you", "your")
    header = f"<b>🗓 feedbot · {your} week to {content.sunday:%a %d %b}</b>"
    items: list[tuple[str, list]] = []
    if content.liked:
        lines = [paper_item(f"{n}.", paper, content.paper_link, byline=False)
                 for n, paper in enumerate(content.liked[:LIKED_SHOWN], 1)]
        more = len(content.liked) - LIKED_SHOWN
        items.append((f"<b>{you.capitalize()} liked</b>\n" + "\n".join(lines)
                      + (f"\n…and {more} more: /liked" if more > 0 else ""), []))
    else:
        items.append((f"{you.capitalize()} liked no new paper this week.", []))
    if content.imported:
        items.append((f"{your.capitalize()} library import added {content.imported} 👍 this week.", []))
    if content.popular:
        lines = [paper_item(f"{n}.", paper, content.paper_link, byline=False) + f"\n<i>liked by {readers} readers</i>"
                 for n, (paper, readers) in enumerate(content.popular, 1)]
        missed = "not shown here" if content.group else "you were not shown"
        items.append((f"<b>Readers' favourites {missed}</b>\n" + "\n".join(lines), []))
    if content.moved.gained or content.moved.faded:
        words = []
        if content.moved.gained:
            words.append("more " + ", ".join(f"“{escape(t)}”" for t in content.moved.gained))
        if content.moved.faded:
            words.append("less " + ", ".join(f"“{escape(t)}”" for t in content.moved.faded))
        items.append((f"<b>How {your} profile moved</b>\n" + "; ".join(words) + ".", []))
    items.append(("<i>/recap off stops these.</i>", []))
    return split_items(header, items)


# --- the weekly job ---------------------------------------------------------------------------

@dataclass
class Claimed:
    recap_id: int
    subscriber_id: int
    chat_id: int
    replies: list[Reply]


def plan(engine: Engine, models: ModelCache, now: datetime,
         trouble: runs.Trouble) -> tuple[list[tuple[Subscriber, date]], TextModel | None, dict[int, int]]:
    """Who is due now, the text model (None: no drift said) and the week's readers' likes."""
    with Session(engine) as session:
        wanted = due(session, now)
    if not wanted:
        return [], None, {}
    model = None
    with trouble.step("loading the text model"), Session(engine) as session:
        model = models.get(session)
    with Session(engine) as session:
        return wanted, model, readers_likes(session, now - WEEK, now)


def claim_and_build(engine: Engine, model: TextModel | None, settings: Settings, subscriber: Subscriber,
                    week: date, now: datetime, popular: dict[int, int], trouble: runs.Trouble) -> Claimed | str:
    """Claim one recap and build it: what to send, or why nothing ("taken", "empty", "failed")."""
    with transaction(engine) as session:
        recap_id = claim(session, subscriber.id, week, now)
    if recap_id is None:
        return "taken"
    try:
        with Session(engine) as session:
            content = build(session, model, session.merge(subscriber, load=False), now, settings, popular)
            replies = [] if content.empty else render(content)
    except Exception as exc:  # noqa: BLE001 - one recap's failure never stops the others
        trouble.add(f"building recap {recap_id}", exc)
        with transaction(engine) as session:
            finish(session, recap_id, "failed", now, error=f"{type(exc).__name__}: {exc}")
        return "failed"
    if not replies:
        with transaction(engine) as session:
            finish(session, recap_id, "empty", now)
        return "empty"
    return Claimed(recap_id, subscriber.id, subscriber.chat_id, replies)


async def sweep(engine: Engine, settings: Settings, bot, models: ModelCache, clock: Callable[[], datetime],
                pacer: Pacer, stopping: asyncio.Event) -> Counter:
    """The scheduled job: claim, build and send each recap due now in turn (so a stop leaves none
    claimed unsent); the run is recorded for `feedbot status`."""
    trouble, counts = runs.Trouble(), Counter()
    wanted, model, popular = [], None, {}
    with trouble.step("planning recaps"):
        wanted, model, popular = await asyncio.to_thread(plan, engine, models, clock(), trouble)
    for subscriber, week in wanted:
        if stopping.is_set():
            break
        item = "failed"
        with trouble.step(f"claiming the recap of subscriber {subscriber.id}"):
            item = await asyncio.to_thread(claim_and_build, engine, model, settings, subscriber, week, clock(),
                                           popular, trouble)
        if not isinstance(item, Claimed):
            if item != "taken":  # another process has it
                counts[item] += 1
            continue
        status, ids, error = "sent", [], None
        try:
            await pacer.wait()
            ids = await _send(engine, bot, item)
        except Blocked as exc:
            status, error = "blocked", str(exc)
        except Exception as exc:  # noqa: BLE001 - recorded; the row stays taken, never re-sent
            trouble.add(f"sending recap {item.recap_id}", exc)
            status, error = "failed", f"{type(exc).__name__}: {exc}"
        counts[status] += 1
        with trouble.step(f"recording recap {item.recap_id}"):
            await asyncio.to_thread(_finish, engine, item.recap_id, status, clock(), ids, error)
        log.info("recap id=%s subscriber=%s status=%s messages=%s", item.recap_id, item.subscriber_id, status, ids)
    summary = runs.counts(counts, "nothing due")
    await asyncio.to_thread(runs.record, engine, "recaps", clock(), summary, trouble.error)
    return counts


async def _send(engine: Engine, bot, item: Claimed) -> list[int]:
    """Send the recap's messages. A group that became a supergroup refuses a message without
    showing it: that message goes again to the new chat id, which the subscriber moves to."""
    ids, chat_id = [], item.chat_id
    for reply in item.replies:
        try:
            ids += await send_replies(bot, chat_id, [reply])
        except ChatMigrated as exc:
            await asyncio.to_thread(_moved, engine, item.subscriber_id, exc.new_chat_id)
            chat_id = exc.new_chat_id
            ids += await send_replies(bot, chat_id, [reply])
    return ids


def _moved(engine: Engine, subscriber_id: int, chat_id: int) -> None:
    with transaction(engine) as session:
        subscriber = session.get(Subscriber, subscriber_id)
        if subscriber is not None and subscriber.kind != "private":
            groups.migrate(session, subscriber.telegram_id, chat_id)


def _finish(engine: Engine, recap_id: int, status: str, now: datetime, ids: list[int], error: str | None) -> None:
    with transaction(engine) as session:
        finish(session, recap_id, status, now, ids, error)


def status_lines(session: Session, now: datetime) -> Iterator[str]:
    """For `feedbot status`: the recaps of the last 7 days by outcome."""
    states = Counter(session.scalars(select(Recap.status).where(Recap.claimed_at > now - WEEK)))
    yield "recaps this week: " + runs.counts(states, "none")
