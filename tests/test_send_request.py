"""The worker's request for `sendMessage` (aiohttp under python-telegram-bot): Telegram's answers
raise python-telegram-bot's errors, a request that reached the server is never taken for one that
did not (a digest would be sent twice), proxies come from the environment as for every other call,
and nothing of the bot's token is kept in an error."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import threading

import pytest
from telegram import Bot
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter, TimedOut

from feedbot.delivery import outcomes, telegram_send
from feedbot.delivery.messages import Button


class RawServer:
    """Takes connections and reads each request. `mode`: "drop" closes without an answer, "hold"
    never answers, "redirect" answers 307 to `location`, "bot" answers like the Bot API. Keeps
    each request line."""

    def __init__(self, mode: str, location: str = "") -> None:
        self.mode, self.location, self.lines, self.held = mode, location, [], []
        self.requests: list[tuple[list[str], bytes]] = []  # each request's head lines and body
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.sock.accept()
            except OSError:
                return
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = connection.recv(65536)
                if not chunk:
                    break
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            lines = head.decode().split("\r\n")
            length = next((int(h.split(":", 1)[1]) for h in lines if h.lower().startswith("content-length")), 0)
            while len(body) < length:
                body += connection.recv(65536)
            self.lines.append(lines[0])
            self.requests.append((lines, body))
            if self.mode == "hold":
                self.held.append(connection)
                continue
            with connection:
                if self.mode == "redirect":
                    connection.sendall(b"HTTP/1.1 307 Temporary Redirect\r\nLocation: " + self.location.encode()
                                       + b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                elif self.mode == "bot":
                    result = {"id": 1, "is_bot": True, "first_name": "b", "username": "b"} if "/getMe" in lines[0] \
                        else {"message_id": 5, "date": 0, "chat": {"id": 7, "type": "private"}, "text": "hi"}
                    payload = json.dumps({"ok": True, "result": result}).encode()
                    connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                                       b"Content-Length: %d\r\n\r\n" % len(payload) + payload)

    def close(self) -> None:
        self.sock.close()
        for connection in self.held:
            connection.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def send_all(base_url: str, count: int = 1, text: str = "hi", **timeouts) -> list:
    """`count` sendMessage at once through the worker's request; what each returned or raised."""
    request = telegram_send.SendMessageRequest(timeouts.pop("pool", 4), **timeouts)
    bot = Bot("123:SECRET-TOKEN", base_url=base_url, request=request)

    async def run():
        try:
            return await asyncio.gather(*(telegram_send.send_text(bot, 7, text, [[Button("👍", "v:1:+")]], True)
                                          for _ in range(count)), return_exceptions=True)
        finally:
            await request.shutdown()
    return asyncio.run(run())


