"""A loopback HTTP server standing in for the Hugging Face and arXiv APIs in tests.

Each path gets a queue of canned answers (status, content type, body, headers); the last answer
repeats. An answer can also misbehave: trickle its bytes, stream an endless body, or lie in (or
leave out) its Content-Length. Every request is recorded with its query and headers, so tests
check paging and politeness.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


@dataclass
class Canned:
    body: bytes
    content_type: str = "application/json"
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    length: str | None = "auto"  # Content-Length: the body's own, None for none, or any text (a lie)
    endless: bool = False  # the body repeats until the client hangs up
    trickle: float = 0.0  # seconds between bytes of the body (and of the head with trickle_head)
    trickle_head: bool = False


@dataclass
class Seen:
    path: str
    query: dict[str, str]
    headers: dict[str, str]


class SourceServer:
    def __init__(self) -> None:
        self.answers: dict[str, list[Canned]] = {}
        self.paged: dict[str, dict[str, Canned]] = {}  # path -> {start: answer}
        self.requests: list[Seen] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's naming
                parts = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(parts.query).items()}
                with server.lock:
                    server.requests.append(Seen(parts.path, query, {k.lower(): v for k, v in self.headers.items()}))
                    answer = server._answer(parts.path, query)
                server._send(self, answer)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)  # quick stop

    def _send(self, handler: BaseHTTPRequestHandler, answer: Canned) -> None:
        """Write the answer as raw bytes (header values UTF-8), slowly or endlessly when asked."""
        lines = [f"HTTP/1.0 {answer.status} {handler.responses.get(answer.status, ('Other',))[0]}",
                 f"Content-Type: {answer.content_type}"]
        if answer.length == "auto" and not answer.endless:
            lines.append(f"Content-Length: {len(answer.body)}")
        elif answer.length not in (None, "auto"):
            lines.append(f"Content-Length: {answer.length}")
        lines += [f"{name}: {value}" for name, value in answer.headers.items()]
        head = ("\r\n".join(lines) + "\r\n\r\n").encode()
        try:
            self._write(handler, head, answer.trickle if answer.trickle_head else 0.0)
            while not self.stopping.is_set():
                self._write(handler, answer.body, answer.trickle)
                if not answer.endless:
                    break
        except (BrokenPipeError, ConnectionResetError):  # the client gave up: that is the point
            pass

    def _write(self, handler: BaseHTTPRequestHandler, data: bytes, trickle: float) -> None:
        if not trickle:
            handler.wfile.write(data)
            return
        for index in range(len(data)):
            if self.stopping.wait(trickle):
                return
            handler.wfile.write(data[index:index + 1])
            handler.wfile.flush()

    def _answer(self, path: str, query: dict[str, str]) -> Canned:
        if path in self.paged:
            return self.paged[path].get(query.get("start", "0"), Canned(b"not found", "text/plain", 404))
        queue = self.answers.get(path)
        if not queue:
            return Canned(b"<html><body>404</body></html>", "text/html", 404)
        return queue.pop(0) if len(queue) > 1 else queue[0]

    def start(self) -> SourceServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def serve(self, path: str, *answers: Canned) -> None:
        self.answers[path] = list(answers)
