"""Subscriber service functions: what a subscriber can do, whatever the front end (Telegram,
the console chat, the CLI, tests). Each takes a session and leaves committing to the caller's
transaction, so a vote is stored before anyone acknowledges it.
"""

from __future__ import annotations

import difflib
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from feedbot.clock import parse_hhmm, utcnow
from feedbot.numbers import whole_number
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
    VoteChange,
    VoteCounter,
)
from feedbot.store.textmatch import could_match

MAX_INTERESTS = 10
MAX_INTEREST_CHARS = 200
MAX_MUTES = 50
FREQUENCIES = ("daily", "weekdays", "weekly")
_OFFSET = re.compile(r"^(?:UTC|GMT)?\s*([+-])([0-9]{1,2})(?::?([0-9]{2}))?$", re.IGNORECASE)


class UserError(ValueError):
    """A request the subscriber can fix; the message is shown to them as is."""


def get(session: Session, telegram_id: int) -> Subscriber | None:
    return session.scalar(select(Subscriber).where(Subscriber.telegram_id == telegram_id))


def lock(session: Session, subscriber: Subscriber) -> Subscriber | None:
    """The subscriber's row, re-read and locked for the transaction (one press at a time per
    subscriber); None when a transaction that held the lock before erased it (/delete)."""
    return session.scalar(select(Subscriber).where(Subscriber.id == subscriber.id).with_for_update()
                          .execution_options(populate_existing=True))


def subscribe(session: Session, telegram_id: int, chat_id: int, name: str = "",
              kind: str = "private") -> tuple[Subscriber, bool]:
    """Create the subscriber, or reactivate a stopped/blocked one (nothing of theirs is wiped).
    A group or channel (`kind`) is subscribed under its chat id."""
    subscriber = get(session, telegram_id)
    if subscriber is None:
        insert = insert_for(session)
        session.execute(insert(Subscriber).values(
            telegram_id=telegram_id, chat_id=chat_id, name=name[:255], state="active", timezone="UTC",
            send_time="08:00", digest_size=5, frequency="daily", created_at=utcnow(), kind=kind,
        ).on_conflict_do_nothing(index_elements=["telegram_id"]))
        return get(session, telegram_id), True
    subscriber.state, subscriber.chat_id = "active", chat_id
    if name:
        subscriber.name = name[:255]
    return subscriber, False


def tag(subscriber: Subscriber) -> str:
    """A short name for this subscription, carried by its settings and /delete buttons: after
    /delete and a new /start (which may reuse the row id), a button shown before no longer matches."""
    created = subscriber.created_at
    if created.tzinfo is not None:
        created = created.astimezone(UTC).replace(tzinfo=None)
    return hashlib.blake2b(f"{subscriber.id} {created.isoformat()}".encode(), digest_size=6).hexdigest()


# --- interests and mutes ---------------------------------------------------------------------

def interests(session: Session, subscriber: Subscriber) -> list[str]:
    return list(session.scalars(
        select(Interest.text).where(Interest.subscriber_id == subscriber.id).order_by(Interest.id)
    ))


def split_interests(text: str) -> list[str]:
    """`diffusion models, robotics; protein folding` → three interests (commas, semicolons, lines)."""
    parts = [" ".join(p.split()) for p in re.split(r"[,;\n]+", text)]
    return [p for p in parts if p]


def add_interests(session: Session, subscriber: Subscriber, text: str,
                  matches: Callable[[str], bool] = could_match) -> list[str]:
    """Add each comma-separated interest; returns the ones that were new.

    An interest that `matches` says no paper could ever be found by (only stop words or emoji,
    or words the corpus never used) is refused with the others, before it becomes an empty profile.
    """
    wanted = split_interests(text)
    if not wanted:
        raise UserError("Tell me a topic, e.g. /interests add diffusion models, robot learning")
    too_long = [w for w in wanted if len(w) > MAX_INTEREST_CHARS]
    if too_long:
        raise UserError(f"An interest can be at most {MAX_INTEREST_CHARS} characters.")
    unknown = [w for w in wanted if not matches(w)]
    if unknown:
        listed = ", ".join(f"“{w[:60]}”" for w in unknown)
        raise UserError(f"No paper I know uses the words of {listed}, so it would never match anything. "
                        "Try the words papers use, e.g. a method, a task or a field (nothing was added).")
    have = interests(session, subscriber)
    folded = {h.casefold() for h in have}
    added = []
    for item in wanted:
        if item.casefold() not in folded:
            folded.add(item.casefold())
            added.append(item)
    if len(have) + len(added) > MAX_INTERESTS:
        raise UserError(f"You can keep at most {MAX_INTERESTS} interests; remove one first.")
    session.add_all(Interest(subscriber_id=subscriber.id, text=item) for item in added)
    session.flush()
    return added


