"""One subscriber's digest sent now, outside the schedule (`feedbot digest --send`).

It goes through the same claim, record and send code as the worker's sweep and /digest, so it
counts as that day's digest and can never repeat a pick or a day.
"""

from __future__ import annotations

import asyncio
from datetime import datetime

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from feedbot.config import Settings
from feedbot.delivery import deliveries, schedule, telegram_send
from feedbot.ranking.textmodel import ModelCache
from feedbot.store.models import Subscriber


class NotSent(RuntimeError):
    """The digest cannot go out now; the message says why."""


def send_today(engine: Engine, settings: Settings, subscriber: Subscriber, now: datetime, bot) -> tuple[int, str]:
    """Claim, record and send today's digest with `bot` (python-telegram-bot's, not yet
    initialised; the worker's settings): (delivery id, final state)."""
    if subscriber.state != "active":
        raise NotSent(f"subscriber {subscriber.telegram_id} is {subscriber.state}")
    with Session(engine) as session:
        model = ModelCache(settings.model_dir).get(session)  # None before the first listing: the digest says so
    day = schedule.local_date(subscriber, now)
    outgoing = deliveries.prepare(engine, model, [(subscriber, day)], now, settings, deliveries.ADMIN)
    if not outgoing:
        raise NotSent(f"{subscriber.telegram_id} already has a digest for {day}")

    async def send() -> str:
        async with bot:
            return await deliveries.send_now(engine, outgoing[0], telegram_send.telegram_transport(bot))

    return outgoing[0].delivery_id, asyncio.run(send())
