"""Shared fixtures: every database test runs on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from feedbot.config import Settings, load_settings, normalise_database_url
from feedbot.store import db
from tests.pgschema import fresh_schema

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_DUMPS = ROOT / "examples" / "dumps"


@pytest.fixture(scope="session")
def postgres_url() -> str:
    url = os.environ.get("FEEDBOT_TEST_POSTGRES_URL", "")
    if not url:
        pytest.fail("FEEDBOT_TEST_POSTGRES_URL is not set: run the suite with scripts/test.sh, "
                    "which starts a local PostgreSQL server")
    return normalise_database_url(url)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    """An empty database of each kind: a SQLite file, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'feedbot.db'}"
        return
    with fresh_schema(request.getfixturevalue("postgres_url")) as url:
        yield url


@pytest.fixture
def engine(database_url):
    """A migrated database."""
    db.upgrade(database_url)
    engine = db.make_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def env(tmp_path, database_url) -> dict[str, str]:
    """Environment for running feedbot against the test database and a private data dir."""
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("FEEDBOT_", "TELEGRAM_"))},
        "DATABASE_URL": database_url,
        "FEEDBOT_DATA_DIR": str(tmp_path / "data"),
        "FEEDBOT_LOG_LEVEL": "WARNING",
    }


@pytest.fixture
def settings(env) -> Settings:
    return load_settings(env)


@pytest.fixture
def example_dumps(tmp_path) -> Path:
    """A private copy of the five example dumps."""
    folder = tmp_path / "dumps"
    shutil.copytree(EXAMPLE_DUMPS, folder)
    return folder


@pytest.fixture
def seeded(engine, example_dumps, settings):
    """The example dumps ingested (listed on 2026-03-11 and 12) and the text model fitted."""
    from datetime import date

    from sqlalchemy.orm import Session

    from feedbot.ranking import textmodel
    from feedbot.sources.ingest import ingest_paths

    ingest_paths(engine, [example_dumps], stamp=date(2026, 3, 20))
    with Session(engine) as session:
        textmodel.ensure(session, settings.model_dir)
    return engine


class BotRunner:
    """The real python-telegram-bot Application, polling the fake server from its own loop thread."""

    def __init__(self, application) -> None:
        import asyncio
        import threading

        self.application = application
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def call(self, coroutine, timeout: float = 60):
        import asyncio

        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def start(self) -> None:
        """What the worker does before it polls (see `Application.run_polling`), minus the sweeps."""
        from telegram import Update

        from feedbot.chat.telegram import set_menu

        async def start() -> None:
            await self.application.initialize()
            await set_menu(self.application.bot)
            await self.application.updater.start_polling(poll_interval=0.0, timeout=1,
                                                         allowed_updates=Update.ALL_TYPES)
            await self.application.start()

        self.thread.start()
        self.call(start())

    def stop(self) -> None:
        async def stop() -> None:
            if self.application.updater.running:
                await self.application.updater.stop()
            if self.application.running:
                await self.application.stop()
            await self.application.shutdown()

        try:
            self.call(stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)


@pytest.fixture
def telegram():
    from tests.fake_telegram import FakeTelegram

    server = FakeTelegram().start()
    yield server
    server.stop()


@pytest.fixture
def chat(seeded, settings):
    from feedbot.chat.conversation import Chat

    return Chat(seeded, settings)


@pytest.fixture
def bot(telegram, chat, settings):
    """The bot running against the fake Telegram server, over real HTTP on 127.0.0.1."""
    import dataclasses

    from feedbot.chat.telegram import build_application

    bot_settings = dataclasses.replace(settings, telegram_token=telegram.token, telegram_api_url=telegram.base_url)
    runner = BotRunner(build_application(bot_settings, chat, timeout=2.0, max_retries=3))
    runner.start()
    yield runner
    runner.stop()


@pytest.fixture
def server():
    """A loopback HTTP server standing in for the APIs feedbot reads (tests/source_server.py)."""
    from tests.source_server import SourceServer

    server = SourceServer().start()
    yield server
    server.stop()


@pytest.fixture
def group_bot(telegram, chat, settings):
    """The bot as `bot`, without Telegram's 20-a-minute limit per group: group tests tap fast."""
    import dataclasses

    from telegram.ext import AIORateLimiter

    from feedbot.chat.telegram import build_application

    bot_settings = dataclasses.replace(settings, telegram_token=telegram.token, telegram_api_url=telegram.base_url)
    limiter = AIORateLimiter(group_max_rate=0, max_retries=3)
    runner = BotRunner(build_application(bot_settings, chat, timeout=2.0, rate_limiter=limiter))
    runner.start()
    yield runner
    runner.stop()
