"""Sending feedbot's messages with python-telegram-bot: HTML with its buttons, the same words as
plain text when Telegram refuses our entities, and a 403 or a chat that no longer exists raised as
`Blocked`. The digest sender
(deliveries) and the chat adapter both send through here.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Message
from telegram.error import BadRequest, Forbidden

from feedbot.delivery.messages import Button, Reply, plain

if TYPE_CHECKING:
    from feedbot.delivery.deliveries import Outgoing, Transport

log = logging.getLogger(__name__)


class Blocked(Exception):
    """The user blocked the bot or deleted their account (403), or the chat is gone (400 chat not found)."""


def is_chat_gone(exc: BadRequest) -> bool:
    """Telegram's 400 for a chat that no longer exists (or never did): sending again cannot help."""
    return "chat not found" in str(exc).lower()


def keyboard_markup(rows: list[list[Button]] | None) -> InlineKeyboardMarkup | None:
    if not rows:
        return None
    return InlineKeyboardMarkup([[InlineKeyboardButton(b.label, callback_data=b.data) for b in row] for row in rows])


async def send_text(bot, chat_id: int, text: str, keyboard: list[list[Button]] | None = None,
                    paid_broadcast: bool = False) -> Message:
    """Send HTML; if Telegram can't parse our entities, send the same words as plain text.
    `paid_broadcast`: past the free 30 messages/s, paid in Telegram Stars (FEEDBOT_PAID_BROADCAST)."""
    markup = keyboard_markup(keyboard)
    paid = {"allow_paid_broadcast": True} if paid_broadcast else {}
    try:
        return await bot.send_message(chat_id, text, reply_markup=markup, **paid)
    except BadRequest as exc:
        if "can't parse entities" not in str(exc).lower():
            raise
        log.warning("HTML rejected by Telegram (%s); sending plain text to chat %s", exc, chat_id)
        return await bot.send_message(chat_id, plain(text), reply_markup=markup, parse_mode=None, **paid)


async def send_replies(bot, chat_id: int, replies: Sequence[Reply]) -> list[int]:
    """Send replies in order and return their message ids. A 403 or a chat not found raises Blocked."""
    sent: list[int] = []
    try:
        for reply in replies:
            message = await send_text(bot, chat_id, reply.text, reply.keyboard)
            sent.append(message.message_id)
            if reply.document is not None:
                name, content = reply.document
                document = await bot.send_document(chat_id, document=content, filename=name, caption=name,
                                                   parse_mode=None)
                sent.append(document.message_id)
    except Forbidden as exc:
        raise Blocked(str(exc)) from exc
    except BadRequest as exc:
        if is_chat_gone(exc):
            raise Blocked(str(exc)) from exc
        raise
    return sent


def telegram_transport(bot, paid_broadcast: bool = False) -> Transport:
    """Send a part with python-telegram-bot (HTML, falling back to plain text on entity errors)."""
    async def transport(item: Outgoing, reply: Reply) -> int:
        return (await send_text(bot, item.chat_id, reply.text, reply.keyboard, paid_broadcast)).message_id

    return transport
