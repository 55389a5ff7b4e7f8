"""Sending feedbot's messages with python-telegram-bot: HTML with its buttons, the same words as
plain text when Telegram refuses our entities, and a 403 or a chat that no longer exists raised as
`Blocked`. The digest sender
(deliveries) and the chat adapter both send through here.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING

from telegram import InlineKeyboardButton, InlineKeyboardMarkup
from telegram.error import BadRequest, Forbidden
from telegram.warnings import PTBUserWarning

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


# Messages go out through `do_api_request` with plain values: a broadcast builds no keyboard
# objects and parses no `Message` per send (most of its CPU otherwise). python-telegram-bot warns
# that `send_message` exists; that is known here.
warnings.filterwarnings("ignore", message=r"Please use 'Bot\.sendMessage'", category=PTBUserWarning)


async def send_text(bot, chat_id: int, text: str, keyboard: list[list[Button]] | None = None,
                    paid_broadcast: bool = False) -> int:
    """Send HTML without link previews; if Telegram can't parse our entities, send the same
    words as plain text. `paid_broadcast`: past the free 30 messages/s, paid in Telegram Stars
    (FEEDBOT_PAID_BROADCAST). The message id."""
    message = {"chat_id": chat_id, "text": text, "parse_mode": "HTML", "link_preview_options": {"is_disabled": True}}
    if keyboard:
        message["reply_markup"] = {"inline_keyboard": [[{"text": b.label, "callback_data": b.data} for b in row]
                                                       for row in keyboard]}
    if paid_broadcast:
        message["allow_paid_broadcast"] = True
    try:
        return (await bot.do_api_request("sendMessage", api_kwargs=message))["message_id"]
    except BadRequest as exc:
        if "can't parse entities" not in str(exc).lower():
            raise
        log.warning("HTML rejected by Telegram (%s); sending plain text to chat %s", exc, chat_id)
        del message["parse_mode"]
        message["text"] = plain(text)
        return (await bot.do_api_request("sendMessage", api_kwargs=message))["message_id"]


async def send_replies(bot, chat_id: int, replies: Sequence[Reply]) -> list[int]:
    """Send replies in order and return their message ids. A 403 or a chat not found raises Blocked."""
    sent: list[int] = []
    try:
        for reply in replies:
            sent.append(await send_text(bot, chat_id, reply.text, reply.keyboard))
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
        return await send_text(bot, item.chat_id, reply.text, reply.keyboard, paid_broadcast)

    return transport
