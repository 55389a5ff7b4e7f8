"""`feedbot worker`: one asyncio process that runs the Telegram bot by long polling."""

from __future__ import annotations

import asyncio
import logging
import signal

from sqlalchemy import Engine

from feedbot import bot
from feedbot.chat import Chat
from feedbot.config import Settings

log = logging.getLogger(__name__)


def run(settings: Settings, engine: Engine) -> int:
    return asyncio.run(serve(settings, engine))


async def serve(settings: Settings, engine: Engine) -> int:
    chat = Chat(engine, settings)
    application = bot.build_application(settings, chat)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    log.info("worker starting: bot polling, database %s", settings.safe_database_url)
    await bot.start(application)
    try:
        await stopping.wait()
    finally:
        log.info("worker stopping")
        await bot.stop(application)
    return 0