def remove_interest(session: Session, subscriber: Subscriber, text: str) -> str:
    """Remove an interest by its text (case-insensitive) or its number in the list."""
    have = session.scalars(
        select(Interest).where(Interest.subscriber_id == subscriber.id).order_by(Interest.id)
    ).all()
    wanted = " ".join(text.split())
    number = whole_number(wanted, 1, len(have))
    if number is not None:
        match = have[number - 1]
    else:
        match = next((i for i in have if i.text.casefold() == wanted.casefold()), None)
    if match is None:
        raise UserError(f"“{wanted}” is not one of your interests.")
    session.delete(match)
    session.flush()
    return match.text


def clear_interests(session: Session, subscriber: Subscriber) -> int:
    return session.execute(delete(Interest).where(Interest.subscriber_id == subscriber.id)).rowcount


def mutes(session: Session, subscriber: Subscriber) -> list[str]:
    return list(session.scalars(select(Mute.word).where(Mute.subscriber_id == subscriber.id).order_by(Mute.word)))


def mute(session: Session, subscriber: Subscriber, word: str) -> str:
    word = " ".join(word.split()).casefold()
    if not word or len(word) > 100:
        raise UserError("Tell me a word or phrase (up to 100 characters), e.g. /mute quantum")
    have = mutes(session, subscriber)
    if word in have:
        return word
    if len(have) >= MAX_MUTES:
        raise UserError(f"You can mute at most {MAX_MUTES} words.")
    session.add(Mute(subscriber_id=subscriber.id, word=word))
    session.flush()
    return word


def unmute(session: Session, subscriber: Subscriber, word: str) -> str:
    word = " ".join(word.split()).casefold()
    removed = session.execute(
        delete(Mute).where(Mute.subscriber_id == subscriber.id, Mute.word == word)
    ).rowcount
    if not removed:
        raise UserError(f"“{word}” is not muted.")
    return word


# --- schedule settings ---------------------------------------------------------------------

def set_time(subscriber: Subscriber, text: str) -> str:
    try:
        value = parse_hhmm(text)
    except ValueError:
        raise UserError("Send a time like /time 07:30 (24-hour clock, your local time).") from None
    subscriber.send_time = value.strftime("%H:%M")
    return subscriber.send_time


@lru_cache(maxsize=1)
def _zone_names() -> dict[str, str]:
    return {name.casefold(): name for name in available_timezones()}


def parse_timezone(text: str) -> str:
    """A canonical zone name: an IANA name (any case) or a fixed offset such as `UTC+5:30`."""
    raw = text.strip()
    if raw.upper() in ("UTC", "GMT", "Z"):
        return "UTC"
    offset = _OFFSET.match(raw)
    if offset:
        sign, hours, minutes = offset.group(1), int(offset.group(2)), int(offset.group(3) or 0)
        if hours > 14 or minutes >= 60:
            raise UserError("An offset must be between UTC-14:00 and UTC+14:00.")
        return f"UTC{sign}{hours:02d}:{minutes:02d}"
    names = _zone_names()
    key = raw.replace(" ", "_").casefold()
    if key in names:
        return names[key]
    cities = {name.rsplit("/", 1)[-1].casefold(): name for name in names.values() if "/" in name}
    if key in cities:
        return cities[key]
    close = difflib.get_close_matches(key, list(names) + list(cities), n=3, cutoff=0.6)
    hints = list(dict.fromkeys(names.get(c) or cities[c] for c in close))  # closest first
    hint = (f" Did you mean {', '.join(hints)}?" if hints
            else " Use a name like Europe/Berlin or an offset like UTC+5:30.")
    raise UserError(f"I don't know the time zone “{raw[:64]}”.{hint}")


