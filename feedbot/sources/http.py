"""A polite HTTP client for the sources: names feedbot, paces requests, retries what is worth
retrying (5xx, 429, network errors) with backoff honouring Retry-After, and bounds every request.

Bounded in time: httpx's timeout is per read, so a server trickling a byte a second would hold a
fetch forever; here every socket read, write and connect of a request ends by its deadline (the
whole exchange: connect, redirects, headers and body). Bounded in size: the body is streamed and
refused as soon as it passes the cap, whatever Content-Length says or whether it says anything.
"""

from __future__ import annotations

import email.utils
import logging
import re
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

import httpcore
import httpx

from feedbot import __version__

log = logging.getLogger(__name__)

USER_AGENT = f"feedbot/{__version__} (research-paper digests on Telegram; python-httpx)"
MAX_BODY_BYTES = 64 * 1024 * 1024
DEADLINE = 120.0  # seconds for one whole request, body included
MAX_REDIRECTS = 20
LONGEST_WAIT = 1e9  # a Retry-After beyond this is read as this: the arithmetic stays finite
_DELAY_SECONDS = re.compile(r"[0-9]+")  # RFC 9110's delay-seconds: ASCII digits only ("²" or "٣" are not)


class SourceError(RuntimeError):
    """A source's answer was refused (or never came); nothing of it is stored."""


def parse_retry_after(value: str, now: datetime | None = None) -> float | None:
    """Seconds a Retry-After value asks for (RFC 9110: delay-seconds or an HTTP-date), between 0 and
    LONGEST_WAIT; None when the value is malformed (negative, fractional, garbage, an impossible date)."""
    text = value.strip()
    if _DELAY_SECONDS.fullmatch(text):
        return min(float(text), LONGEST_WAIT)
    try:
        when = email.utils.parsedate_to_datetime(text)  # IMF-fixdate, RFC 850 and asctime forms
        if when.tzinfo is None:  # asctime carries no zone; HTTP dates are GMT
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return min(max(0.0, seconds), LONGEST_WAIT)  # a date in the past: no wait


def retry_after(response: httpx.Response, now: datetime | None = None) -> float | None:
    """Seconds a 429/503 asks us to wait, or None when it does not say (or says it malformed)."""
    return parse_retry_after(response.headers.get("retry-after", ""), now)


