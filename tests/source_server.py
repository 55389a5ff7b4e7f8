"""A loopback HTTP server standing in for the Hugging Face and arXiv APIs in tests.

Each path gets a queue of canned answers (status, content type, body, headers); the last answer
repeats. Every request is recorded with its query and headers, so tests check paging and politeness.
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
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's naming
                parts = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(parts.query).items()}
                with server.lock:
                    server.requests.append(Seen(parts.path, query, {k.lower(): v for k, v in self.headers.items()}))
                    answer = server._answer(parts.path, query)
                self.send_response(answer.status)
                self.send_header("Content-Type", answer.content_type)
                self.send_header("Content-Length", str(len(answer.body)))
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(answer.body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

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
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def serve(self, path: str, *answers: Canned) -> None:
        self.answers[path] = list(answers)