def zone(name: str) -> tzinfo:
    """The tzinfo for a stored zone name."""
    if name.startswith("UTC") and len(name) > 3:
        sign = 1 if name[3] == "+" else -1
        hours, minutes = int(name[4:6]), int(name[7:9])
        return timezone(sign * timedelta(hours=hours, minutes=minutes), name)
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return UTC


def set_timezone(subscriber: Subscriber, text: str) -> str:
    subscriber.timezone = parse_timezone(text)
    return subscriber.timezone


def set_size(subscriber: Subscriber, text: str) -> int:
    size = whole_number(text, 1, 20)
    if size is None:
        raise UserError("Send a number of picks from 1 to 20, e.g. /size 5")
    subscriber.digest_size = size
    return subscriber.digest_size


def set_frequency(subscriber: Subscriber, text: str) -> str:
    value = text.strip().casefold()
    if value not in FREQUENCIES:
        raise UserError("Choose one of: /frequency daily, /frequency weekdays, /frequency weekly")
    subscriber.frequency = value
    return value


def recap_on(subscriber: Subscriber) -> bool:
    """Whether the Sunday recap comes: as set by /recap, else only with weekly digests."""
    return subscriber.frequency == "weekly" if subscriber.recap is None else subscriber.recap


def set_recap(subscriber: Subscriber, text: str) -> bool:
    value = text.strip().casefold()
    if value not in ("on", "off"):
        raise UserError("Send /recap on or /recap off (/recap alone says which it is).")
    subscriber.recap = value == "on"
    return subscriber.recap


def pause(subscriber: Subscriber, days: str, today: date) -> date | None:
    """Pause for N days (vacation mode: resumes by itself), or until /resume without N."""
    if days.strip():
        count = whole_number(days, 1, 365)
        if count is None:
            raise UserError("Send a number of days from 1 to 365, e.g. /pause 14, or /pause alone.")
        subscriber.paused_until = today + timedelta(days=count)
    else:
        subscriber.paused_until = date.max
    return subscriber.paused_until


def resume(subscriber: Subscriber) -> None:
    subscriber.paused_until = None


def is_paused(subscriber: Subscriber, today: date) -> bool:
    return subscriber.paused_until is not None and today < subscriber.paused_until


def stop(subscriber: Subscriber) -> None:
    subscriber.state = "stopped"


def delete_everything(session: Session, subscriber: Subscriber) -> None:
    """Erase every row about the subscriber, in every table (children first, for any backend)."""
    for table in (Shown, Vote, MemberVote, Import, Delivery, Recap, Interest, Mute):
        session.execute(delete(table).where(table.subscriber_id == subscriber.id))
    session.execute(delete(Subscriber).where(Subscriber.id == subscriber.id))
    votes_changed(session, subscriber.id)


# --- votes ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class VoteResult:
    paper_id: int
    title: str
    value: int  # +1, -1, or 0 when the vote was cleared


def was_shown(session: Session, subscriber: Subscriber, paper_id: int) -> bool:
    return session.scalar(
        select(func.count()).select_from(Shown)
        .where(Shown.subscriber_id == subscriber.id, Shown.paper_id == paper_id)
    ) > 0


