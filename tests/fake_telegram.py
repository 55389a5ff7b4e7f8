"""A Bot API server on 127.0.0.1 that behaves like Telegram on the methods feedbot uses.

python-telegram-bot is pointed at it with `base_url`; simulated users send messages and press
buttons by queueing updates, which the bot fetches by long polling with offsets. The server
checks what Telegram checks (HTML entities, 4096 UTF-16 units of the parsed text, 64-byte callback
data, "message is not modified") and can inject 429 with retry_after, 403, "chat not found", a group
migrated to a supergroup (400 with `migrate_to_chat_id`) and slow answers for a chosen chat, or hold
every answer for a while (`latency`, Telegram far away) and count the most requests it held at once
(`peak`). Users' messages carry Telegram's `bot_command` entity, and can be edited. Groups and channels: members
write and tap there, administrators are answered by getChatMember, channels post without a sender,
the bot is added or removed (`my_chat_member`), and a group becomes a supergroup (both service
messages, and 400 with `migrate_to_chat_id` for anything sent to the old id after).
As Telegram, it refuses getUpdates while a webhook is set, and a getUpdates ends one still waiting
with a 409 Conflict (`conflicts` counts them: two bots polling at once). For webhook mode, the
`*_update` methods build what Telegram would post instead of queueing it.
"""

from __future__ import annotations

import html
import itertools
import json
import re
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

ALLOWED_TAGS = {"b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "a", "code", "pre",
                "tg-spoiler", "span", "blockquote", "tg-emoji"}
# What Telegram marks as a command: a slash, command characters, optionally @username; the entity
# ends at the first other character (a space, a newline, a no-break space, punctuation).
BOT_COMMAND = re.compile(r"^/[A-Za-z0-9_]{1,32}(?:@[A-Za-z0-9_]{3,32})?")
NOT_MODIFIED = ("Bad Request: message is not modified: specified new message content and reply markup "
                "are exactly the same as a current content and reply markup of the message")


class EntityError(ValueError):
    pass


class _EntityChecker(HTMLParser):
    """Telegram's HTML rules: known tags only, properly nested, entities that exist."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=False)
        self.stack: list[str] = []
        self.text: list[str] = []
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag not in ALLOWED_TAGS:
            raise EntityError(f"Unsupported start tag \"{tag}\"")
        if tag == "a":
            href = dict(attrs).get("href") or ""
            if not href.startswith(("http://", "https://", "tg://")) or any(c in href for c in ' <>"'):
                raise EntityError(f"Wrong HTTP URL specified {href[:80]!r}")
            self.links.append(href)
        self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            raise EntityError(f"Can't find end tag corresponding to start tag \"{tag}\"")
        self.stack.pop()

    def handle_data(self, data):
        if "<" in data or ">" in data:
            raise EntityError("Unexpected end tag" if "</" in data else "Unclosed start tag")
        self.text.append(data)

    def handle_entityref(self, name):
        if name not in ("lt", "gt", "amp", "quot"):
            raise EntityError(f"Unsupported entity \"&{name};\"")
        self.text.append(html.unescape(f"&{name};"))

    def handle_charref(self, name):
        self.text.append(html.unescape(f"&#{name};"))


def utf16_length(text: str) -> int:
    """How Telegram measures text: in UTF-16 code units (an emoji or a 𝐛𝐨𝐥𝐝 letter is two)."""
    return len(text.encode("utf-16-le")) // 2


def parse_html(text: str) -> str:
    """The plain text of Telegram HTML, or EntityError like Telegram's "can't parse entities"."""
    return parse_html_links(text)[0]


def parse_html_links(text: str) -> tuple[str, list[str]]:
    """parse_html, and the targets of the message's links in order."""
    checker = _EntityChecker()
    checker.feed(text)
    checker.close()
    if checker.rawdata:  # an unterminated "<..." left unparsed
        raise EntityError("Unclosed start tag")
    if checker.stack:
        raise EntityError(f"Can't find end tag corresponding to start tag \"{checker.stack[-1]}\"")
    return "".join(checker.text), checker.links


@dataclass
class Fault:
    kind: str  # "429", "403", "slow", "entities" (a 400 can't parse entities), "chat_not_found", "migrated"
    method: str | None
    times: int
    retry_after: int = 1
    delay: float = 0.0
    migrate_to: int = 0


