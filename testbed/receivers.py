"""Real notification receivers for tests, on 127.0.0.1 only: an HTTP
server (Apprise's json:// webhooks, ntfy's format, healthchecks-style pings)
and an SMTP server (aiosmtpd) for e-mail. Each records what it received."""
from __future__ import annotations

import email
import email.policy
import http.server
import json
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from .sshd import free_port


@dataclass
class HttpRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class HttpReceiver:
    """Answers 200 to every request and records it. `hold()` makes it keep
    every request waiting until `release()`, like a receiver that hangs."""

    def __init__(self) -> None:
        self.requests: list[HttpRequest] = []
        self.waiting = 0  # requests held right now
        self.held = threading.Event()
        self.released = threading.Event()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                if receiver.held.is_set():
                    receiver.waiting += 1
                    receiver.released.wait(60)
                    receiver.waiting -= 1
                receiver.requests.append(HttpRequest(self.command, self.path, dict(self.headers), body))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            do_POST = do_PUT = do_GET = _handle

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def hold(self) -> None:
        self.held.set()

    def release(self) -> None:
        self.released.set()

    def wait_for(self, predicate: Callable[[HttpRequest], bool], count: int = 1,
                 timeout_s: float = 30) -> list[HttpRequest]:
        return _wait(lambda: [r for r in self.requests if predicate(r)], count, timeout_s)

    def close(self) -> None:
        self.release()
        self.server.shutdown()
        self.server.server_close()


class SmtpReceiver:
    """A real SMTP server (no TLS, no auth) that keeps every message."""

    def __init__(self) -> None:
        from aiosmtpd.controller import Controller
        self.messages: list[email.message.EmailMessage] = []
        receiver = self

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                receiver.messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
                return "250 OK"

        self.port = free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def wait_for(self, predicate: Callable[[Any], bool], count: int = 1, timeout_s: float = 30) -> list[Any]:
        return _wait(lambda: [m for m in self.messages if predicate(m)], count, timeout_s)

    def close(self) -> None:
        self.controller.stop()


def _wait(found: Callable[[], list[Any]], count: int, timeout_s: float) -> list[Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        items = found()
        if len(items) >= count or time.monotonic() > deadline:
            return items
        time.sleep(0.05)
