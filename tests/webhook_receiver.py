"""A real HTTP receiver for webhook tests: records deliveries, can fail the first N on purpose or hold every
answer until released (a slow receiver)."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


class _Server(ThreadingHTTPServer):
    request_queue_size = 128  # the default backlog (5) drops connections when a pass posts 20 at once
    daemon_threads = True


@dataclass
class Delivery:
    event_id: str
    attempt: int
    body: bytes
    status: int
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def event(self) -> dict[str, Any]:
        return json.loads(self.body)

    def signed_with(self, key: bytes, headers: dict[str, str] | None = None) -> bool:
        """Checked as a receiver would, with the Standard Webhooks library (which also refuses old timestamps)."""
        try:
            Webhook(key).verify(self.body, headers or self.headers)
        except WebhookVerificationError:
            return False
        return True


class Receiver:
    def __init__(self, fail_first: int = 0, hold: threading.Event | None = None,
                 redirect_to: str | None = None) -> None:
        self.deliveries: list[Delivery] = []
        self.fail_first = fail_first
        self.hold = hold
        self.redirect_to = redirect_to
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if receiver.hold is not None:
                    receiver.hold.wait(30)
                with receiver._lock:
                    status = 500 if receiver.fail_first > 0 else 307 if receiver.redirect_to else 200
                    receiver.fail_first -= 1 if receiver.fail_first > 0 else 0
                    receiver.deliveries.append(Delivery(
                        self.headers.get("webhook-id", ""), int(self.headers.get("X-Tuneforge-Delivery-Attempt", "0")),
                        body, status, dict(self.headers)))
                self.send_response(status)
                if receiver.redirect_to:
                    self.send_header("Location", receiver.redirect_to)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()

    def accepted(self) -> list[Delivery]:
        with self._lock:
            return [d for d in self.deliveries if d.status == 200]
