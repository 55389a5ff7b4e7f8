"""A polite HTTP client for the sources: names feedbot, paces requests, retries what is worth
retrying (5xx, 429, network errors) with backoff honouring Retry-After, and times out every request.
"""

from __future__ import annotations

import email.utils
import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

import httpx

from feedbot import __version__

log = logging.getLogger(__name__)

USER_AGENT = f"feedbot/{__version__} (research-paper digests on Telegram; python-httpx)"
MAX_BODY_BYTES = 64 * 1024 * 1024


class SourceError(RuntimeError):
    """A source's answer was refused (or never came); nothing of it is stored."""


def retry_after(response: httpx.Response, now: datetime | None = None) -> float | None:
    """Seconds a 429/503 asks us to wait (a number or an HTTP date), or None when it does not say."""
    raw = response.headers.get("retry-after", "").strip()
    if not raw:
        return None
    if raw.isdigit():
        return float(raw)
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


class Client:
    """GETs with a minimum interval between requests (arXiv asks for 3 s) and bounded retries."""

    def __init__(self, min_interval: float = 0.0, timeout: float = 30.0, retries: int = 4,
                 backoff: float = 2.0, max_wait: float = 300.0, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.min_interval, self.retries, self.backoff, self.max_wait = min_interval, retries, backoff, max_wait
        self.sleep, self.clock = sleep, clock
        self._last: float | None = None
        self.http = httpx.Client(headers={"User-Agent": USER_AGENT}, timeout=timeout, follow_redirects=True)

    def _pace(self) -> None:
        if self._last is not None and self.min_interval > 0:
            wait = self._last + self.min_interval - self.clock()
            if wait > 0:
                self.sleep(wait)
        self._last = self.clock()

    def get(self, url: str, params: Mapping[str, str], accept: tuple[str, ...]) -> httpx.Response:
        """The 200 answer, with one of the `accept` content types; SourceError otherwise."""
        attempts = self.retries + 1
        for attempt in range(1, attempts + 1):
            self._pace()
            try:
                response = self.http.get(url, params=params)
            except httpx.TransportError as exc:  # timeouts, refused connections, broken transfers
                problem, wait = f"{type(exc).__name__}: {exc}", self.backoff * 2 ** (attempt - 1)
            except httpx.HTTPError as exc:  # an undecodable body, a redirect loop: retrying won't help
                raise SourceError(f"{url} answered unreadably ({type(exc).__name__}: {exc})") from None
            else:
                if response.status_code == 200:
                    return self._checked(response, accept)
                if response.status_code != 429 and response.status_code < 500:
                    raise SourceError(f"{response.url} answered HTTP {response.status_code}")
                problem = f"HTTP {response.status_code}"
                asked = retry_after(response)
                wait = asked if asked is not None else self.backoff * 2 ** (attempt - 1)
                if wait > self.max_wait:
                    raise SourceError(f"{response.url} answered {problem} and asked to wait {wait:.0f} s; "
                                      "the next run tries again")
            if attempt == attempts:
                raise SourceError(f"{url} failed {attempts} times, last with {problem}")
            log.warning("source %s: %s; retrying in %.1f s (attempt %d of %d)", url, problem, wait, attempt,
                        attempts)
            self.sleep(wait)
        raise AssertionError("unreachable")

    @staticmethod
    def _checked(response: httpx.Response, accept: tuple[str, ...]) -> httpx.Response:
        kind = response.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if kind not in accept:
            raise SourceError(f"{response.url} answered {kind or 'no content type'}, expected "
                              f"{' or '.join(accept)} (an error page?)")
        if len(response.content) > MAX_BODY_BYTES:
            raise SourceError(f"{response.url} answered {len(response.content):,} bytes, over the cap")
        return response
