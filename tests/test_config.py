"""Settings from the environment: defaults, validation, URL rewriting and masking, token redaction."""

import io
import json
import logging
import os
import sqlite3
import stat
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from feedbot.config import ConfigError, load_settings, mask_url, private_dir, setup_logging
from feedbot.store import db
from tests.conftest import EXAMPLE_DUMPS


def test_defaults_and_postgres_urls(tmp_path):
    settings = load_settings({"FEEDBOT_DATA_DIR": str(tmp_path)})
    assert settings.database_url == f"sqlite:///{tmp_path / 'feedbot.db'}"
    assert settings.inbox == tmp_path / "inbox"
    assert settings.log_level == "INFO" and settings.telegram_token is None
    for url in ("postgres://u:secret@db/feedbot", "postgresql://u:secret@db/feedbot"):
        settings = load_settings({"DATABASE_URL": url})
        assert settings.database_url == "postgresql+psycopg://u:secret@db/feedbot"
        assert settings.safe_database_url == "postgresql+psycopg://u:***@db/feedbot"
    assert mask_url("sqlite:///x.db") == "sqlite:///x.db"


@pytest.mark.parametrize(("env", "message"), [
    ({"DATABASE_URL": "mysql://x"}, "DATABASE_URL must be"),
    ({"FEEDBOT_LOG_LEVEL": "chatty"}, "FEEDBOT_LOG_LEVEL must be one of"),
    ({"TELEGRAM_BOT_TOKEN": "nocolon"}, "does not look like a bot token"),
    ({"FEEDBOT_TELEGRAM_API_URL": "ftp://x"}, "must start with http"),
    ({"FEEDBOT_INGEST_EVERY": "0"}, "FEEDBOT_INGEST_EVERY must be between"),
    ({"FEEDBOT_VOTE_HALF_LIFE_DAYS": "-1"}, "must be positive"),
])
def test_bad_values_name_the_variable(env, message):
    with pytest.raises(ConfigError, match=message):
        load_settings(env)


def test_token_never_reaches_the_log(monkeypatch):
    token = "123456:SECRET-TOKEN"
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", list(root.handlers))
    monkeypatch.setattr(root, "level", root.level)
    setup_logging(load_settings({"TELEGRAM_BOT_TOKEN": token}))
    log = logging.getLogger("feedbot.test")
    log.warning("POST https://api.telegram.org/bot%s/sendMessage failed", token)
    try:
        raise RuntimeError(f"httpx.ConnectError for https://api.telegram.org/bot{token}/getMe")
    except RuntimeError:
        log.exception("request failed")
    text = out.getvalue()
    assert token not in text
    assert text.count("<token>") == 2 and "RuntimeError" in text


def test_webhook_secret_never_reaches_the_log_even_at_debug(monkeypatch, telegram):
    """python-telegram-bot logs every call's parameters at DEBUG: setWebhook's secret_token is
    among them. Called for real against the fake Bot API server, the secret is not printed."""
    import asyncio

    from telegram import Bot
    from telegram.request import HTTPXRequest

    secret = "Webhook-Secret_0123456789"
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", list(root.handlers))
    monkeypatch.setattr(root, "level", root.level)
    setup_logging(load_settings({"TELEGRAM_BOT_TOKEN": telegram.token, "FEEDBOT_LOG_LEVEL": "DEBUG",
                                 "FEEDBOT_WEBHOOK_URL": "https://bot.example.org/hook",
                                 "FEEDBOT_WEBHOOK_SECRET": secret}))

    async def register() -> None:
        async with Bot(telegram.token, base_url=telegram.base_url, request=HTTPXRequest()) as bot:
            await bot.set_webhook("https://bot.example.org/hook", secret_token=secret)

    asyncio.run(register())
    text = out.getvalue()
    assert "setWebhook" in text and "<webhook secret>" in text
    assert secret not in text and telegram.token not in text


