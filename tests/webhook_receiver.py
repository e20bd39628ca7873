"""A real HTTP receiver for webhook tests: records deliveries, can fail the first N on purpose."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class _Server(ThreadingHTTPServer):
    request_queue_size = 128  # the default backlog (5) drops connections when a pass posts 20 at once
    daemon_threads = True


@dataclass
class Delivery:
    event_id: str
    attempt: int
    signature: str
    body: bytes
    status: int
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def event(self) -> dict[str, Any]:
        return json.loads(self.body)

    def signed_with(self, key: bytes) -> bool:
        expected = "sha256=" + hmac.new(key, self.body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, self.signature)


class Receiver:
    def __init__(self, fail_first: int = 0) -> None:
        self.deliveries: list[Delivery] = []
        self.fail_first = fail_first
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver._lock:
                    status = 500 if receiver.fail_first > 0 else 200
                    receiver.fail_first -= 1 if receiver.fail_first > 0 else 0
                    receiver.deliveries.append(Delivery(
                        self.headers.get("X-Tuneforge-Event-Id", ""),
                        int(self.headers.get("X-Tuneforge-Delivery-Attempt", "0")),
                        self.headers.get("X-Tuneforge-Signature", ""), body, status, dict(self.headers)))
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()

    def accepted(self) -> list[Delivery]:
        with self._lock:
            return [d for d in self.deliveries if d.status == 200]
