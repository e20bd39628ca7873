"""Every request body is bounded before any work is done on it, authentication included.

Uploads (`/api/datasets/upload*`) stream to disk under their own limit (TUNEFORGE_MAX_UPLOAD_BYTES, enforced by the
upload routes); every other body is held to TUNEFORGE_MAX_BODY_BYTES: a declared length over it is answered 413 at
once, and a body that grows past it while arriving is cut off and answered 413.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

UPLOAD_PREFIX = "/api/datasets/upload"


class BodyLimit:
    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(UPLOAD_PREFIX):
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and not declared.strip().isdigit():
            await _answer(send, 400, f"Content-Length {declared.decode('latin-1')!r} is not a number")
            return
        if declared is not None and int(declared) > self.limit:
            await _answer(send, 413, self._message())
            return
        received, cut, started = 0, False, False

        async def limited_receive() -> Message:
            nonlocal received, cut
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    cut = True
                    return {"type": "http.disconnect"}  # the app stops reading; the answer is sent below
            return message

        async def watched_send(message: Message) -> None:
            nonlocal started
            if cut and not started:
                return  # the 413 below answers instead
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, watched_send)
        except Exception:
            if not cut:
                raise  # a cut-off body may make the app fail in any way; that is answered as 413 below
        if cut and not started:
            await _answer(send, 413, self._message())

    def _message(self) -> str:
        return (f"Request body over {self.limit // 1024} KiB (TUNEFORGE_MAX_BODY_BYTES): send options, not files; "
                f"files go to {UPLOAD_PREFIX}")


async def _answer(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
