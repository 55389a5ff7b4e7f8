"""What one attempt to send one part of a digest ended in, and the delivery state that follows.

Every exception python-telegram-bot raises maps to one outcome (`classify`); one pure function
(`after`) turns an outcome into the row's next state. A part that may or may not have reached
the subscriber is never sent again: a second copy is worse than a missing one.
"""

from __future__ import annotations

import aiohttp
import httpx
from telegram.error import BadRequest, ChatMigrated, Forbidden, NetworkError, RetryAfter, TelegramError, TimedOut

from feedbot.delivery.telegram_send import Blocked, is_chat_gone

DELIVERED = "delivered"  # Telegram confirmed it
REFUSED = "refused"  # nothing reached Telegram: the connection was refused or never made
THROTTLED = "throttled"  # Telegram answered 429 (flood control) past the retries: it did not send it
UNKNOWN = "unknown"  # it may have arrived: timeout, 5xx, dropped connection, crash mid-request
BLOCKED = "blocked"  # 403: the subscriber blocked the bot
GONE = "gone"  # 400 chat not found: the chat no longer exists; the subscriber is deactivated like a block
MIGRATED = "migrated"  # the group became a supergroup: send again to its new chat id
REJECTED = "rejected"  # 400: Telegram will never take this message
EXPIRED = "expired"  # still unsent when its late window closed
WITHDRAWN = "withdrawn"  # the subscriber stopped or blocked before it went out
OUTCOMES = (DELIVERED, REFUSED, THROTTLED, UNKNOWN, BLOCKED, GONE, MIGRATED, REJECTED, EXPIRED, WITHDRAWN)

FINAL = ("sent", "empty", "blocked", "failed", "uncertain", "skipped")
IN_FLIGHT = ("claimed", "sending")


def after(outcome: str, confirmed: int, total: int, empty: bool = False) -> str:
    """The row's state after `outcome`, with `confirmed` parts of `total` known delivered
    (counting the part just delivered). `sending` means: go on with the next part (or, after a
    migration, try the same part again at the new chat id)."""
    if outcome == DELIVERED:
        if confirmed < total:
            return "sending"
        return "empty" if empty else "sent"
    if outcome in (REFUSED, THROTTLED):
        return "claimed"  # resume at part confirmed + 1 on the next sweep
    if outcome == MIGRATED:
        return "sending"
    if outcome == UNKNOWN:
        return "uncertain"
    if outcome in (BLOCKED, GONE):
        return "blocked"
    if outcome in (EXPIRED, WITHDRAWN):
        return "skipped" if confirmed == 0 else "failed"
    return "failed"


def describe(outcome: str, error: str, confirmed: int, total: int) -> str:
    """The reason stored with a row, for the admin: what happened and which parts went out."""
    parts = f"; parts 1–{confirmed} of {total} were delivered" if confirmed and total > 1 else ""
    if outcome == UNKNOWN:
        return f"{error}; part {confirmed + 1} of {total} may or may not have arrived{parts}; not re-sent"
    if outcome == GONE:
        return f"{error}: the chat no longer exists; subscriber deactivated{parts}"
    return f"{error}{parts}"


def classify(exc: BaseException) -> str:
    """Which outcome a python-telegram-bot exception means for the part being sent."""
    if isinstance(exc, Blocked | Forbidden):
        return BLOCKED
    if isinstance(exc, ChatMigrated):
        return MIGRATED
    if isinstance(exc, RetryAfter):
        return THROTTLED
    if isinstance(exc, BadRequest):  # a 400 answer (BadRequest is a NetworkError in python-telegram-bot)
        return GONE if is_chat_gone(exc) else REJECTED
    cause = exc.__cause__
    if isinstance(cause, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout
                  | aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError):
        return REFUSED  # no connection was made, so no request was sent
    if isinstance(exc, TimedOut | NetworkError):
        return UNKNOWN  # includes 5xx answers and connections dropped mid-request
    if isinstance(exc, TelegramError):
        return REJECTED
    return UNKNOWN