class _Deadline:
    """When the request in flight must be over (time.monotonic()), read by each of its socket calls."""

    def __init__(self) -> None:
        self.at: float | None = None

    def clamp(self, timeout: float | None, error: type[Exception]) -> float | None:
        """The timeout for one socket call: its own, cut to what is left; `error` when nothing is."""
        if self.at is None:
            return timeout
        left = self.at - time.monotonic()
        if left <= 0:
            raise error("the request's deadline passed")
        return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    def __init__(self, stream: httpcore.NetworkStream, deadline: _Deadline) -> None:
        self.stream, self.deadline = stream, deadline

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self.stream.read(max_bytes, self.deadline.clamp(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self.stream.write(buffer, self.deadline.clamp(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self.stream.close()

    def start_tls(self, ssl_context, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore.NetworkStream:
        timeout = self.deadline.clamp(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self.stream.start_tls(ssl_context, server_hostname, timeout), self.deadline)

    def get_extra_info(self, info: str):
        return self.stream.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    """httpcore's own sockets, each call's timeout cut to the request's deadline."""

    def __init__(self, deadline: _Deadline) -> None:
        self.backend, self.deadline = httpcore.SyncBackend(), deadline

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options=None) -> httpcore.NetworkStream:
        timeout = self.deadline.clamp(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self.backend.connect_tcp(host, port, timeout, local_address, socket_options),
                               self.deadline)

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options=None) -> httpcore.NetworkStream:
        timeout = self.deadline.clamp(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self.backend.connect_unix_socket(path, timeout, socket_options), self.deadline)

    def sleep(self, seconds: float) -> None:
        self.backend.sleep(seconds)


class _DeadlineTransport(httpx.HTTPTransport):
    """httpx's transport over the deadline-bound sockets. httpx takes no network backend, so the
    pool it would build is built here with one (httpx's own methods only use `_pool`)."""

    def __init__(self, deadline: _Deadline) -> None:  # no super().__init__(): it would build a second pool
        self._pool = httpcore.ConnectionPool(ssl_context=httpx.create_ssl_context(), keepalive_expiry=5.0,
                                             network_backend=_DeadlineBackend(deadline))


class Client:
    """GETs with a minimum interval between requests (arXiv asks for 3 s) and bounded retries.

    `timeout` bounds each socket read (silence), `deadline` a whole request, `max_body` its body.
    One request at a time: a client is not shared between threads.
    """

    def __init__(self, min_interval: float = 0.0, timeout: float = 30.0, retries: int = 4,
                 backoff: float = 2.0, max_wait: float = 300.0, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic, deadline: float = DEADLINE,
                 max_body: int = MAX_BODY_BYTES) -> None:
        self.min_interval, self.retries, self.backoff, self.max_wait = min_interval, retries, backoff, max_wait
        self.sleep, self.clock, self.deadline, self.max_body = sleep, clock, deadline, max_body
        self._last: float | None = None
        self._deadline = _Deadline()
        self.http = httpx.Client(headers={"User-Agent": USER_AGENT}, timeout=timeout,
                                 transport=_DeadlineTransport(self._deadline))

    def close(self) -> None:
        self.http.close()

    def _pace(self) -> None:
        if self._last is not None and self.min_interval > 0:
            wait = self._last + self.min_interval - self.clock()
            if wait > 0:
                self.sleep(wait)
        self._last = self.clock()

    def get(self, url: str, params: Mapping[str, str], accept: tuple[str, ...],
            headers: Mapping[str, str] | None = None) -> httpx.Response:
        """The 200 answer, read whole, with one of the `accept` content types; SourceError otherwise."""
        attempts = self.retries + 1
        for attempt in range(1, attempts + 1):
            self._pace()
            try:
                response = self._fetch(url, params, accept, headers)
            except httpx.TransportError as exc:  # timeouts, refused connections, broken transfers
                problem, wait = f"{type(exc).__name__}: {exc}", self.backoff * 2 ** (attempt - 1)
            except httpx.HTTPError as exc:  # an undecodable body, a redirect loop: retrying won't help
                raise SourceError(f"{url} answered unreadably ({type(exc).__name__}: {exc})") from None
            else:
                if response.status_code == 200:
                    return response
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

    def _fetch(self, url: str, params: Mapping[str, str], accept: tuple[str, ...],
               headers: Mapping[str, str] | None) -> httpx.Response:
        """One attempt within the deadline, redirects followed: a 200 read whole, anything else unread."""
        self._deadline.at = time.monotonic() + self.deadline
        try:
            request = self.http.build_request("GET", url, params=params, headers=headers)
            for _ in range(MAX_REDIRECTS + 1):  # followed here, so no redirect's body is ever read
                response = self.http.send(request, stream=True, follow_redirects=False)
                try:
                    if response.next_request is None:
                        return self._read(response, accept) if response.status_code == 200 else response
                    request = response.next_request
                finally:
                    response.close()
            raise httpx.TooManyRedirects(f"more than {MAX_REDIRECTS} redirects", request=request)
        except httpx.TimeoutException as exc:
            if time.monotonic() < self._deadline.at:
                raise
            raise type(exc)(f"no whole answer within the {self.deadline:g} s deadline") from None
        finally:
            self._deadline.at = None

    def _read(self, response: httpx.Response, accept: tuple[str, ...]) -> httpx.Response:
        """The answer with its body read, refused as soon as the body passes the cap."""
        kind = response.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if kind not in accept:
            raise SourceError(f"{response.url} answered {kind or 'no content type'}, expected "
                              f"{' or '.join(accept)} (an error page?)")
        over = f"{response.url} answered more than the {self.max_body:,}-byte cap"
        declared = response.headers.get("content-length", "").strip()
        if declared.isascii() and declared.isdigit() and (len(declared) > 18 or int(declared) > self.max_body):
            raise SourceError(f"{over} (Content-Length {declared[:30]})")
        body = bytearray()
        for chunk in response.iter_bytes():  # decoded: a small gzip bomb counts at its full size
            body += chunk
            if len(body) > self.max_body:
                raise SourceError(over)
        kept = [(k, v) for k, v in response.headers.multi_items()
                if k.lower() not in ("content-encoding", "content-length", "transfer-encoding")]
        return httpx.Response(200, headers=kept, content=bytes(body), request=response.request)
