"""Settings read once from environment variables, validated so a typo fails at start, not at 8 am."""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    inbox: Path
    database_url: str
    log_level: str
    telegram_token: str | None
    telegram_api_url: str | None
    ingest_every_minutes: int
    candidate_days: int
    vote_half_life_days: float
    paper_link: str = "https://arxiv.org/search/?query={query}&searchtype=title"
    hf_api_url: str = "https://huggingface.co"
    arxiv_api_url: str = "https://export.arxiv.org/api/query"
    openalex_api_url: str = "https://api.openalex.org"  # library import: abstracts by DOI
    zotero_api_url: str = "https://api.zotero.org"  # library import: `/import zotero`
    sources: tuple[str, ...] = ()  # e.g. ("hf", "arxiv:cs.LG+cs.CL"); empty: the inbox only

    @property
    def model_dir(self) -> Path:
        return self.data_dir / "model"

    @property
    def safe_database_url(self) -> str:
        return mask_url(self.database_url)


def normalise_database_url(url: str) -> str:
    """Point `postgres://` and `postgresql://` URLs at the psycopg 3 driver SQLAlchemy needs."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def mask_url(url: str) -> str:
    """Hide the password in a database URL so it can be printed and logged."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = netloc[0].split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[1]}"))


def _int(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low} and {high}, got {value}")
    return value


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Build Settings from `env` (default: the process environment)."""
    env = os.environ if env is None else env
    data_dir = Path(env.get("FEEDBOT_DATA_DIR", "").strip() or "./data").expanduser().resolve()
    inbox_raw = env.get("FEEDBOT_INBOX", "").strip()
    inbox = Path(inbox_raw).expanduser().resolve() if inbox_raw else data_dir / "inbox"

    url = env.get("DATABASE_URL", "").strip() or f"sqlite:///{data_dir / 'feedbot.db'}"
    url = normalise_database_url(url)
    if not url.startswith(("sqlite:", "postgresql+psycopg:")):
        raise ConfigError(
            f"DATABASE_URL must be sqlite:///PATH or postgres://USER:PASS@HOST/DB, "
            f"got {mask_url(url)!r}"
        )

    level = env.get("FEEDBOT_LOG_LEVEL", "").strip().upper() or "INFO"
    if level not in LOG_LEVELS:
        raise ConfigError(f"FEEDBOT_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, got {level!r}")

    token = env.get("TELEGRAM_BOT_TOKEN", "").strip() or None
    if token is not None and ":" not in token:
        raise ConfigError("TELEGRAM_BOT_TOKEN does not look like a bot token (expected 123456:ABC…)")
    api_url = env.get("FEEDBOT_TELEGRAM_API_URL", "").strip().rstrip("/") or None
    if api_url is not None and not api_url.startswith(("http://", "https://")):
        raise ConfigError(f"FEEDBOT_TELEGRAM_API_URL must start with http:// or https://, got {api_url!r}")

    half_life_raw = env.get("FEEDBOT_VOTE_HALF_LIFE_DAYS", "").strip() or "90"
    try:
        half_life = float(half_life_raw)
    except ValueError:
        raise ConfigError(f"FEEDBOT_VOTE_HALF_LIFE_DAYS must be a number, got {half_life_raw!r}") from None
    if half_life <= 0:
        raise ConfigError("FEEDBOT_VOTE_HALF_LIFE_DAYS must be positive")

    return Settings(
        **_source_settings(env),
        data_dir=data_dir,
        inbox=inbox,
        database_url=url,
        log_level=level,
        telegram_token=token,
        telegram_api_url=api_url,
        ingest_every_minutes=_int(env, "FEEDBOT_INGEST_EVERY", 10, 1, 24 * 60),
        candidate_days=_int(env, "FEEDBOT_CANDIDATE_DAYS", 2, 1, 365),
        vote_half_life_days=half_life,
    )


def _http_url(env: Mapping[str, str], name: str, default: str) -> str:
    url = env.get(name, "").strip().rstrip("/") or default
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"{name} must be an http:// or https:// URL, got {url!r}")
    return url


def _source_settings(env: Mapping[str, str]) -> dict:
    """The link template and the built-in sources (see README, "Sources")."""
    from feedbot.sources.spec import SourceSpecError, parse_sources  # local: sources import config

    template = env.get("FEEDBOT_PAPER_LINK", "").strip() or Settings.paper_link
    from feedbot.store.links import check_template

    try:
        check_template(template)
    except ValueError as exc:
        raise ConfigError(f"FEEDBOT_PAPER_LINK must be an http(s) URL containing {{title}} or {{query}}: {exc}, "
                          f"got {template!r}") from None
    try:
        sources = tuple(parse_sources(env.get("FEEDBOT_SOURCES", "")))
    except SourceSpecError as exc:
        raise ConfigError(f"FEEDBOT_SOURCES: {exc}") from None
    return {
        "paper_link": template,
        "hf_api_url": _http_url(env, "FEEDBOT_HF_API_URL", Settings.hf_api_url),
        "arxiv_api_url": _http_url(env, "FEEDBOT_ARXIV_API_URL", Settings.arxiv_api_url),
        "openalex_api_url": _http_url(env, "FEEDBOT_OPENALEX_API_URL", Settings.openalex_api_url),
        "zotero_api_url": _http_url(env, "FEEDBOT_ZOTERO_API_URL", Settings.zotero_api_url),
        "sources": tuple(s.text for s in sources),
    }


_ZOTERO_KEY = re.compile(r"(/import(?:@\w+)?\s+zotero\s+\S+\s+)[^\s'\"]+", re.IGNORECASE)


class _RedactToken(logging.Filter):
    """Replace the bot token in log records (httpx logs request URLs, and they contain it), and a
    Zotero key in a logged `/import zotero` message."""

    def __init__(self, token: str) -> None:
        super().__init__()
        self.token = token

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if self.token in message or _ZOTERO_KEY.search(message):  # raw updates are logged at DEBUG
            record.msg = _ZOTERO_KEY.sub(r"\1<key>", message.replace(self.token, "<token>"))
            record.args = None
        if record.exc_info:  # tracebacks quote URLs too
            text = logging.Formatter().formatException(record.exc_info)
            record.exc_text, record.exc_info = text.replace(self.token, "<token>"), None
        return True


def setup_logging(settings: Settings) -> None:
    """One event per line on stdout; the token never printed; httpx's per-request lines quiet."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    if settings.telegram_token:
        handler.addFilter(_RedactToken(settings.telegram_token))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
