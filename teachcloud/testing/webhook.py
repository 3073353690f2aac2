"""A tiny HTTP server on 127.0.0.1 that records JSON POSTs, for webhook tests."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Hook:
    host: str = "127.0.0.1"
    port: int = 0
    status: int = 200  # what the server answers; set e.g. 500 to test failures
    answer: Any = field(default_factory=lambda: {"ok": True})  # JSON (or a str) it answers
    requests: list[dict[str, Any]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/hook"

    @property
    def payloads(self) -> list[Any]:
        return [r["json"] for r in self.requests]


@contextmanager
def webhook_server(status: int = 200, answer: Any = None) -> Iterator[Hook]:
    """A receiver answering `status` with `answer` (a str as is, anything else as JSON); both
    may be changed on the yielded Hook meanwhile."""
    hook = Hook(status=status, answer={"ok": True} if answer is None else answer)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            try:
                body = json.loads(raw.decode())
            except ValueError:
                body = None
            hook.requests.append(
                {
                    "path": self.path,
                    "content_type": self.headers.get("Content-Type"),
                    "json": body,
                }
            )
            answer = hook.answer
            data = answer.encode() if isinstance(answer, str) else json.dumps(answer).encode()
            self.send_response(hook.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer((hook.host, 0), Handler)
    hook.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield hook
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