def test_source_and_link_settings():
    settings = load_settings({})
    assert settings.sources == () and settings.paper_link.endswith("query={query}&searchtype=title")
    assert settings.hf_api_url == "https://huggingface.co"
    assert settings.arxiv_api_url == "https://export.arxiv.org/api/query"
    settings = load_settings({"FEEDBOT_SOURCES": "hf, arxiv:cs.LG+cs.CL", "FEEDBOT_HF_API_URL": "http://127.0.0.1:9/",
                              "FEEDBOT_PAPER_LINK": "https://scholar.google.com/scholar?q={query}"})
    assert settings.sources == ("hf", "arxiv:cs.LG+cs.CL") and settings.hf_api_url == "http://127.0.0.1:9"
    for good in ("https://s.example/t/{title}", "HTTP://s.example:8080/?a=1&q={query}&t={title}"):
        assert load_settings({"FEEDBOT_PAPER_LINK": good}).paper_link == good
    for env, message in [
        ({"FEEDBOT_SOURCES": "rss"}, "FEEDBOT_SOURCES: unknown source"),
        ({"FEEDBOT_SOURCES": "arxiv"}, "FEEDBOT_SOURCES: 'arxiv' needs categories"),
        ({"FEEDBOT_PAPER_LINK": "https://example.com/"}, "FEEDBOT_PAPER_LINK must be"),
        ({"FEEDBOT_PAPER_LINK": "javascript:{title}"}, "FEEDBOT_PAPER_LINK must be"),
        ({"FEEDBOT_PAPER_LINK": "https://s.example/{titel}?q={query}"}, "FEEDBOT_PAPER_LINK must be.*titel"),
        ({"FEEDBOT_PAPER_LINK": "https://s.example/?q={query:>40}"}, "FEEDBOT_PAPER_LINK must be"),
        ({"FEEDBOT_PAPER_LINK": "https://s.example/?q={query}}"}, "FEEDBOT_PAPER_LINK must be.*stray"),
        ({"FEEDBOT_PAPER_LINK": "https://s.example/?q={query"}, "FEEDBOT_PAPER_LINK must be"),
        ({"FEEDBOT_PAPER_LINK": "https://{query}.example/"}, "FEEDBOT_PAPER_LINK must be.*host"),
        ({"FEEDBOT_PAPER_LINK": "https:///?q={query}"}, "FEEDBOT_PAPER_LINK must be.*host"),
        ({"FEEDBOT_PAPER_LINK": "https://s.example/?q={query} &x=1"}, "FEEDBOT_PAPER_LINK must be.*whitespace"),
        ({"FEEDBOT_PAPER_LINK": "{query}"}, "FEEDBOT_PAPER_LINK must be"),
        ({"FEEDBOT_HF_API_URL": "huggingface.co"}, "FEEDBOT_HF_API_URL must be"),
        ({"FEEDBOT_ARXIV_API_URL": "ftp://x"}, "FEEDBOT_ARXIV_API_URL must be"),
    ]:
        with pytest.raises(ConfigError, match=message):
            load_settings(env)


@pytest.fixture
def no_umask():
    """Modes feedbot sets must not lean on the umask: with none, whatever is left to it shows as 0666/0777."""
    old = os.umask(0)
    yield
    os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_the_sqlite_file_its_folder_and_its_sidecars_are_private(tmp_path, no_umask):
    path = tmp_path / "new" / "nested" / "feedbot.db"
    url = f"sqlite:///{path}"
    db.upgrade(url)
    engine = db.make_engine(url)
    with engine.connect() as connection:  # open: the -wal and -shm files exist
        connection.execute(text("CREATE TABLE probe (x)"))
        connection.commit()
        sidecars = {p.name: mode(p) for p in path.parent.iterdir()}
    engine.dispose()
    assert sidecars == {"feedbot.db": 0o600, "feedbot.db-wal": 0o600, "feedbot.db-shm": 0o600}
    assert mode(tmp_path / "new") == mode(path.parent) == 0o700
    with sqlite3.connect(path) as connection:  # a rollback journal gets the database file's mode too
        connection.execute("PRAGMA journal_mode=PERSIST")
        connection.execute("INSERT INTO probe VALUES (1)")
    assert mode(path.with_name("feedbot.db-journal")) == 0o600