@dataclass
class SentMessage:
    chat_id: int
    message_id: int
    text: str
    parse_mode: str | None
    reply_markup: dict | None
    document: tuple[str, bytes] | None = None
    edits: list[str] = field(default_factory=list)
    link_preview: dict | None = None  # the link_preview_options sent with it
    paid_broadcast: bool = False  # sent with allow_paid_broadcast
    received_at: float = field(default_factory=time.monotonic)  # when the server took it (send-rate checks)

    @property
    def buttons(self) -> list[list[dict]]:
        return (self.reply_markup or {}).get("inline_keyboard", [])

    def button(self, label_part: str) -> dict:
        for row in self.buttons:
            for button in row:
                if label_part in button["text"]:
                    return button
        raise KeyError(f"no button with {label_part!r} in {self.buttons}")

    def as_message(self, bot: dict, chat: dict | None = None) -> dict:
        message = {"message_id": self.message_id, "date": int(time.time()), "from": bot,
                   "chat": chat or {"id": self.chat_id, "type": "private"}, "text": self.text}
        if self.reply_markup:
            message["reply_markup"] = self.reply_markup
        return message


class FakeTelegram:
    """Start with `start()`, point the bot at `base_url`, drive it with `send` and `press`."""

    def __init__(self, token: str = "123456:TEST-TOKEN") -> None:
        self.token = token
        self.bot_user = {"id": 999, "is_bot": True, "first_name": "feedbot", "username": "feedbot_test_bot",
                         "can_join_groups": False, "can_read_all_group_messages": False,
                         "supports_inline_queries": False}
        self.lock = threading.Condition()
        self.updates: list[dict] = []
        self.confirmed = 0
        self.update_ids = itertools.count(1)
        self.message_ids = itertools.count(1000)
        self.messages: dict[tuple[int, int], SentMessage] = {}
        self.sent: list[SentMessage] = []
        self.answers: list[dict] = []
        self.commands: list[dict] = []
        self.calls: list[tuple[str, dict]] = []
        self.files: dict[str, bytes] = {}  # file_id -> content of documents users sent
        self.deleted: list[tuple[int, int]] = []  # (chat_id, message_id) the bot deleted
        self.faults: dict[int, list[Fault]] = defaultdict(list)
        self.held = 0  # answers being held back by "slow" faults right now
        self.latency = 0.0  # seconds every Bot API answer is held (long polls and _stats excepted)
        self.active = self.peak = 0  # requests being answered now (long polls aside), and the most at once
        self.webhook: dict | None = None  # the setWebhook parameters in force
        self.chats: dict[int, dict] = {}  # groups and channels: their Telegram chat objects
        self.statuses: dict[tuple[int, int], str] = {}  # (chat, user) -> status getChatMember answers
        self.migrated: dict[int, int] = {}  # old group id -> its supergroup's id
        self.server: ThreadingHTTPServer | None = None
        self.polls = 0  # getUpdates requests so far: a newer one ends the one still waiting
        self.conflicts = 0  # long polls ended by another getUpdates (409)

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> FakeTelegram:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as Telegram's servers
            disable_nagle_algorithm = True  # headers and body go out at once, not 40 ms apart

            def do_POST(self):  # noqa: N802 - http.server's naming
                fake._handle(self)

            do_GET = do_POST  # noqa: N815

            def log_message(self, *args):
                pass

        class Server(ThreadingHTTPServer):
            request_queue_size = 256  # many pooled connections may open at once
            daemon_threads = True

        self.server = Server(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server:
            with self.lock:
                self.lock.notify_all()
            self.server.shutdown()
            self.server.server_close()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/bot"

    # --- simulated users ---------------------------------------------------------------------

    def numbered(self, update: dict) -> dict:
        """`update` with its update_id: what Telegram posts to a webhook."""
        with self.lock:
            update["update_id"] = next(self.update_ids)
        return update

    def _queue(self, update: dict) -> int:
        return self._append(self.numbered(update))

    def _append(self, update: dict) -> int:
        """Queue a numbered update for getUpdates."""
        with self.lock:
            self.updates.append(update)
            self.lock.notify_all()
        return update["update_id"]

    @staticmethod
    def user(user_id: int) -> dict:
        return {"id": user_id, "is_bot": False, "first_name": f"User{user_id}"}

    @staticmethod
    def _message(message_id: int, user_id: int, text: str, chat: dict | None = None) -> dict[str, Any]:
        message: dict[str, Any] = {"message_id": message_id, "date": int(time.time()),
                                   "from": FakeTelegram.user(user_id),
                                   "chat": chat or {"id": user_id, "type": "private"}, "text": text}
        command = BOT_COMMAND.match(text)
        if command:
            message["entities"] = [{"type": "bot_command", "offset": 0, "length": utf16_length(command.group())}]
        return message

    def text_update(self, user_id: int, text: str) -> dict:
        """The update for `text` typed by the user in their private chat with the bot (numbered)."""
        return self.numbered({"message": self._message(next(self.message_ids), user_id, text)})

    def send(self, user_id: int, text: str) -> int:
        """The user types `text` in their private chat with the bot; returns the message's id."""
        update = self.text_update(user_id, text)
        self._append(update)
        return update["message"]["message_id"]

    def edit(self, user_id: int, message_id: int, text: str) -> int:
        """The user edits a message they sent: Telegram sends an `edited_message` update."""
        message = self._message(message_id, user_id, text)
        message["edit_date"] = int(time.time())
        return self._queue({"edited_message": message})

    def send_document(self, user_id: int, name: str, content: bytes, size: int | None = None) -> int:
        """The user sends a file; the bot fetches it with getFile and a download (`size` may claim
        more than the content, as for a file too big to fetch)."""
        file_id = f"doc{next(self.message_ids)}"
        with self.lock:
            self.files[file_id] = content
        message = {"message_id": next(self.message_ids), "date": int(time.time()), "from": self.user(user_id),
                   "chat": {"id": user_id, "type": "private"},
                   "document": {"file_id": file_id, "file_unique_id": f"u{file_id}", "file_name": name,
                                "file_size": len(content) if size is None else size}}
        return self._queue({"message": message})

    def tap_update(self, user_id: int, message: SentMessage, data: str) -> dict:
        """The update for the user's tap on a button of `message` (numbered)."""
        query_id = f"q{next(self.update_ids)}"
        with self.lock:
            current = self.messages[(message.chat_id, message.message_id)]
            snapshot = current.as_message(self.bot_user, self.chats.get(message.chat_id))
        return self.numbered({"callback_query": {"id": query_id, "from": self.user(user_id), "chat_instance": "ci",
                                                 "message": snapshot, "data": data}})

    def press(self, user_id: int, message: SentMessage, data: str) -> str:
        """The user taps a button (any callback data: forged data is a test case too)."""
        update = self.tap_update(user_id, message, data)
        self._append(update)
        return update["callback_query"]["id"]

    # --- groups and channels -----------------------------------------------------------------

    def group(self, chat_id: int, title: str = "Reading group", kind: str = "group") -> dict:
        """A group (`supergroup`, `channel`) with this negative id; returns its chat object."""
        with self.lock:
            self.chats[chat_id] = {"id": chat_id, "type": kind, "title": title}
            return self.chats[chat_id]

    def set_status(self, chat_id: int, user_id: int, status: str) -> None:
        """What getChatMember says of the user in the chat: creator, administrator, member, left, kicked."""
        with self.lock:
            self.statuses[(chat_id, user_id)] = status

    def send_in(self, chat_id: int, user_id: int, text: str) -> int:
        """A member types `text` in the group; returns the message's id."""
        message = self._message(next(self.message_ids), user_id, text, self.chats[chat_id])
        self._queue({"message": message})
        return message["message_id"]

    def post(self, chat_id: int, text: str) -> int:
        """An administrator posts `text` in the channel: no sender, only the channel itself."""
        chat = self.chats[chat_id]
        message = self._message(next(self.message_ids), 0, text, chat)
        del message["from"]
        message["sender_chat"] = chat
        self._queue({"channel_post": message})
        return message["message_id"]

    def bot_status(self, chat_id: int, status: str, old: str = "member", by: int = 1) -> int:
        """The bot's own membership changes (added, promoted, removed): a `my_chat_member` update."""
        bot = {k: self.bot_user[k] for k in ("id", "is_bot", "first_name", "username")}
        return self._queue({"my_chat_member": {
            "chat": self.chats.get(chat_id) or {"id": chat_id, "type": "private", "first_name": "User"},
            "from": self.user(by), "date": int(time.time()),
            "old_chat_member": _member(bot, old), "new_chat_member": _member(bot, status)}})

    def migrate(self, old: int, new: int, by: int = 1) -> None:
        """The group becomes a supergroup: a service message in each chat, as Telegram sends them;
        from now on anything sent to the old id is refused with `migrate_to_chat_id`."""
        with self.lock:
            title = self.chats[old]["title"]
            self.migrated[old] = new
        supergroup = self.group(new, title, "supergroup")
        for chat, field_name, value in ((self.chats[old], "migrate_to_chat_id", new),
                                        (supergroup, "migrate_from_chat_id", old)):
            self._queue({"message": {"message_id": next(self.message_ids), "date": int(time.time()),
                                     "from": self.user(by), "chat": chat, field_name: value}})

    def inject(self, chat_id: int, kind: str, method: str | None = None, times: int = 1,
               retry_after: int = 1, delay: float = 0.0, migrate_to: int = 0) -> None:
        """Make the next `times` calls for `chat_id` (of `method`, or any) fail or stall."""
        with self.lock:
            self.faults[chat_id].append(Fault(kind, method, times, retry_after, delay, migrate_to))

    # --- waiting for the bot -----------------------------------------------------------------

    def wait(self, predicate, timeout: float = 15.0, what: str = "condition"):
        deadline = time.monotonic() + timeout
        with self.lock:
            while True:
                result = predicate()
                if result:
                    return result
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"timed out waiting for {what}; sent so far: "
                                         f"{[m.text[:80] for m in self.sent[-5:]]}")
                self.lock.wait(min(remaining, 0.2))

    def messages_to(self, chat_id: int) -> list[SentMessage]:
        return [m for m in self.sent if m.chat_id == chat_id]

    def wait_messages(self, chat_id: int, count: int, timeout: float = 15.0) -> list[SentMessage]:
        """Wait until the chat has received `count` messages in all; return them all."""
        self.wait(lambda: len(self.messages_to(chat_id)) >= count, timeout, f"{count} messages to {chat_id}")
        return self.messages_to(chat_id)

    def wait_answer(self, query_id: str, timeout: float = 15.0) -> dict:
        return self.wait(lambda: next((a for a in self.answers if a["callback_query_id"] == query_id), None),
                         timeout, f"answer to {query_id}")

    def wait_idle(self, timeout: float = 15.0) -> None:
        """Every queued update was fetched and confirmed by the bot."""
        self.wait(lambda: not self.updates or self.confirmed > self.updates[-1]["update_id"], timeout,
                  "the bot to take every update")

    # --- the Bot API -------------------------------------------------------------------------

    def _params(self, request: BaseHTTPRequestHandler) -> dict:
        length = int(request.headers.get("Content-Length") or 0)
        body = request.rfile.read(length) if length else b""
        content_type = request.headers.get("Content-Type", "")
        query = dict(parse_qsl(urlsplit(request.path).query))
        if content_type.startswith("multipart/form-data"):
            message = BytesParser(policy=HTTP).parsebytes(
                f"Content-Type: {content_type}\r\n\r\n".encode() + body)
            params = {}
            for part in message.iter_parts():
                name = part.get_param("name", header="content-disposition")
                filename = part.get_filename()
                payload = part.get_payload(decode=True)
                params[name] = (filename, payload) if filename else payload.decode()
            return {**query, **params}
        if content_type.startswith("application/json"):
            return {**query, **json.loads(body or b"{}")}
        return {**query, **dict(parse_qsl(body.decode()))}

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        if urlsplit(request.path).path.endswith("/getUpdates"):  # a long poll is not a request in flight
            return self._answer(request)
        with self.lock:
            self.active += 1
            self.peak = max(self.peak, self.active)
        try:
            self._answer(request)
        finally:
            with self.lock:
                self.active -= 1

    def reset_peak(self) -> None:
        with self.lock:
            self.peak = self.active

    def _answer(self, request: BaseHTTPRequestHandler) -> None:
        path = urlsplit(request.path).path
        prefix = f"/bot{self.token}/"
        if unquote(path).startswith(f"/file/bot{self.token}/"):  # a file download, as Telegram's file server
            return self._download(request, path.rsplit("/", 1)[-1])
        if not path.startswith(prefix):
            return self._reply(request, 404, {"ok": False, "error_code": 404, "description": "Not Found"})
        method = path[len(prefix):]
        params = self._params(request)
        with self.lock:
            self.calls.append((method, params))
        chat_id = _int(params.get("chat_id"))
        if chat_id is None and method == "answerCallbackQuery":
            chat_id = None
        fault = self._take_fault(chat_id, method) if chat_id is not None else None
        if chat_id in self.migrated:
            fault = Fault("migrated", None, 1, migrate_to=self.migrated[chat_id])
        if fault is not None:
            if fault.kind == "429":
                return self._reply(request, 429, {
                    "ok": False, "error_code": 429,
                    "description": f"Too Many Requests: retry after {fault.retry_after}",
                    "parameters": {"retry_after": fault.retry_after}})
            if fault.kind == "entities":
                return self._reply(request, 400, {
                    "ok": False, "error_code": 400,
                    "description": "Bad Request: can't parse entities: Unsupported start tag \"x\" at byte offset 0"})
            if fault.kind == "chat_not_found":
                return self._reply(request, 400, {"ok": False, "error_code": 400,
                                                  "description": "Bad Request: chat not found"})
            if fault.kind == "migrated":
                return self._reply(request, 400, {
                    "ok": False, "error_code": 400,
                    "description": "Bad Request: group chat was upgraded to a supergroup chat",
                    "parameters": {"migrate_to_chat_id": fault.migrate_to}})
            if fault.kind == "403":
                return self._reply(request, 403, {"ok": False, "error_code": 403,
                                                  "description": "Forbidden: bot was blocked by the user"})
        handler = getattr(self, f"api_{method}", None)
        if handler is None:
            return self._reply(request, 404, {"ok": False, "error_code": 404,
                                              "description": "Not Found: method not found"})
        try:
            result = handler(params)
        except ApiError as exc:
            return self._reply(request, exc.code, {"ok": False, "error_code": exc.code, "description": exc.description})
        if fault is not None and fault.kind == "slow":
            # The call has taken effect; only the answer is late, so a client timeout is a doubt,
            # not a failure (as on Telegram).
            with self.lock:
                self.held += 1
                self.lock.notify_all()
            time.sleep(fault.delay)
            with self.lock:
                self.held -= 1
        if self.latency and method not in ("getUpdates", "_stats"):
            time.sleep(self.latency)  # every client waits its own answer: requests overlap
        self._reply(request, 200, {"ok": True, "result": result})

    def _download(self, request: BaseHTTPRequestHandler, file_id: str) -> None:
        content = self.files.get(file_id)
        status = 200 if content is not None else 404
        body = content if content is not None else b"Not Found"
        request.send_response(status)
        request.send_header("Content-Type", "application/octet-stream")
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)

    def _take_fault(self, chat_id: int, method: str) -> Fault | None:
        with self.lock:
            for fault in self.faults.get(chat_id, []):
                if fault.times > 0 and (fault.method is None or fault.method == method):
                    fault.times -= 1
                    return fault
        return None

    @staticmethod
    def _reply(request: BaseHTTPRequestHandler, status: int, payload: dict) -> None:
        body = json.dumps(payload).encode()
        try:
            request.send_response(status)
            request.send_header("Content-Type", "application/json")
            request.send_header("Content-Length", str(len(body)))
            request.end_headers()
            request.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout): the call still took effect, as on Telegram

    # methods

    def api__stats(self, params):  # noqa: N802 - for a server in another process (benchmarks)
        """Messages sent, chats reached and the most requests at once; `reset`: count afresh."""
        with self.lock:
            stats = {"sent": len(self.sent), "chats": len({m.chat_id for m in self.sent}), "peak": self.peak}
        if params.get("reset"):
            self.reset_peak()
        return stats

    def api_getMe(self, params):  # noqa: N802 - Bot API method names
        return self.bot_user

    def api_deleteWebhook(self, params):  # noqa: N802
        with self.lock:
            self.webhook = None
        return True

    def api_setWebhook(self, params):  # noqa: N802
        """Registers the webhook (url, secret_token, …); Telegram refuses a secret it could not send."""
        secret = params.get("secret_token")
        if secret is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", secret):
            raise ApiError(400, "Bad Request: secret token contains unallowed characters")
        if not str(params.get("url", "")).startswith("https://"):
            raise ApiError(400, "Bad Request: bad webhook: An HTTPS URL must be provided for webhook")
        with self.lock:
            self.webhook = dict(params)
            self.lock.notify_all()
        return True

    def api_getWebhookInfo(self, params):  # noqa: N802
        with self.lock:
            hook = self.webhook or {}
        return {"url": hook.get("url", ""), "has_custom_certificate": False, "pending_update_count": 0}

    def api_setMyCommands(self, params):  # noqa: N802
        commands = json.loads(params.get("commands", "[]"))
        for command in commands:
            if not 1 <= len(command["command"]) <= 32 or not 1 <= len(command["description"]) <= 256:
                raise ApiError(400, "Bad Request: BOT_COMMAND_INVALID")
        with self.lock:
            self.commands = commands
        return True

    def api_getUpdates(self, params):  # noqa: N802
        offset = _int(params.get("offset")) or 0
        timeout = float(params.get("timeout") or 0)
        limit = _int(params.get("limit")) or 100
        deadline = time.monotonic() + timeout
        with self.lock:
            if self.webhook is not None:
                raise ApiError(409, "Conflict: can't use getUpdates method while webhook is active; "
                                    "use deleteWebhook to delete the webhook first")
            self.polls += 1
            poll = self.polls
            if offset:
                self.confirmed = max(self.confirmed, offset)
                self.updates = [u for u in self.updates if u["update_id"] >= offset]
            self.lock.notify_all()
            while not self.updates and time.monotonic() < deadline:
                if self.polls != poll:
                    self.conflicts += 1
                    raise ApiError(409, "Conflict: terminated by other getUpdates request; "
                                        "make sure that only one bot instance is running")
                self.lock.wait(min(deadline - time.monotonic(), 0.5))
            return self.updates[:limit]

    def _check_text(self, text: str, parse_mode: str | None, limit: int = 4096) -> None:
        if not text.strip():
            raise ApiError(400, "Bad Request: message text is empty")
        plain = text
        if parse_mode == "HTML":
            try:
                plain = parse_html(text)
            except EntityError as exc:
                raise ApiError(400, f"Bad Request: can't parse entities: {exc}") from None
        if utf16_length(plain.strip()) > limit:  # Telegram trims the text, then counts UTF-16 units
            raise ApiError(400, "Bad Request: message is too long")

    @staticmethod
    def _check_markup(markup_json: str | dict | None) -> dict | None:
        """A form body holds the markup as a JSON string, a JSON body as an object: Telegram takes both."""
        if not markup_json:
            return None
        markup = json.loads(markup_json) if isinstance(markup_json, str) else markup_json
        for row in markup.get("inline_keyboard", []):
            for button in row:
                data = button.get("callback_data")
                if data is not None and not 1 <= len(data.encode()) <= 64:
                    raise ApiError(400, "Bad Request: BUTTON_DATA_INVALID")
        return markup

    def api_sendMessage(self, params):  # noqa: N802
        text, mode = params.get("text", ""), params.get("parse_mode")
        self._check_text(text, mode)
        markup = self._check_markup(params.get("reply_markup"))
        message = self._store(int(params["chat_id"]), text, mode, markup)
        preview = params.get("link_preview_options")
        message.link_preview = json.loads(preview) if isinstance(preview, str) else preview
        message.paid_broadcast = params.get("allow_paid_broadcast") in (True, "true", "True")
        return message.as_message(self.bot_user, self.chats.get(message.chat_id))

    def api_sendDocument(self, params):  # noqa: N802
        document = params.get("document")
        if not isinstance(document, tuple):
            raise ApiError(400, "Bad Request: there is no document in the request")
        caption = params.get("caption", "")
        if caption:
            self._check_text(caption, params.get("parse_mode"), limit=1024)
        message = self._store(int(params["chat_id"]), caption, params.get("parse_mode"), None, document)
        result = message.as_message(self.bot_user)
        result["document"] = {"file_id": f"f{message.message_id}", "file_unique_id": f"u{message.message_id}",
                              "file_name": document[0], "file_size": len(document[1])}
        return result

    def _store(self, chat_id, text, mode, markup, document=None) -> SentMessage:
        with self.lock:
            message = SentMessage(chat_id, next(self.message_ids), text, mode, markup, document)
            self.messages[(chat_id, message.message_id)] = message
            self.sent.append(message)
            self.lock.notify_all()
            return message

    def _edit(self, params, text: str | None) -> dict:
        key = (int(params["chat_id"]), int(params["message_id"]))
        markup = self._check_markup(params.get("reply_markup"))
        with self.lock:
            message = self.messages.get(key)
            if message is None:
                raise ApiError(400, "Bad Request: message to edit not found")
            new_text = message.text if text is None else text
            if new_text == message.text and markup == message.reply_markup:
                raise ApiError(400, NOT_MODIFIED)
            message.text, message.reply_markup = new_text, markup
            message.edits.append(new_text)
            self.lock.notify_all()
            return message.as_message(self.bot_user, self.chats.get(message.chat_id))

    def api_editMessageText(self, params):  # noqa: N802
        self._check_text(params.get("text", ""), params.get("parse_mode"))
        return self._edit(params, params.get("text", ""))

    def api_editMessageReplyMarkup(self, params):  # noqa: N802
        return self._edit(params, None)

    def api_getFile(self, params):  # noqa: N802
        file_id = params.get("file_id", "")
        with self.lock:
            content = self.files.get(file_id)
        if content is None:
            raise ApiError(400, "Bad Request: invalid file_id")
        if len(content) > 20 * 1024 * 1024:  # the Bot API's download limit
            raise ApiError(400, "Bad Request: file is too big")
        return {"file_id": file_id, "file_unique_id": f"u{file_id}", "file_size": len(content),
                "file_path": f"documents/{file_id}"}

    def api_deleteMessage(self, params):  # noqa: N802
        with self.lock:
            self.deleted.append((int(params["chat_id"]), int(params["message_id"])))
            self.lock.notify_all()
        return True

    def api_getChatMember(self, params):  # noqa: N802
        key = (int(params["chat_id"]), int(params["user_id"]))
        with self.lock:
            if key[0] not in self.chats:
                raise ApiError(400, "Bad Request: chat not found")
            status = self.statuses.get(key, "member")
        return _member(self.user(key[1]), status)

    def api_answerCallbackQuery(self, params):  # noqa: N802
        if len(params.get("text", "") or "") > 200:
            raise ApiError(400, "Bad Request: MESSAGE_TOO_LONG")
        with self.lock:
            self.answers.append(dict(params))
            self.lock.notify_all()
        return True