def vote(session: Session, subscriber: Subscriber, paper_id: int, value: int,
         now: datetime | None = None) -> VoteResult:
    """Store 👍 (+1) or 👎 (-1); the same vote again clears it; 0 clears. Only for papers shown."""
    if value not in (-1, 0, 1):
        raise UserError("That button is not valid.")
    title = session.scalar(select(Paper.title).where(Paper.id == paper_id))
    if title is None or not was_shown(session, subscriber, paper_id):
        raise UserError("That paper was not shown to you, so I can't record a vote for it.")
    # Two taps at once must toggle one after the other: under READ COMMITTED both would read the old
    # vote and both clear it. The subscriber's row lock orders them (SQLite's write lock already does).
    session.execute(select(Subscriber.id).where(Subscriber.id == subscriber.id).with_for_update())
    current = session.get(Vote, (subscriber.id, paper_id), populate_existing=True)
    if current is not None and (value == 0 or current.value == value):
        session.delete(current)
        session.flush()
        votes_changed(session, subscriber.id)
        return VoteResult(paper_id, title, 0)
    if value == 0:
        return VoteResult(paper_id, title, 0)
    insert = insert_for(session)
    when = now or utcnow()
    # A tap on an imported paper makes the vote the subscriber's own: /import undo leaves it.
    session.execute(
        insert(Vote).values(subscriber_id=subscriber.id, paper_id=paper_id, value=value, voted_at=when)
        .on_conflict_do_update(index_elements=["subscriber_id", "paper_id"],
                               set_={"value": value, "voted_at": when, "origin": "tap", "import_id": None})
    )
    votes_changed(session, subscriber.id)
    return VoteResult(paper_id, title, value)


def votes_changed(session: Session, *subscriber_ids: int) -> None:
    """Count a change of the votes of `subscriber_ids`; call it in the transaction that makes the
    change. It comes last in a vote's transaction, so the counter's row lock is held only until the
    commit that follows; changes therefore commit in counter order, and a reader that saw the
    counter at N has seen every change numbered up to N."""
    seq = session.execute(update(VoteCounter).where(VoteCounter.id == 1)
                          .values(changes=VoteCounter.changes + 1).returning(VoteCounter.changes)).scalar_one()
    rows = [{"voter_id": sid, "seq": seq} for sid in sorted(set(subscriber_ids))]
    if rows:  # only the latest change of each subscriber matters: a reader re-reads all their votes
        insert = insert_for(session)(VoteChange)
        session.execute(insert.on_conflict_do_update(index_elements=["voter_id"], set_={"seq": insert.excluded.seq}),
                        rows)


def votes_version(session: Session) -> int:
    """How many times any vote changed: the same number means the same votes."""
    return session.scalar(select(VoteCounter.changes).where(VoteCounter.id == 1)) or 0


def changed_since(session: Session, version: int) -> list[int]:
    """The subscribers whose votes changed after the counter read `version` (sorted)."""
    return list(session.scalars(select(VoteChange.voter_id).where(VoteChange.seq > version)
                                .order_by(VoteChange.voter_id)))


def votes_on(session: Session, subscriber: Subscriber, paper_ids: list[int]) -> dict[int, int]:
    if not paper_ids:
        return {}
    return dict(session.execute(
        select(Vote.paper_id, Vote.value).where(Vote.subscriber_id == subscriber.id, Vote.paper_id.in_(paper_ids))
    ).all())


def record_shown(session: Session, subscriber: Subscriber, items: list[tuple[int, float, str]], source: str,
                 now: datetime | None = None) -> None:
    """Remember papers put in front of the subscriber, as (paper id, score, reason); the unique key
    makes a repeat a no-op. Digest picks are recorded with their delivery (delivery.digests)."""
    when = now or utcnow()
    rows = [{"subscriber_id": subscriber.id, "paper_id": pid, "source": source, "position": n,
             "score": float(score), "reason": reason[:2000], "shown_at": when}
            for n, (pid, score, reason) in enumerate(items)]
    if not rows:
        return
    insert = insert_for(session)
    session.execute(insert(Shown).on_conflict_do_nothing(index_elements=["subscriber_id", "paper_id"]), rows)


def liked_papers(session: Session, subscriber: Subscriber, origin: str | None = None) -> list[Paper]:
    """Papers the subscriber 👍, newest first: all, or only by `origin` (`tap` or `import`)."""
    query = (select(Paper).join(Vote, Vote.paper_id == Paper.id)
             .where(Vote.subscriber_id == subscriber.id, Vote.value == 1))
    if origin is not None:
        query = query.where(Vote.origin == origin)
    return list(session.scalars(query.order_by(Vote.voted_at.desc(), Paper.id.desc())))


def imported_count(session: Session, subscriber: Subscriber) -> int:
    """How many of the subscriber's 👍 came from their imported library."""
    return session.scalar(select(func.count()).select_from(Vote).where(
        Vote.subscriber_id == subscriber.id, Vote.value == 1, Vote.origin == "import")) or 0