def test_a_refused_connection_over_aiohttp_is_refused_not_unknown(no_proxy_set):
    """The worker's request (sendMessage over aiohttp) against a port nobody listens on: refused,
    so the digest is handed back `claimed` rather than left in doubt."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    request = telegram_send.SendMessageRequest(connect_timeout=2)
    bot = Bot("123:ABC", base_url=f"http://127.0.0.1:{port}/bot", request=request)

    async def send():
        try:
            await telegram_send.send_text(bot, 1, "hello")
        except Exception as exc:  # noqa: BLE001 - the exception is what is checked
            return exc
        finally:
            await request.shutdown()

    error = asyncio.run(send())
    assert isinstance(error, NetworkError) and "aiohttp" in str(error)
    assert outcomes.classify(error) == outcomes.REFUSED


def test_send_message_over_aiohttp_raises_python_telegram_bots_errors(no_proxy_set, telegram):
    """sendMessage through the worker's request goes over aiohttp, and Telegram's answers come out
    as the same exceptions as over httpx: 429 RetryAfter, 403 Forbidden, 400 BadRequest, an answer
    later than the read timeout TimedOut (in doubt); a message with buttons arrives whole."""
    request = telegram_send.SendMessageRequest(4, read_timeout=3)
    bot = Bot(telegram.token, base_url=telegram.base_url, request=request)
    for kind in ("429", "403", "chat_not_found"):
        telegram.inject(7, kind, "sendMessage")
    telegram.inject(7, "slow", "sendMessage", delay=10)

    async def send():
        async with bot:
            errors = []
            for _ in range(4):
                try:
                    await telegram_send.send_text(bot, 7, "hi")
                except Exception as exc:  # noqa: BLE001 - the exceptions are what is checked
                    errors.append(exc)
            sent = await telegram_send.send_text(bot, 7, "<b>hello</b> &amp; more", [[Button("Like", "v:1")]])
            return errors, sent, request._session is not None

    (throttled, blocked, gone, late), message_id, over_aiohttp = asyncio.run(send())
    assert over_aiohttp
    assert isinstance(throttled, RetryAfter)
    assert isinstance(blocked, Forbidden)
    assert isinstance(gone, BadRequest) and telegram_send.is_chat_gone(gone)
    assert isinstance(late, TimedOut) and outcomes.classify(late) == outcomes.UNKNOWN
    [*_, last] = telegram.messages_to(7)
    assert (last.message_id, last.text, last.parse_mode) == (message_id, "<b>hello</b> &amp; more", "HTML")
    assert last.buttons == [[{"text": "Like", "callback_data": "v:1"}]]


def test_a_request_that_arrived_and_was_dropped_is_in_doubt(no_proxy_set):
    server = RawServer("drop")
    try:
        results = send_all(f"http://127.0.0.1:{server.port}/bot", 2, connect_timeout=5, read_timeout=5)
    finally:
        server.close()
    assert len(server.lines) == 2
    assert [outcomes.classify(r) for r in results] == [outcomes.UNKNOWN] * 2, results


def test_a_request_waiting_for_a_full_pool_is_refused_and_never_arrives(no_proxy_set):
    server = RawServer("hold")
    try:
        results = send_all(f"http://127.0.0.1:{server.port}/bot", 2, pool=1, connect_timeout=1, pool_timeout=1,
                           read_timeout=6)
    finally:
        server.close()
    assert len(server.lines) == 1
    assert sorted(outcomes.classify(r) for r in results) == [outcomes.REFUSED, outcomes.UNKNOWN], results


def test_a_redirect_is_not_followed_and_the_token_is_not_kept(no_proxy_set):
    """A 307 re-posts the message elsewhere when followed: if the second hop refused it, the
    digest would be sent again though the first hop took it. Not followed, it is an error; and no
    error text holds the bot's token (errors are stored with the delivery)."""
    elsewhere = RawServer("bot")
    first = RawServer("redirect", f"http://127.0.0.1:{elsewhere.port}/bot123:SECRET-TOKEN/sendMessage")
    try:
        [redirected] = send_all(f"http://127.0.0.1:{first.port}/bot", connect_timeout=5, read_timeout=5)
        [refused] = send_all(f"http://127.0.0.1:{free_port()}/bot", connect_timeout=5)
    finally:
        first.close()
        elsewhere.close()
    assert elsewhere.lines == [] and len(first.lines) == 1
    assert isinstance(redirected, Exception) and outcomes.classify(redirected) != outcomes.REFUSED
    assert isinstance(refused, NetworkError) and outcomes.classify(refused) == outcomes.REFUSED
    for error in (redirected, refused):
        assert "SECRET" not in str(error) and "SECRET" not in outcomes.describe(
            outcomes.classify(error), f"{type(error).__name__}: {error}", 0, 1)


@pytest.fixture
def no_proxy_set(monkeypatch):
    """No proxy named by the environment the tests run in (any `*_proxy` variable, whatever its
    case or prefix): each test names its own."""
    for name in list(os.environ):
        if name.lower().endswith("_proxy"):
            monkeypatch.delenv(name)
    return monkeypatch


def test_send_message_goes_as_json_with_its_objects_as_objects(no_proxy_set):
    """The body is JSON, which the Bot API takes for every method but file uploads: the keyboard
    and the preview options as objects, the chat id a number, the flag a boolean."""
    server = RawServer("bot")
    try:
        [message_id] = send_all(f"http://127.0.0.1:{server.port}/bot", text="Naïve «Bayes» & <b>co</b>")
    finally:
        server.close()
    assert message_id == 5
    [(head, body)] = server.requests
    assert "content-type: application/json" in [line.lower() for line in head]
    assert json.loads(body) == {
        "chat_id": 7, "text": "Naïve «Bayes» & <b>co</b>", "parse_mode": "HTML",
        "link_preview_options": {"is_disabled": True}, "allow_paid_broadcast": True,
        "reply_markup": {"inline_keyboard": [[{"text": "👍", "callback_data": "v:1:+"}]]}}


@pytest.mark.parametrize("proxied", [False, True])
def test_a_message_that_cannot_be_encoded_is_rejected_without_a_request(no_proxy_set, proxied):
    """A text no encoding can carry (a lone surrogate) never reaches Telegram, directly or through
    a proxy: refused as a bad request (the digest fails, its picks given back), not taken for one
    that may have arrived."""
    server = RawServer("bot")
    if proxied:
        no_proxy_set.setenv("HTTP_PROXY", f"http://127.0.0.1:{server.port}")
    url = "http://api.telegram.invalid/bot" if proxied else f"http://127.0.0.1:{server.port}/bot"
    try:
        [error] = send_all(url, text="broken \ud800 text", connect_timeout=5, read_timeout=5)
    finally:
        server.close()
    assert isinstance(error, BadRequest) and outcomes.classify(error) == outcomes.REJECTED
    assert "broken" not in str(error)  # the message's words are not stored as its error
    assert server.lines == []


