"""Webhook mode (FEEDBOT_WEBHOOK_URL): Telegram posts updates to the worker instead of the worker
polling for them. python-telegram-bot's own webhook server (tornado) receives them: it registers
the URL with `setWebhook` and the secret, and refuses (403) every request whose
X-Telegram-Bot-Api-Secret-Token header is not that secret.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from urllib.parse import urlsplit

from telegram import Update
from telegram.ext import Application

from feedbot.config import Settings


def url_path(webhook_url: str) -> str:
    """The path the local server answers on: the public URL's path (a reverse proxy passes it on)."""
    return urlsplit(webhook_url).path.strip("/")


def check_port(settings: Settings) -> None:
    """OSError naming the settings when the webhook's address cannot be listened on: said before
    the worker starts, rather than as a traceback once the bot is up."""
    host, port = settings.webhook_listen, settings.webhook_port
    try:
        for family, kind, proto, _, address in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                                  flags=socket.AI_PASSIVE):
            with socket.socket(family, kind, proto) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as tornado does
                probe.bind(address)
    except OSError as exc:
        raise OSError(f"cannot listen for the webhook on {host}:{port} "
                      f"(FEEDBOT_WEBHOOK_LISTEN, FEEDBOT_WEBHOOK_PORT): {exc}") from exc


def run(application: Application, settings: Settings, stop_signals: Sequence[int]) -> None:
    """Serve the webhook on FEEDBOT_WEBHOOK_LISTEN:FEEDBOT_WEBHOOK_PORT until a stop signal.
    Updates that arrived while no worker ran are answered, not dropped."""
    if not settings.webhook_url or not settings.webhook_secret:
        raise ValueError("webhook mode needs FEEDBOT_WEBHOOK_URL and FEEDBOT_WEBHOOK_SECRET")
    application.run_webhook(
        listen=settings.webhook_listen, port=settings.webhook_port, url_path=url_path(settings.webhook_url),
        webhook_url=settings.webhook_url, secret_token=settings.webhook_secret,
        allowed_updates=Update.ALL_TYPES, drop_pending_updates=False, stop_signals=stop_signals)
