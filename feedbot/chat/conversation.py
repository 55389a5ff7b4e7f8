"""The conversation: every command, reply and button, whatever carries it (Telegram, the console
chat, tests). `Chat` only routes: a command to its entry in feedbot.chat.commands, plain text to
the onboarding question, a button to its feature module. Each call is one database transaction
that commits before the caller answers, so a vote is stored before "Saved 👍" is shown.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from feedbot.chat import commands, groups, imports, onboarding
from feedbot.chat.library import history_press
from feedbot.chat.settings import delete_press, settings_press
from feedbot.chat.votes import vote_press
from feedbot.clock import utcnow
from feedbot.config import Settings
from feedbot.delivery import deliveries, digests, schedule
from feedbot.delivery.messages import Answer, Button, Reply, escape, fit
from feedbot.ranking.textmodel import ModelCache
from feedbot.store import subscribers
from feedbot.store.db import read_only, transaction
from feedbot.store.models import Subscriber
from feedbot.store.subscribers import UserError

BUTTON_DATA = re.compile(
    r"^(?:v:[0-9]{1,12}:[+-]|h:[0-9]{1,4}"
    r"|(?:d:(?:yes|no)|s:(?:size:[+-]|time:[+-]|freq:(?:daily|weekdays|weekly)|pause|resume)):[0-9a-f]{12})$"
)
NOT_SUBSCRIBED = "You're not subscribed yet: send /start to begin."


def storable(text: str) -> str:
    """Text any database can store: without NUL (PostgreSQL refuses it) or lone surrogates."""
    return "".join(c for c in text if c != "\x00" and not "\ud800" <= c <= "\udfff")


@dataclass(frozen=True)
class User:
    """Who is asking. In a group or channel (`kind`) the subscriber is the chat: `telegram_id` is
    the chat's id, and `member_id` the person who typed or tapped (`admin`: one of its administrators)."""

    telegram_id: int
    chat_id: int
    name: str = ""
    kind: str = "private"
    member_id: int = 0
    admin: bool = False


@dataclass
class Turn:
    """One command, text or button being answered: the chat, its open transaction, who is asking.
    `subscriber` is None only for the commands that answer before /start."""

    chat: Chat
    session: Session
    user: User
    subscriber: Subscriber


class Chat:
    """One instance serves every subscriber; methods are synchronous (run them off the event loop)."""

    def __init__(self, engine: Engine, settings: Settings, clock: Callable[[], datetime] = utcnow,
                 models: ModelCache | None = None) -> None:
        self.engine, self.settings, self.clock = engine, settings, clock
        self.models = models or ModelCache(settings.model_dir)

    def session(self, write: bool) -> AbstractContextManager[Session]:
        """A write transaction, or a read-only one that never waits for writers."""
        return transaction(self.engine) if write else read_only(self.engine)

    def command(self, user: User, name: str, args: str = "", show: imports.Show | None = None,
                paths: bool = False) -> list[Reply]:
        """`/name args`, as the adapters parsed it (`commands.parse`). `show` prints a long job's
        progress (/import); `paths` lets /import read a local file."""
        name, args = storable(name).casefold(), storable(args).strip()
        command = commands.find(name)
        in_group = user.kind != "private"
        if command is None:  # in a group, it may well be another bot's
            return [] if in_group else [Reply(f"I don't know /{escape(name[:40])}. Send /help to see what I can do.")]
        if in_group and not user.admin and groups.admin_only(command, args):
            return [Reply(groups.ADMINS_ONLY)]
        if command.name == "import":  # a job: its own transactions, the chat answers meanwhile
            return imports.command(self, user, args.strip(), show, paths)
        if command.handler is None:  # /digest ranks before it writes: no write transaction around it
            return self.digest(user)
        user = replace(user, name=storable(user.name))  # /start stores it
        with self.session(command.writes(args)) as session:
            subscriber = subscribers.get(session, user.telegram_id)
            if subscriber is None and not command.anyone:
                return [Reply(NOT_SUBSCRIBED)]
            handler = groups.start if in_group and command.name == "start" else command.handler
            try:
                return fit(handler(Turn(self, session, user, subscriber), args))
            except UserError as exc:
                return [Reply(escape(str(exc)))]

    def text(self, user: User, text: str) -> list[Reply]:
        """Plain text: the answer to a pending onboarding question (written), else a pointer."""
        text = storable(text)
        if user.kind != "private":  # a group talks among itself: only commands are for feedbot
            return []
        with read_only(self.engine) as session:
            subscriber = subscribers.get(session, user.telegram_id)
            if subscriber is None:
                return [Reply("Hi! Send /start to subscribe to daily paper picks.")]
            pending = subscriber.awaiting is not None
        replies = None
        if pending:
            with transaction(self.engine) as session:
                subscriber = subscribers.get(session, user.telegram_id)
                try:
                    if subscriber is not None:
                        replies = onboarding.answer(Turn(self, session, user, subscriber), text)
                except UserError as exc:
                    return [Reply(escape(str(exc)) + "\nOr send /skip.")]
        return fit(replies or [Reply("I answer commands: send /help for the list, or /search WORDS to find papers.")])

    def button(self, user: User, data: str, keyboard: list[list[Button]] | None = None) -> Answer:
        """A pressed button. Forged or stale data gets a notice and writes nothing: a settings or
        /delete button works only for the subscription it was shown to (`subscribers.tag`)."""
        if not BUTTON_DATA.match(data or ""):
            return Answer("That button is not valid (anymore).", alert=True)
        kind, _, rest = data.partition(":")
        if user.kind != "private" and not user.admin and groups.admin_only_button(kind):
            return Answer(groups.ADMINS_ONLY, alert=True)
        with self.session(write=kind != "h") as session:
            subscriber = subscribers.get(session, user.telegram_id)
            if subscriber is None:
                return Answer("You're not subscribed: send /start first.", alert=True)
            if kind in ("s", "d"):
                rest, _, tag = rest.rpartition(":")
                if tag != subscribers.tag(subscriber):
                    return Answer("That button belongs to an earlier subscription: nothing was changed.",
                                  alert=True)
            turn = Turn(self, session, user, subscriber)
            try:
                if kind == "h":
                    return history_press(turn, int(rest))
                if subscribers.lock(session, subscriber) is None:  # erased by a press a moment ago
                    return Answer("You're not subscribed: send /start first.", alert=True)
                if kind == "v":
                    press = vote_press if subscriber.kind == "private" else groups.vote_press
                    return press(turn, rest, keyboard or [])
                if kind == "s":
                    return settings_press(turn, rest)
                return delete_press(turn, rest == "yes")
            except UserError as exc:
                return Answer(str(exc), alert=True)

    def digest(self, user: User) -> list[Reply]:
        """Today's picks now. Ranked in a read-only session, then claimed and recorded in a short
        write: the first /digest of a day becomes that day's delivery (the schedule sends no
        second), its replies carry the delivery id so the sender records each part; later ones
        are extra picks. Either way only papers the database accepts as new are shown."""
        now = self.clock()
        with read_only(self.engine) as session:
            subscriber = subscribers.get(session, user.telegram_id)
            if subscriber is None:
                return [Reply(NOT_SUBSCRIBED)]
            day = schedule.local_date(subscriber, now)
            built = digests.build(session, self.models.get(session), [subscriber], now, self.settings,
                                  days={subscriber.id: day})
            session.expunge(subscriber)
        [(_, digest, delivery_id)] = deliveries.claim_and_record(self.engine, [subscriber], built, now,
                                                                  deliveries.COMMAND)
        replies = digests.render(digest)
        for reply in replies:
            reply.delivery = delivery_id
        return replies