class ApiError(Exception):
    def __init__(self, code: int, description: str) -> None:
        super().__init__(description)
        self.code, self.description = code, description


def _member(user: dict, status: str) -> dict:
    """A ChatMember object as the Bot API sends it, with the fields its status requires."""
    member: dict[str, Any] = {"status": status, "user": user}
    if status == "creator":
        member["is_anonymous"] = False
    elif status == "administrator":
        member.update({right: True for right in (
            "can_manage_chat", "can_delete_messages", "can_manage_video_chats", "can_restrict_members",
            "can_change_info", "can_invite_users", "can_post_stories", "can_edit_stories",
            "can_delete_stories", "can_post_messages", "can_edit_messages", "can_pin_messages")})
        member.update({"can_be_edited": False, "is_anonymous": False, "can_promote_members": False})
    elif status == "kicked":
        member["until_date"] = 0
    return member


def _int(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


if __name__ == "__main__":  # a server in its own process: prints its base URL, serves until killed
    import argparse

    parser = argparse.ArgumentParser(description="The tests' Bot API server in its own process.")
    parser.add_argument("token", nargs="?", default="123456:TEST-TOKEN")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="hold every answer this long")
    args = parser.parse_args()
    server = FakeTelegram(args.token).start()
    server.latency = args.latency_ms / 1000
    print(server.base_url, flush=True)
    threading.Event().wait()