def test_a_database_left_world_readable_is_made_private(tmp_path, no_umask):
    path = tmp_path / "feedbot.db"
    for name in ("feedbot.db", "feedbot.db-wal", "feedbot.db-shm"):
        (tmp_path / name).touch(0o666)
        (tmp_path / name).chmod(0o644)
    db.make_engine(f"sqlite:///{path}").dispose()
    assert {p.name: mode(p) for p in tmp_path.iterdir()} == {
        "feedbot.db": 0o600, "feedbot.db-wal": 0o600, "feedbot.db-shm": 0o600}


def test_private_dir_creates_missing_parents_private_and_keeps_existing_modes(tmp_path, no_umask):
    shared = tmp_path / "shared"
    shared.mkdir(0o775)
    assert private_dir(shared / "a" / "b") == shared / "a" / "b"
    assert (mode(shared), mode(shared / "a"), mode(shared / "a" / "b")) == (0o775, 0o700, 0o700)
    private_dir(shared / "a" / "b")  # twice is fine


def test_inbox_folders_and_error_notes_are_private(engine, tmp_path, no_umask):
    from feedbot.sources.ingest import sweep_inbox

    inbox = tmp_path / "data" / "inbox"
    assert sweep_inbox(engine, inbox) == []
    assert mode(tmp_path / "data") == mode(inbox) == 0o700
    (inbox / "good.txt").write_bytes(b"new\n\nMar 11\n\nA title\n\nAn abstract.\n")
    (inbox / "bad.txt").write_bytes(b"new\n\nMar 11\n\nOnly a title\n")
    sweep_inbox(engine, inbox)
    assert mode(inbox / "done") == mode(inbox / "failed") == 0o700
    assert mode(inbox / "failed" / "bad.txt.error.txt") == 0o600


def test_everything_feedbot_writes_in_its_data_folder_is_private(env, tmp_path):
    """`feedbot ingest` end to end, with no umask: the data folder, the database, the inbox, done/,
    failed/, the error notes and the model files. Only the scraper's own dumps keep their modes."""
    from tests.test_cli import feedbot

    sqlite = env["DATABASE_URL"].startswith("sqlite")
    child = {k: v for k, v in env.items() if not (sqlite and k == "DATABASE_URL")}  # SQLite: the default file

    def run(*args, check=True):
        old = os.umask(0)  # inherited by the child
        try:
            return feedbot(child, *args, check=check)
        finally:
            os.umask(old)

    data = tmp_path / "data"
    run("db", "upgrade")
    run("ingest")
    (data / "inbox" / "good.txt").write_bytes((EXAMPLE_DUMPS / "000_648e4c2a7562aa40.txt").read_bytes())
    (data / "inbox" / "bad.txt").write_bytes(b"new\n\nMar 11\n\nOnly a title\n")
    assert run("ingest", check=False).returncode == 1
    written = {p.relative_to(data).as_posix(): mode(p) for p in data.rglob("*")}
    scraped = {"inbox/done/good.txt", "inbox/failed/bad.txt"}
    assert scraped <= set(written) and "inbox/failed/bad.txt.error.txt" in written
    assert any(name.startswith("model/tfidf-") for name in written)
    if sqlite:
        assert "feedbot.db" in written
    assert mode(data) == 0o700
    assert {name: m for name, m in written.items() if name not in scraped and m & 0o077} == {}


def test_operating_defaults():
    settings = load_settings({})
    assert settings.send_rate == 25 and settings.paid_broadcast is False
    assert settings.metrics_port is None and settings.metrics_listen == "0.0.0.0"
    assert settings.webhook_url is None and settings.webhook_secret is None
    assert (settings.webhook_listen, settings.webhook_port) == ("0.0.0.0", 8443)


