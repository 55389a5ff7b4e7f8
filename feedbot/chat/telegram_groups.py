"""Groups and channels on Telegram: who is asking (the chat is the subscriber, the person a member),
whether they administer the chat (asked with getChatMember, kept a minute), the bot added to or
removed from a chat, a group upgraded to a supergroup, and the counts on a group digest's buttons
redrawn after the latest tap."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Awaitable, Callable

from sqlalchemy import Engine
from telegram import ChatMember, Update
from telegram.error import TelegramError

from feedbot.chat.conversation import User
from feedbot.store import groups
from feedbot.store.db import transaction

log = logging.getLogger(__name__)
ADMIN_TTL = 60.0  # seconds an answer of getChatMember is trusted: a demoted admin loses rights within it
GONE = (ChatMember.LEFT, ChatMember.BANNED)


def chat_kind(chat_type: str) -> str:
    """The subscriber kind of a Telegram chat type."""
    return {"group": "group", "supergroup": "group", "channel": "channel"}.get(chat_type, "private")


def asker(update: Update) -> User:
    """Who an update comes from. In a group or channel the subscriber is the chat; a channel post
    is an administrator's (only they can post), as is a group message sent as the group itself
    (an anonymous administrator). Anyone else's rights are asked of Telegram when they matter."""
    chat, person = update.effective_chat, update.effective_user
    kind = chat_kind(chat.type) if chat else "private"
    if kind == "private":
        return User(person.id, chat.id if chat else person.id, person.full_name or "")
    message = update.effective_message
    sent_as_chat = message is not None and message.sender_chat is not None and message.sender_chat.id == chat.id
    return User(chat.id, chat.id, chat.title or "", kind, person.id if person else 0,
                admin=update.channel_post is not None or sent_as_chat)


class Admins:
    """Whether a member administers a chat, as Telegram last said within `ttl` seconds (in memory,
    per process). A failed question counts as "no" and is not kept."""

    def __init__(self, ttl: float = ADMIN_TTL, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl, self.clock = ttl, clock
        self._known: dict[tuple[int, int], tuple[bool, float]] = {}

    async def check(self, bot, chat_id: int, member_id: int) -> bool:
        now = self.clock()
        known = self._known.get((chat_id, member_id))
        if known is not None and now < known[1]:
            return known[0]
        try:
            member = await bot.get_chat_member(chat_id, member_id)
        except TelegramError as exc:
            log.info("could not ask whether %s administers chat %s: %s", member_id, chat_id, exc)
            return False
        admin = member.status in (ChatMember.OWNER, ChatMember.ADMINISTRATOR)
        if len(self._known) > 10_000:
            self._known = {k: v for k, v in self._known.items() if now < v[1]}
        self._known[(chat_id, member_id)] = (admin, now + self.ttl)
        return admin


class Redraws:
    """One redraw of a message's buttons at a time, the latest tap's last: a tap whose redraw waits
    behind another's is dropped once a newer tap comes, since the newer one draws after it. Each
    redraw reads the counts after its own tap was stored, so the last edit shows the final counts."""

    def __init__(self) -> None:
        self._tickets = itertools.count()
        self._latest: dict[tuple[int, int], int] = {}
        self._locks: dict[tuple[int, int], asyncio.Lock] = {}

    async def run(self, key: tuple[int, int], draw: Callable[[], Awaitable[None]]) -> None:
        ticket = self._latest[key] = next(self._tickets)
        lock = self._locks.setdefault(key, asyncio.Lock())
        try:
            async with lock:
                if self._latest.get(key) == ticket:
                    await draw()
        finally:
            if self._latest.get(key) == ticket:  # no newer tap: forget the message
                self._latest.pop(key, None)
                self._locks.pop(key, None)


def chat_left(engine: Engine, chat_id: int) -> bool:
    """The bot was removed from a group or channel: it is unsubscribed (its data kept)."""
    with transaction(engine) as session:
        stopped = groups.stop_chat(session, chat_id)
    if stopped:
        log.info("removed from chat %s: its subscription is stopped", chat_id)
    return stopped


def chat_migrated(engine: Engine, old_chat_id: int, new_chat_id: int) -> bool:
    """A group became a supergroup: the same subscriber under the new chat id, in one transaction."""
    with transaction(engine) as session:
        moved = groups.migrate(session, old_chat_id, new_chat_id)
    if moved:
        log.info("group %s is now supergroup %s: its subscription moved", old_chat_id, new_chat_id)
    return moved


def migration_of(update: Update) -> tuple[int, int] | None:
    """(old, new) chat id of a migration service message, in the old group or the new supergroup."""
    message = update.effective_message
    if message is None:
        return None
    if message.migrate_to_chat_id:
        return message.chat.id, message.migrate_to_chat_id
    if message.migrate_from_chat_id:
        return message.migrate_from_chat_id, message.chat.id
    return None
