"""The conversation: every command, reply and button, whatever carries it (Telegram, the console
chat, tests). Each call is one database transaction that commits before the caller answers, so
a vote is stored before "Saved 👍" is shown.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from feedbot.chat.bibtex import export as export_bibtex
from feedbot.chat.messages import (
    MAX_TEXT,
    Answer,
    Button,
    Reply,
    escape,
    numbered_papers,
    paper_item,
    split_items,
    vote_keyboard,
    vote_row,
)
from feedbot.clock import utcnow
from feedbot.config import Settings
from feedbot.delivery import deliveries, digests, schedule
from feedbot.numbers import whole_number
from feedbot.ranking import textmatch, textmodel
from feedbot.store import subscribers
from feedbot.store.db import transaction
from feedbot.store.models import Delivery, Paper, Shown, Subscriber, Vote
from feedbot.store.papers import links_of, paper_links, search_papers
from feedbot.store.subscribers import UserError

COMMANDS: list[tuple[str, str]] = [
    ("start", "subscribe and set up"),
    ("help", "what I can do"),
    ("digest", "today's picks now"),
    ("interests", "show or change your interests"),
    ("settings", "delivery time, size and frequency"),
    ("time", "delivery time, e.g. /time 07:30"),
    ("timezone", "your time zone, e.g. /timezone Europe/Berlin"),
    ("size", "picks per digest, 1 to 20"),
    ("frequency", "daily, weekdays or weekly"),
    ("history", "past digests and your votes"),
    ("liked", "papers you liked"),
    ("search", "find papers, e.g. /search diffusion"),
    ("export", "your liked papers as BibTeX"),
    ("mute", "never show papers with a word"),
    ("unmute", "show them again"),
    ("pause", "pause digests, e.g. /pause 14"),
    ("resume", "restart paused digests"),
    ("status", "when your next digest comes"),
    ("stop", "unsubscribe (your data is kept)"),
    ("delete", "erase all your data"),
]
BUTTON_DATA = re.compile(
    r"^(?:v:[0-9]{1,12}:[+-]|h:[0-9]{1,4}|d:(?:yes|no)"
    r"|s:(?:size:[+-]|time:[+-]|freq:(?:daily|weekdays|weekly)|pause|resume))$"
)
HISTORY_PAGE = 3
MAX_ROW_ID = 2**31 - 1  # the integer primary keys' range on PostgreSQL
NO_PAPERS_YET = digests.NO_PAPERS_YET
SEARCH_RESULTS = 5


def storable(text: str) -> str:
    """Text any database can store: without NUL (PostgreSQL refuses it) or lone surrogates."""
    return "".join(c for c in text if c != "\x00" and not "\ud800" <= c <= "\udfff")


@dataclass(frozen=True)
class User:
    telegram_id: int
    chat_id: int
    name: str = ""


class Chat:
    """One instance serves every subscriber; methods are synchronous (run them off the event loop)."""

    def __init__(self, engine: Engine, settings: Settings, clock: Callable[[], datetime] = utcnow,
                 models: textmodel.ModelCache | None = None) -> None:
        self.engine, self.settings, self.clock = engine, settings, clock
        self.models = models or textmodel.ModelCache(settings.model_dir)

    # --- entry points ------------------------------------------------------------------------

    def command(self, user: User, name: str, args: str = "") -> list[Reply]:
        name, args = storable(name).casefold().split("@", 1)[0], storable(args)
        handler = getattr(self, f"cmd_{name}", None)
        if handler is None or name not in dict(COMMANDS) | {"skip": ""}:
            return [Reply(f"I don't know /{escape(name[:40])}. Send /help to see what I can do.")]
        if name == "digest":  # ranks before it writes: no write transaction around it
            return self.digest(user)
        with transaction(self.engine) as session:
            subscriber = subscribers.get(session, user.telegram_id)
            if subscriber is None and name not in ("start", "help"):
                return [Reply("You're not subscribed yet: send /start to begin.")]
            try:
                return handler(session, user, subscriber, args.strip())
            except UserError as exc:
                return [Reply(escape(str(exc)))]

    def text(self, user: User, text: str) -> list[Reply]:
        text = storable(text)
        with transaction(self.engine) as session:
            subscriber = subscribers.get(session, user.telegram_id)
            if subscriber is None:
                return [Reply("Hi! Send /start to subscribe to daily paper picks.")]
            try:
                if subscriber.awaiting == "interests":
                    return self._onboard_interests(session, subscriber, text)
                if subscriber.awaiting == "timezone":
                    return self._onboard_timezone(session, subscriber, text)
            except UserError as exc:
                return [Reply(escape(str(exc)) + "\nOr send /skip.")]
        return [Reply("I answer commands: send /help for the list, or /search WORDS to find papers.")]

    def button(self, user: User, data: str, keyboard: list[list[Button]] | None = None) -> Answer:
        """A pressed button. Forged or stale data gets a notice and writes nothing."""
        if not BUTTON_DATA.match(data or ""):
            return Answer("That button is not valid (anymore).", alert=True)
        with transaction(self.engine) as session:
            subscriber = subscribers.get(session, user.telegram_id)
            if subscriber is None:
                return Answer("You're not subscribed: send /start first.", alert=True)
            session.refresh(subscriber, with_for_update=True)  # one press at a time per subscriber
            kind, _, rest = data.partition(":")
            try:
                if kind == "v":
                    return self._vote(session, subscriber, rest, keyboard or [])
                if kind == "h":
                    text, buttons = self._history_page(session, subscriber, int(rest))
                    return Answer("", keyboard=buttons, text=text)
                if kind == "s":
                    return self._setting(session, subscriber, rest)
                return self._delete(session, subscriber, rest == "yes")
            except UserError as exc:
                return Answer(str(exc), alert=True)

    # --- onboarding --------------------------------------------------------------------------

    def cmd_start(self, session: Session, user: User, subscriber: Subscriber | None, args: str) -> list[Reply]:
        subscriber, new = subscribers.subscribe(session, user.telegram_id, user.chat_id, storable(user.name))
        if new:
            subscriber.awaiting = "interests"
            return [Reply(
                "<b>Welcome to feedbot!</b> Every morning I send you the few new research papers you are "
                "most likely to want, and I learn from every 👍/👎 you tap.\n\n"
                "What are you interested in? Send a few topics separated by commas, e.g. "
                "<i>diffusion models, robot learning, protein folding</i> — or /skip."
            )]
        if subscriber.awaiting == "interests":
            return [Reply("Welcome back! What are you interested in? Send topics separated by commas, or /skip.")]
        return [Reply(f"Welcome back, your digest is on. {self._next_line(session, subscriber)}\n"
                      "Your interests and votes are as you left them. /help lists everything.")]

    def cmd_skip(self, session: Session, user: User, subscriber: Subscriber, args: str) -> list[Reply]:
        if subscriber.awaiting == "interests":
            return self._after_interests(session, subscriber, "No interests for now: your votes will teach me.")
        if subscriber.awaiting == "timezone":
            subscriber.awaiting = None
            return [Reply(self._ready_text(session, subscriber))]
        return [Reply("Nothing to skip. Send /help to see what I can do.")]

    def _onboard_interests(self, session: Session, subscriber: Subscriber, text: str) -> list[Reply]:
        added = subscribers.add_interests(session, subscriber, text, self._interest_matcher(session))
        listed = ", ".join(f"“{escape(a)}”" for a in added) or "nothing new"
        return self._after_interests(session, subscriber, f"Noted: {listed}.")

    def _after_interests(self, session: Session, subscriber: Subscriber, note: str) -> list[Reply]:
        subscriber.awaiting = "timezone"
        replies = [Reply(note)]
        model = self.models.get(session)
        if model is None:
            replies.append(Reply(f"There are {NO_PAPERS_YET}, so there is nothing to rate yet."))
        else:
            replies += digests.starter(session, model, subscriber, self.clock(), self.settings)
        replies.append(Reply(
            f"Your digest comes every day at <b>{subscriber.send_time}</b>. Which time zone are you in? "
            "Send a name like <i>Europe/Berlin</i> or an offset like <i>UTC+5:30</i> — or /skip for UTC."
        ))
        return replies

    def _onboard_timezone(self, session: Session, subscriber: Subscriber, text: str) -> list[Reply]:
        subscribers.set_timezone(subscriber, text)
        subscriber.awaiting = None
        return [Reply(self._ready_text(session, subscriber))]

    def _ready_text(self, session: Session, subscriber: Subscriber) -> str:
        return (f"All set! {self._next_line(session, subscriber)}\n"
                "Change the time with /time, the size with /size, or everything with /settings. "
                "Want papers right now? /digest")

    # --- commands ----------------------------------------------------------------------------

    def cmd_help(self, session: Session, user: User, subscriber: Subscriber | None, args: str) -> list[Reply]:
        lines = "\n".join(f"/{name} — {escape(text)}" for name, text in COMMANDS)
        return [Reply("<b>feedbot</b> sends you the new papers you're most likely to want, and learns "
                      f"from your 👍/👎.\n\n{lines}")]

    def cmd_digest(self, session: Session, user: User, subscriber: Subscriber, args: str) -> list[Reply]:
        return self.digest(user)

    def digest(self, user: User) -> list[Reply]:
        """Today's picks now. Ranked in a read-only session, then claimed and recorded in a short
        write: the first /digest of a day becomes that day's delivery (the schedule sends no
        second), its replies carry the delivery id so the sender records each part; later ones
        are extra picks. Either way only papers the database accepts as new are shown."""
        now = self.clock()
        with Session(self.engine, expire_on_commit=False) as session:
            subscriber = subscribers.get(session, user.telegram_id)
            if subscriber is None:
                return [Reply("You're not subscribed yet: send /start to begin.")]
            day = schedule.local_date(subscriber, now)
            built = digests.build(session, self.models.get(session), [subscriber], now, self.settings,
                                  days={subscriber.id: day})
            session.expunge(subscriber)
        [(_, digest, delivery_id)] = deliveries.claim_and_record(self.engine, [subscriber], built, now,
                                                                  source="command")
        replies = digests.render(digest)
        for reply in replies:
            reply.delivery = delivery_id
        return replies

    def cmd_interests(self, session: Session, user: User, subscriber: Subscriber, args: str) -> list[Reply]:
        action, _, rest = args.partition(" ")
        action = action.casefold()
        if action == "add":
            added = subscribers.add_interests(session, subscriber, rest, self._interest_matcher(session))
            note = f"Added {', '.join(f'“{escape(a)}”' for a in added)}." if added else "You already have those."
        elif action == "remove":
            if not rest.strip():
                raise UserError("Say which one, e.g. /interests remove robotics (or its number).")
            note = f"Removed “{escape(subscribers.remove_interest(session, subscriber, rest))}”."
        elif action == "clear":
            note = f"Cleared {subscribers.clear_interests(session, subscriber)} interests."
        elif action:
            raise UserError("Use /interests, /interests add TOPICS, /interests remove TOPIC or /interests clear.")
        else:
            note = ""
        have = subscribers.interests(session, subscriber)
        listing = "\n".join(f"{n}. {escape(t)}" for n, t in enumerate(have, 1)) or "none yet"
        return [Reply(f"{note}\n\n<b>Your interests</b>\n{listing}\n\n"
                      "Add with /interests add TOPICS, remove with /interests remove TOPIC.".strip())]

    def cmd_time(self, session: Session, user: User, subscriber: Subscriber, args: str) -> list[Reply]:
        if not args:
            raise UserError(f"Your digest comes at {subscriber.send_time}. Change it with e.g. /time 07:30.")
        subscribers.set_time(subscriber, args)
        return [Reply(f"Delivery time set to <b>{subscriber.send_time}</b>. {self._next_line(session, subscriber)}")]

    def cmd_timezone(self, session: Session, user: User, subscriber: Subscriber, args: str) -> list[Reply]:
        if not args:
            raise UserError(f"Your time zone is {subscriber.timezone}. Change it with e.g. /timezone Asia/Tokyo.")
        subscribers.set_timezone(subscriber, args)
        return [Reply(f"Time zone set to <b>{escape(subscriber.timezone)}</b>. {self._next_line(session, subscriber)}")]

    def cmd_size(self, session: Session, user: User, subscriber: Subscriber, args: str) -> list[Reply]:
        subscribers.set_size(subscriber, args)
        return [Reply(f"Your digests will have <b>{subscriber.digest_size}</b> picks.")]

    def cmd_frequency(self, session: Session, user: User, subscriber: Subscriber, args: str) -> list[Reply]:
        subscribers.set_frequency(subscriber, args)
        return [Reply(f"Digests will come <b>{subscriber.frequency}</b>. {self._next_line(session, subscriber)}")]

    def cmd_settings(self, session: Session, user: User, subscriber: Subscriber, args: str) -> list[Reply]:
        text, keyboard = self._settings_view(session, subscriber)
        return [Reply(text, keyboard)]

    def cmd_history(self, session: Session, user: User, subscriber: Subscriber, args: str) -> list[Reply]:
        text, keyboard = self._history_page(session, subscriber, 0)
        return [Reply(text, keyboard)]

    def cmd_liked(self, session: Session, user: User, subscriber: Subscriber, args: str) -> list[Reply]:
        liked = subscribers.liked_papers(session, subscriber)
        if not liked:
            return [Reply("You haven't liked any papers yet. Tap 👍 in a digest, or find papers with /search.")]
        items = [(self._paper_line(n, p), []) for n, p in enumerate(liked[:30], 1)]
        if len(liked) > 30:
            items.append((f"…and {len(liked) - 30} more: /export gives them all.", []))
        return split_items(f"<b>Papers you liked</b> ({len(liked)})", items, separator="\n")

    def _paper_line(self, number: int, paper: Paper, **shown) -> str:
        return paper_item(f"{number}.", paper.title, links_of(paper, self.settings.paper_link), title_chars=300,
                          **shown)

    def cmd_search(self, session: Session, user: User, subscriber: Subscriber, args: str) -> list[Reply]:
        if not args:
            raise UserError("Tell me what to look for, e.g. /search graph neural networks")
        found = search_papers(session, args[:200], SEARCH_RESULTS)
        if not found:
            return [Reply(f"No papers mention all of: {escape(args[:200])}")]
        subscribers.record_shown(session, subscriber, [(p.id, 0.0, "search") for p in found], "search",
                                 now=self.clock())
        votes = subscribers.votes_on(session, subscriber, [p.id for p in found])
        items = [(self._paper_line(n, p, listed=p.first_listed, abstract=p.abstract, abstract_chars=200),
                  vote_row(n, p.id, votes.get(p.id, 0))) for n, p in enumerate(found, 1)]
        return split_items(f"<b>Papers matching “{escape(args[:200])}”</b>", items)

    def cmd_export(self, session: Session, user: User, subscriber: Subscriber, args: str) -> list[Reply]:
        liked = subscribers.liked_papers(session, subscriber)
        if not liked:
            return [Reply("You haven't liked any papers yet, so there is nothing to export.")]
        items = [(self._paper_line(n, p), []) for n, p in enumerate(liked[:50], 1)]
        if len(liked) > 50:
            items.append((f"…and {len(liked) - 50} more in the file.", []))
        replies = split_items(f"<b>Your {len(liked)} liked papers</b> (BibTeX attached)", items, separator="\n")
        replies[-1].document = ("feedbot-liked.bib", bibtex(liked).encode())
        return replies

    def cmd_mute(self, session: Session, user: User, subscriber: Subscriber, args: str) -> list[Reply]:
        if not args:
            muted = subscribers.mutes(session, subscriber)
            return [Reply("Muted: " + (", ".join(escape(m) for m in muted) or "nothing") +
                          ".\nMute a word with /mute WORD.")]
        word = subscribers.mute(session, subscriber, args)
        return [Reply(f"Papers mentioning “{escape(word)}” won't be picked for you. /unmute {escape(word)} undoes it.")]

    def cmd_unmute(self, session: Session, user: User, subscriber: Subscriber, args: str) -> list[Reply]:
        if not args:
            raise UserError("Say which word, e.g. /unmute quantum")
        return [Reply(f"“{escape(subscribers.unmute(session, subscriber, args))}” is no longer muted.")]

    def cmd_pause(self, session: Session, user: User, subscriber: Subscriber, args: str) -> list[Reply]:
        until = subscribers.pause(subscriber, args, schedule.local_date(subscriber, self.clock()))
        when = ("until you send /resume" if until == until.max
                else f"until {until:%a %d %b} (then they resume by themselves)")
        return [Reply(f"Digests paused {when}.")]

    def cmd_resume(self, session: Session, user: User, subscriber: Subscriber, args: str) -> list[Reply]:
        subscribers.resume(subscriber)
        return [Reply(f"Digests resumed. {self._next_line(session, subscriber)}")]

    def cmd_status(self, session: Session, user: User, subscriber: Subscriber, args: str) -> list[Reply]:
        interests = subscribers.interests(session, subscriber)
        votes = session.scalars(select(Vote.value).where(Vote.subscriber_id == subscriber.id)).all()
        return [Reply(
            f"{self._next_line(session, subscriber)}\n"
            f"Time {subscriber.send_time} ({escape(subscriber.timezone)}), {subscriber.digest_size} picks, "
            f"{subscriber.frequency}.\n"
            f"{len(interests)} interests, {sum(v > 0 for v in votes)} 👍 and {sum(v < 0 for v in votes)} 👎 so far."
        )]

    def cmd_stop(self, session: Session, user: User, subscriber: Subscriber, args: str) -> list[Reply]:
        subscribers.stop(subscriber)
        return [Reply("You're unsubscribed: no more digests. Your votes and settings are kept, so /start "
                      "picks up where you left off. /delete erases everything.")]

    def cmd_delete(self, session: Session, user: User, subscriber: Subscriber, args: str) -> list[Reply]:
        return [Reply("This erases your subscription, interests, votes and history for good. Sure?",
                      [[Button("Yes, delete everything", "d:yes"), Button("No, keep it", "d:no")]])]

    # --- buttons -----------------------------------------------------------------------------

    def _vote(self, session: Session, subscriber: Subscriber, rest: str, keyboard: list[list[Button]]) -> Answer:
        paper, _, sign = rest.partition(":")
        paper_id = whole_number(paper, 1, MAX_ROW_ID)  # ids past the column's range were never shown
        if paper_id is None:
            raise UserError("That paper was not shown to you, so I can't record a vote for it.")
        result = subscribers.vote(session, subscriber, paper_id, 1 if sign == "+" else -1, self.clock())
        session.flush()
        numbered = numbered_papers(keyboard) or [(1, result.paper_id)]
        votes = subscribers.votes_on(session, subscriber, [pid for _, pid in numbered])
        notice = {1: "Saved 👍", -1: "Saved 👎", 0: "Vote cleared"}[result.value]
        return Answer(notice, keyboard=vote_keyboard(numbered, votes))

    def _delete(self, session: Session, subscriber: Subscriber, confirmed: bool) -> Answer:
        if not confirmed:
            return Answer("Kept.", keyboard=[], text="Nothing was deleted.")
        subscribers.delete_everything(session, subscriber)
        return Answer("Deleted.", keyboard=[],
                      text="All your data is erased. Send /start if you ever want to come back.")

    def _setting(self, session: Session, subscriber: Subscriber, rest: str) -> Answer:
        name, _, value = rest.partition(":")
        if name == "size":
            subscriber.digest_size = min(20, max(1, subscriber.digest_size + (1 if value == "+" else -1)))
        elif name == "time":
            hours, minutes = map(int, subscriber.send_time.split(":"))
            hours = (hours + (1 if value == "+" else -1)) % 24
            subscriber.send_time = f"{hours:02d}:{minutes:02d}"
        elif name == "freq":
            subscribers.set_frequency(subscriber, value)
        elif name == "pause":
            subscribers.pause(subscriber, "7", schedule.local_date(subscriber, self.clock()))
        else:
            subscribers.resume(subscriber)
        session.flush()
        text, keyboard = self._settings_view(session, subscriber)
        return Answer("Saved", keyboard=keyboard, text=text)

    def _settings_view(self, session: Session, subscriber: Subscriber) -> tuple[str, list[list[Button]]]:
        paused = subscribers.is_paused(subscriber, schedule.local_date(subscriber, self.clock()))
        text = (f"<b>Settings</b>\nDelivery: <b>{subscriber.send_time}</b> ({escape(subscriber.timezone)}), "
                f"<b>{subscriber.frequency}</b>\nPicks per digest: <b>{subscriber.digest_size}</b>\n"
                f"{'Paused' if paused else 'Active'}. {self._next_line(session, subscriber)}\n"
                "Time zone: /timezone NAME · exact time: /time HH:MM")
        marks = {f: ("• " if f == subscriber.frequency else "") + f for f in subscribers.FREQUENCIES}
        keyboard = [
            [Button("Picks −1", "s:size:-"), Button("Picks +1", "s:size:+")],
            [Button("Time −1h", "s:time:-"), Button("Time +1h", "s:time:+")],
            [Button(marks[f], f"s:freq:{f}") for f in subscribers.FREQUENCIES],
            [Button("Resume", "s:resume") if paused else Button("Pause 7 days", "s:pause")],
        ]
        return text, keyboard

    def _history_page(self, session: Session, subscriber: Subscriber, page: int) -> tuple[str, list[list[Button]]]:
        delivered = session.scalars(
            select(Delivery).where(Delivery.subscriber_id == subscriber.id,
                                   Delivery.status.in_(("sent", "sending", "uncertain")))
            .order_by(Delivery.local_date.desc()).offset(page * HISTORY_PAGE).limit(HISTORY_PAGE + 1)
        ).all()
        if not delivered:
            return ("No digests yet." if page == 0 else "No older digests."), []
        has_more = len(delivered) > HISTORY_PAGE
        text = "<b>Your past digests</b>"
        for delivery in delivered[:HISTORY_PAGE]:
            rows = session.execute(
                select(Paper.id, Paper.title, Vote.value)
                .select_from(Shown).join(Paper, Paper.id == Shown.paper_id)
                .outerjoin(Vote, (Vote.paper_id == Shown.paper_id) & (Vote.subscriber_id == subscriber.id))
                .where(Shown.delivery_id == delivery.id).order_by(Shown.position)
            ).all()
            found = paper_links(session, [pid for pid, _, _ in rows], self.settings.paper_link)
            text += f"\n\n<b>{delivery.local_date:%a %d %b %Y}</b>"
            for number, (pid, title, value) in enumerate(rows):
                mark = "👍" if value == 1 else "👎" if value == -1 else "·"
                line = "\n" + paper_item(mark, title, found.get(pid), title_chars=150, byline=False)
                if len(text) + len(line) > MAX_TEXT - 40:  # one message: the page is edited in place
                    text += f"\n… and {len(rows) - number} more"
                    break
                text += line
        buttons = []
        if page > 0:
            buttons.append(Button("◀ Newer", f"h:{page - 1}"))
        if has_more:
            buttons.append(Button("Older ▶", f"h:{page + 1}"))
        return text, ([buttons] if buttons else [])

    # --- helpers -----------------------------------------------------------------------------

    def _interest_matcher(self, session: Session) -> Callable[[str], bool]:
        """Whether an interest shares a term with the corpus; before the first ingest there is no
        vocabulary, so only what can never match (stop words, emoji, symbols) is refused."""
        model = self.models.get(session)
        if model is None:
            return textmatch.could_match
        return lambda text: textmatch.could_match(text) and model.transform([text]).nnz > 0

    def _next_line(self, session: Session, subscriber: Subscriber) -> str:
        """When the next digest comes, from the same decision the worker acts on."""
        now = self.clock()
        if subscriber.state == "stopped":
            return "You're unsubscribed, so no digests come (send /start)."
        if subscriber.state == "blocked":
            return "Digests stopped because the chat was blocked."
        today = schedule.local_date(subscriber, now)
        if subscribers.is_paused(subscriber, today) and subscriber.paused_until == subscriber.paused_until.max:
            return "Digests are paused until you send /resume."
        session.flush()
        history = deliveries.histories(session, [subscriber.id], now)[subscriber.id]
        slot = schedule.decide(subscriber, now, history)
        if slot.reason == "due":
            local = now.astimezone(subscribers.zone(subscriber.timezone))
            return (f"Next digest: <b>due now</b> (it is {local:%H:%M} in {escape(subscriber.timezone)}): "
                    "it goes out within a minute.")
        if slot.at is None:
            return "No digest is scheduled."
        local = slot.at.astimezone(subscribers.zone(subscriber.timezone))
        paused = " (paused until then)" if subscribers.is_paused(subscriber, today) else ""
        return f"Next digest: <b>{local:%a %d %b %H:%M}</b> ({escape(subscriber.timezone)}){paused}."


def bibtex(papers: list[Paper]) -> str:
    """Liked papers as BibTeX (see feedbot.chat.bibtex)."""
    return export_bibtex(papers)