def test_operating_values_are_read():
    settings = load_settings({
        "FEEDBOT_SEND_RATE": "12.5", "FEEDBOT_METRICS_PORT": "9108", "FEEDBOT_METRICS_LISTEN": "127.0.0.1",
        "FEEDBOT_WEBHOOK_URL": "https://bot.example.org/hook", "FEEDBOT_WEBHOOK_SECRET": "s3cret_-X",
        "FEEDBOT_WEBHOOK_LISTEN": "127.0.0.1", "FEEDBOT_WEBHOOK_PORT": "8080"})
    assert settings.send_rate == 12.5 and settings.metrics_port == 9108 and settings.metrics_listen == "127.0.0.1"
    assert settings.webhook_url == "https://bot.example.org/hook" and settings.webhook_secret == "s3cret_-X"
    assert (settings.webhook_listen, settings.webhook_port) == ("127.0.0.1", 8080)
    paid = load_settings({"FEEDBOT_PAID_BROADCAST": "1", "FEEDBOT_SEND_RATE": "1000"})
    assert paid.paid_broadcast is True and paid.send_rate == 1000
    assert load_settings({"FEEDBOT_PAID_BROADCAST": "0"}).paid_broadcast is False


@pytest.mark.parametrize(("env", "message"), [
    ({"FEEDBOT_SEND_RATE": "fast"}, "FEEDBOT_SEND_RATE must be a number"),
    ({"FEEDBOT_SEND_RATE": "0"}, "FEEDBOT_SEND_RATE must be above 0 and at most 30 "),
    ({"FEEDBOT_SEND_RATE": "-3"}, "FEEDBOT_SEND_RATE must be above 0"),
    ({"FEEDBOT_SEND_RATE": "nan"}, "FEEDBOT_SEND_RATE must be above 0"),
    ({"FEEDBOT_SEND_RATE": "inf"}, "FEEDBOT_SEND_RATE must be above 0"),
    ({"FEEDBOT_SEND_RATE": "31"}, r"at most 30 \(up to 1000 with FEEDBOT_PAID_BROADCAST=1\)"),
    ({"FEEDBOT_SEND_RATE": "1001", "FEEDBOT_PAID_BROADCAST": "1"},
     "FEEDBOT_SEND_RATE must be above 0 and at most 1000,"),
    ({"FEEDBOT_PAID_BROADCAST": "maybe"}, "FEEDBOT_PAID_BROADCAST must be 1 or 0"),
    ({"FEEDBOT_METRICS_PORT": "70000"}, "FEEDBOT_METRICS_PORT must be between 1 and 65535"),
    ({"FEEDBOT_METRICS_PORT": "http"}, "FEEDBOT_METRICS_PORT must be a whole number"),
    ({"FEEDBOT_METRICS_LISTEN": "a b"}, "FEEDBOT_METRICS_LISTEN must be an address"),
    ({"FEEDBOT_WEBHOOK_URL": "https://bot.example.org/hook"}, "FEEDBOT_WEBHOOK_SECRET must be set"),
    ({"FEEDBOT_WEBHOOK_URL": "http://bot.example.org/hook", "FEEDBOT_WEBHOOK_SECRET": "x"},
     "FEEDBOT_WEBHOOK_URL must be an https:// URL"),
    ({"FEEDBOT_WEBHOOK_URL": "https://bot.example.org/hook", "FEEDBOT_WEBHOOK_SECRET": "has space"},
     "FEEDBOT_WEBHOOK_SECRET must be 1-256 characters"),
    ({"FEEDBOT_WEBHOOK_URL": "https://h/x", "FEEDBOT_WEBHOOK_SECRET": "s" * 257}, "FEEDBOT_WEBHOOK_SECRET must be"),
    ({"FEEDBOT_WEBHOOK_PORT": "0"}, "FEEDBOT_WEBHOOK_PORT must be between 1 and 65535"),
    ({"FEEDBOT_WEBHOOK_LISTEN": "0.0.0.0/8"}, "FEEDBOT_WEBHOOK_LISTEN must be an address"),
])
def test_bad_operating_values_name_the_variable(env, message):
    with pytest.raises(ConfigError, match=message):
        load_settings(env)


