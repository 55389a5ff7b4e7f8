"""Settings read once from environment variables, validated so a typo fails at start, not at 8 am."""

from __future__ import annotations

import contextlib
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
    # Operating the worker (see `_operate_settings`): pacing, metrics, webhook mode.
    send_rate: float = 25.0  # digest messages a second
    paid_broadcast: bool = False  # digests sent with allow_paid_broadcast (Telegram Stars)
    metrics_port: int | None = None  # None: no Prometheus endpoint
    metrics_listen: str = "0.0.0.0"
    webhook_url: str | None = None  # None: long polling
    webhook_listen: str = "0.0.0.0"
    webhook_port: int = 8443
    webhook_secret: str | None = None
    leader_check_seconds: int = 10  # how often a standby tries to take over the lead (and polling)

    @property
    def model_dir(self) -> Path:
        return self.data_dir / "model"

    @property
    def safe_database_url(self) -> str:
        return mask_url(self.database_url)


PRIVATE_DIR = 0o700  # what feedbot creates is its own: papers, subscribers' chat ids and votes
PRIVATE_FILE = 0o600


def private_dir(path: Path) -> Path:
    """`path` as a folder, created (with any missing parents) without group or other access.

    The mode is set here, not left to the umask. A folder that exists keeps its mode: an admin
    may have opened an inbox to a scraper's group on purpose.
    """
    missing = []
    for folder in (path, *path.parents):
        if folder.exists():
            break
        missing.append(folder)
    for folder in reversed(missing):
        try:
            folder.mkdir(PRIVATE_DIR)
        except FileExistsError:  # made meanwhile by another process
            continue
        folder.chmod(PRIVATE_DIR)  # mkdir's mode passes through the umask
    return path


def private_file(path: Path, create: bool = True) -> None:
    """Create `path` empty without group or other access, or take such access from a file that has
    it (one an earlier feedbot left world-readable). A file we may not change is left, with a warning."""
    try:
        if create:
            with contextlib.suppress(FileExistsError):
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE))
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            path.chmod(mode & ~0o077)
    except FileNotFoundError:
        return
    except OSError as exc:  # not our file, a read-only file system: whoever opens it next will say more
        logging.getLogger(__name__).warning("cannot make %s private: %s", path, exc.strerror or exc)


def make_data_dir(settings: Settings) -> None:
    """Create the data folder and its model folder private (see private_dir); every command calls
    this before it opens the database, so nothing in them is created readable by others first."""
    private_dir(settings.model_dir)


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
        **_operate_settings(env),
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


MAX_SEND_RATE = 30.0  # Telegram's broadcast limit, messages a second
MAX_PAID_SEND_RATE = 1000.0  # with allow_paid_broadcast
SECRET_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,256}$")  # what Telegram accepts as a webhook secret_token


def _flag(env: Mapping[str, str], name: str) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw in ("", "0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise ConfigError(f"{name} must be 1 or 0, got {raw!r}")


def _operate_settings(env: Mapping[str, str]) -> dict:
    """Pacing, the Prometheus endpoint and webhook mode (see README, "Operate")."""
    paid = _flag(env, "FEEDBOT_PAID_BROADCAST")
    raw = env.get("FEEDBOT_SEND_RATE", "").strip() or "25"
    try:
        rate = float(raw)
    except ValueError:
        raise ConfigError(f"FEEDBOT_SEND_RATE must be a number of messages a second, got {raw!r}") from None
    high = MAX_PAID_SEND_RATE if paid else MAX_SEND_RATE
    if not 0 < rate <= high:  # also refuses nan and inf
        more = "" if paid else f" (up to {MAX_PAID_SEND_RATE:g} with FEEDBOT_PAID_BROADCAST=1)"
        raise ConfigError(f"FEEDBOT_SEND_RATE must be above 0 and at most {high:g}{more}, got {raw!r}")

    metrics_port = _int(env, "FEEDBOT_METRICS_PORT", 0, 1, 65535) or None
    url = env.get("FEEDBOT_WEBHOOK_URL", "").strip() or None
    secret = env.get("FEEDBOT_WEBHOOK_SECRET", "").strip() or None
    if url is not None:
        parts = urlsplit(url)
        if parts.scheme != "https" or not parts.hostname:
            raise ConfigError(f"FEEDBOT_WEBHOOK_URL must be an https:// URL (Telegram posts only to HTTPS), "
                              f"got {url!r}")
        if secret is None:
            raise ConfigError("FEEDBOT_WEBHOOK_SECRET must be set with FEEDBOT_WEBHOOK_URL: every update is checked "
                              "against it")
    if secret is not None and not SECRET_TOKEN.match(secret):
        raise ConfigError("FEEDBOT_WEBHOOK_SECRET must be 1-256 characters of A-Z, a-z, 0-9, _ and -")
    return {
        "send_rate": rate,
        "paid_broadcast": paid,
        "metrics_port": metrics_port,
        "metrics_listen": _host(env, "FEEDBOT_METRICS_LISTEN"),
        "webhook_url": url,
        "webhook_listen": _host(env, "FEEDBOT_WEBHOOK_LISTEN"),
        "webhook_port": _int(env, "FEEDBOT_WEBHOOK_PORT", 8443, 1, 65535),
        "webhook_secret": secret,
        "leader_check_seconds": _int(env, "FEEDBOT_LEADER_CHECK_SECONDS", 10, 1, 50),
    }


def _host(env: Mapping[str, str], name: str) -> str:
    """An address to listen on: an IP address or a host name, default every interface."""
    raw = env.get(name, "").strip() or "0.0.0.0"
    if not re.fullmatch(r"[A-Za-z0-9.:_-]{1,253}", raw):
        raise ConfigError(f"{name} must be an address to listen on such as 0.0.0.0 or 127.0.0.1, got {raw!r}")
    return raw


# Everything after `/import zotero` (user id and key, in either order, however spaced), up to the
# quote that ends the text in a logged update; `\n` as a repr or JSON writes a line break.
_ZOTERO_KEY = re.compile(r"(/import(?:@\w+)?(?:\s|\\[ntr])+zotero\b)(?:[^'\"\\]|\\[ntr])*", re.IGNORECASE)


class _RedactSecrets(logging.Filter):
    """Replace the bot token and the webhook secret in log records: httpx logs request URLs, which
    contain the token, and python-telegram-bot logs each call's parameters at DEBUG (setWebhook's
    secret_token among them) and raw updates (a Zotero key in an `/import zotero` message)."""

    def __init__(self, secrets: dict[str, str]) -> None:
        super().__init__()
        self.secrets = secrets  # secret → what is logged instead

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if any(secret in message for secret in self.secrets) or _ZOTERO_KEY.search(message):
            record.msg, record.args = self.redact(message), None  # raw updates are logged at DEBUG
        if record.exc_info:  # tracebacks quote URLs and messages too
            record.exc_text = self.redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True

    def redact(self, text: str) -> str:
        for secret, name in self.secrets.items():
            text = text.replace(secret, name)
        return _ZOTERO_KEY.sub(r"\1 <key>", text)


def setup_logging(settings: Settings) -> None:
    """One event per line on stdout; the token and webhook secret never printed; httpx's
    per-request lines quiet."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    secrets = {settings.telegram_token: "<token>", settings.webhook_secret: "<webhook secret>"}
    handler.addFilter(_RedactSecrets({secret: name for secret, name in secrets.items() if secret}))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