@pytest.mark.parametrize("variable", ["FTP_PROXY", "npm_config_https_proxy", "NO_PROXY"])
def test_a_proxy_httpx_does_not_use_leaves_send_message_direct(no_proxy_set, variable):
    """Only the variables httpx reads (`HTTP(S)_PROXY`, `ALL_PROXY`) move sendMessage off the
    direct path: an FTP proxy, a tool's own setting or `NO_PROXY` alone do not."""
    server = RawServer("bot")
    no_proxy_set.setenv(variable, "http://127.0.0.1:9")  # nothing listens there
    try:
        [message_id] = send_all(f"http://127.0.0.1:{server.port}/bot")
    finally:
        server.close()
    assert message_id == 5
    assert telegram_send.SendMessageRequest()._direct


@pytest.mark.parametrize("variable, value", [
    ("HTTP_PROXY", "http://127.0.0.1:{port}"), ("http_proxy", "127.0.0.1:{port}"),  # no scheme: http
    ("ALL_PROXY", "http://127.0.0.1:{port}")])
def test_every_proxy_setting_httpx_takes_carries_send_message(no_proxy_set, variable, value):
    """sendMessage takes the proxy by the same rules as every other call (httpx's): with or
    without a scheme, by protocol or for all."""
    proxy = RawServer("bot")
    no_proxy_set.setenv(variable, value.format(port=proxy.port))
    try:
        [message_id] = send_all("http://api.telegram.invalid/bot", connect_timeout=5, read_timeout=5)
    finally:
        proxy.close()
    assert message_id == 5
    assert [line.split()[1] for line in proxy.lines] == ["http://api.telegram.invalid/bot123:SECRET-TOKEN/sendMessage"]


def test_no_proxy_sends_directly_to_the_hosts_it_names(no_proxy_set):
    """A Bot API server named in NO_PROXY (a local one) is reached directly, whatever proxy the
    environment names for the rest."""
    proxy, bot_api = RawServer("bot"), RawServer("bot")
    no_proxy_set.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.port}")
    no_proxy_set.setenv("NO_PROXY", "127.0.0.1")
    try:
        [message_id] = send_all(f"http://127.0.0.1:{bot_api.port}/bot", connect_timeout=5, read_timeout=5)
    finally:
        proxy.close()
        bot_api.close()
    assert message_id == 5
    assert proxy.lines == [] and [line.split()[1] for line in bot_api.lines] == ["/bot123:SECRET-TOKEN/sendMessage"]


def test_send_message_goes_through_the_proxy_the_environment_names(no_proxy_set):
    """Every other call goes through httpx, which takes HTTP(S)_PROXY from the environment:
    sendMessage does too, or where Telegram is reachable only through a proxy no digest would go."""
    proxy = RawServer("bot")
    no_proxy_set.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.port}")
    request = telegram_send.SendMessageRequest(4, read_timeout=5, connect_timeout=5)
    bot = Bot("123:ABC", base_url="http://api.telegram.invalid/bot", request=request)

    async def run():
        async with bot:  # getMe, over httpx
            return await telegram_send.send_text(bot, 7, "hi")

    try:
        message_id = asyncio.run(run())
    finally:
        proxy.close()
    assert message_id == 5
    assert [line.split()[1] for line in proxy.lines] == ["http://api.telegram.invalid/bot123:ABC/getMe",
                                                        "http://api.telegram.invalid/bot123:ABC/sendMessage"]


def test_nothing_is_sent_after_shutdown(no_proxy_set):
    """A sender still running when the bot shut down gets an error, as over httpx, rather than a
    new connection nobody closes."""
    server = RawServer("bot")
    request = telegram_send.SendMessageRequest(4, read_timeout=5, connect_timeout=5)
    bot = Bot("123:ABC", base_url=f"http://127.0.0.1:{server.port}/bot", request=request)

    async def run():
        async with bot:
            sent = await telegram_send.send_text(bot, 7, "hi")
        try:
            await telegram_send.send_text(bot, 7, "after")
        except NetworkError as error:
            return sent, error

    try:
        sent, error = asyncio.run(run())
    finally:
        server.close()
    assert sent == 5 and "shut down" in str(error)
    assert [line.split()[1].rsplit("/", 1)[1] for line in server.lines] == ["getMe", "sendMessage"]