def test_bad_operating_value_stops_the_cli_with_status_2(tmp_path):
    import subprocess

    env = {"PATH": "/usr/bin:/bin", "FEEDBOT_DATA_DIR": str(tmp_path), "FEEDBOT_SEND_RATE": "40"}
    done = subprocess.run([sys.executable, "-m", "feedbot.cli", "worker"], env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2 and "configuration error: FEEDBOT_SEND_RATE must be" in done.stderr

OPERATE_VARIABLES = ("FEEDBOT_SEND_RATE", "FEEDBOT_PAID_BROADCAST", "FEEDBOT_METRICS_PORT", "FEEDBOT_METRICS_LISTEN",
                     "FEEDBOT_WEBHOOK_URL", "FEEDBOT_WEBHOOK_SECRET", "FEEDBOT_WEBHOOK_LISTEN", "FEEDBOT_WEBHOOK_PORT")


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(OPERATE_VARIABLES),
                       st.text(max_size=40) | st.sampled_from(["1", "0", "25", "1000", "30.5", "8443", "https://h/p",
                                                               "s3cret", "127.0.0.1", "nan", "-1", "1e3"]),
                       max_size=8))
def test_any_operating_values_give_valid_settings_or_an_error_naming_one(env):
    try:
        settings = load_settings(env)
    except ConfigError as exc:
        assert any(name in str(exc) for name in env), str(exc)
        return
    high = 1000 if settings.paid_broadcast else 30
    assert 0 < settings.send_rate <= high
    assert settings.metrics_port is None or 1 <= settings.metrics_port <= 65535
    assert 1 <= settings.webhook_port <= 65535
    if settings.webhook_url is not None:
        assert settings.webhook_url.startswith("https://") and settings.webhook_secret


_SPACES = st.lists(st.sampled_from([" ", "  ", "\n", "\t", " \n"]), min_size=4, max_size=4)


@settings(max_examples=150, deadline=None)
@given(key=st.from_regex(r"[A-Za-z0-9]{16,32}", fullmatch=True), spaces=_SPACES,
       order=st.sampled_from(["id key", "key", "key id", "id key more"]),
       command=st.sampled_from(["/import", "/IMPORT", "/import@feedbot_bot"]),
       zotero=st.sampled_from(["zotero", "Zotero"]),
       form=st.sampled_from(["text", "repr", "json", "exception"]), token=st.sampled_from([None, "123:TOKEN"]))
def test_a_zotero_key_never_reaches_the_log_however_the_message_is_spaced_or_logged(
        key, spaces, order, command, zotero, form, token):
    words = [command, zotero] + order.replace("id", "4321").replace("key", key).split()
    text = "".join(w + s for w, s in zip(words, spaces, strict=False)) + "".join(words[len(spaces):])
    update = {"update_id": 1, "message": {"text": text, "chat": {"id": 5}}}
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    root = logging.getLogger()
    saved = root.handlers, root.level, sys.stdout
    sys.stdout = out
    try:
        setup_logging(load_settings({"TELEGRAM_BOT_TOKEN": token} if token else {}))
        handler = root.handlers[0]
        root.setLevel(logging.DEBUG)
        log = logging.getLogger("telegram.ext.test")
        if form == "text":
            log.debug("command %s from chat %s", text, 5)
        elif form == "repr":
            log.debug("Processing update %s", update)
        elif form == "json":
            log.debug("getUpdates returned %s", json.dumps([update]))
        else:
            try:
                raise ValueError(f"cannot handle {update!r}")
            except ValueError:
                log.exception("handler failed")
        handler.flush()
    finally:
        root.handlers, sys.stdout = saved[0], saved[2]
        root.setLevel(saved[1])
    assert key not in out.getvalue()
    assert "<key>" in out.getvalue()
