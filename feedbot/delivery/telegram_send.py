"""Sending feedbot's messages with python-telegram-bot: HTML with its buttons, the same words as
plain text when Telegram refuses our entities, and a 403 or a chat that no longer exists raised as
`Blocked`. The digest sender
(deliveries) and the chat adapter both send through here.
"""

from __future__ import annotations

import json
import logging
import re
import urllib.request
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING

import aiohttp
from telegram import InlineKeyboardButton, InlineKeyboardMarkup
from telegram.error import BadRequest, Forbidden, NetworkError, TimedOut
from telegram.request import HTTPXRequest, RequestData
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


class SendMessageRequest(HTTPXRequest):
    """python-telegram-bot's request with `sendMessage` over aiohttp: a broadcast is one
    `sendMessage` after another, and httpx's request path was most of its CPU. Everything else
    (files, getMe, webhooks) goes through httpx as before. Answers are handed to python-telegram-bot
    as they came, so it raises the same errors (RetryAfter, Forbidden, BadRequest…); a timeout is
    `TimedOut` and a broken connection `NetworkError`, each with aiohttp's exception as its cause
    (`outcomes.classify` tells a connection never made from one dropped mid-request). The body is
    JSON (one C-encoded string, where a form body is percent-encoded byte by byte). Where the
    environment names a proxy (`HTTPS_PROXY`, `ALL_PROXY`…), `sendMessage` stays on httpx too, so
    every call takes the proxy by httpx's rules (schemes, `NO_PROXY` patterns) and none goes
    another way. Redirects are not followed, as httpx does not (a re-posted message could be sent
    twice); aiohttp has no write timeout, so a `sendMessage` (a few kilobytes) is bounded by its
    connect and read timeouts."""

    def __init__(self, connection_pool_size: int = 256, read_timeout: float | None = 5.0,
                 write_timeout: float | None = 5.0, connect_timeout: float | None = 5.0,
                 pool_timeout: float | None = 1.0) -> None:
        super().__init__(connection_pool_size=connection_pool_size, read_timeout=read_timeout,
                         write_timeout=write_timeout, connect_timeout=connect_timeout, pool_timeout=pool_timeout)
        self._pool_size = connection_pool_size
        self._defaults = (read_timeout, connect_timeout, pool_timeout)
        self._timeouts: dict[tuple, aiohttp.ClientTimeout] = {}
        self._session: aiohttp.ClientSession | None = None
        self._direct = not _proxies_named()  # read once, as httpx reads them once per client
        self._shut = False

    async def initialize(self) -> None:
        self._shut = False
        self._direct = not _proxies_named()
        await super().initialize()

    async def shutdown(self) -> None:
        """Close both clients; a send after this fails, as httpx's would, rather than opening a
        session nobody closes."""
        self._shut = True
        session, self._session = self._session, None
        if session is not None:
            await session.close()
        await super().shutdown()

    def _timeout(self, read: object, connect: object, pool: object) -> aiohttp.ClientTimeout:
        """aiohttp's timeout for python-telegram-bot's: `connect` covers waiting for a pooled
        connection and making one, `sock_read` each read of the answer."""
        given = tuple(d if isinstance(v, type(self.DEFAULT_NONE)) else v
                      for v, d in zip((read, connect, pool), self._defaults, strict=True))
        timeout = self._timeouts.get(given)
        if timeout is None:
            read, connect, pool = given
            waiting = None if connect is None or pool is None else connect + pool
            timeout = self._timeouts[given] = aiohttp.ClientTimeout(total=None, connect=waiting,
                                                                    sock_connect=connect, sock_read=read)
        return timeout

    async def do_request(self, url: str, method: str, request_data: RequestData | None = None,
                         read_timeout=HTTPXRequest.DEFAULT_NONE, write_timeout=HTTPXRequest.DEFAULT_NONE,
                         connect_timeout=HTTPXRequest.DEFAULT_NONE,
                         pool_timeout=HTTPXRequest.DEFAULT_NONE) -> tuple[int, bytes]:
        message = url.endswith("/sendMessage") and request_data is not None and not request_data.contains_files
        if message:  # on either path: a message no encoding can carry is refused before any request
            body = _json_body(request_data)
        if not message or not self._direct:
            return await super().do_request(url, method, request_data, read_timeout, write_timeout,
                                            connect_timeout, pool_timeout)
        if self._shut:
            raise RuntimeError("this request was shut down")
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=self._pool_size),
                                                  headers={"User-Agent": self.USER_AGENT})
        try:
            async with self._session.request(method, url, data=body, headers=_JSON, allow_redirects=False,
                                             timeout=self._timeout(read_timeout, connect_timeout, pool_timeout),
                                             ) as response:
                return response.status, await response.read()
        except TimeoutError as err:  # aiohttp raises the builtin TimeoutError (subclasses) on timeouts
            raise TimedOut from err
        except aiohttp.ClientError as err:  # its text may hold the URL, and so the bot's token: not kept
            raise NetworkError(f"aiohttp.{type(err).__name__}: {_TOKEN.sub('/bot<token>', str(err))}") from err


_TOKEN = re.compile(r"/bot[^/\s]+")
_JSON = {"Content-Type": "application/json"}


def _json_body(request_data: RequestData) -> bytes:
    """The message as a JSON body; BadRequest when no encoding can carry it (a lone surrogate):
    never sent and never sendable, so not taken for a request that may have arrived."""
    try:
        return json.dumps(request_data.parameters, ensure_ascii=False).encode()
    except (TypeError, ValueError) as err:
        raise BadRequest(f"the message could not be encoded ({type(err).__name__})") from err


PROXIED = ("http", "https", "all")  # the `*_PROXY` variables httpx reads (`NO_PROXY` only narrows them)


def _proxies_named() -> bool:
    """Whether the environment names a proxy that httpx would use (`FTP_PROXY` and the like are
    not for these requests)."""
    return any(scheme in PROXIED for scheme in urllib.request.getproxies())


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
