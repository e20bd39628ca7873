"""Talking to the demo server: an authenticated client, calls that fail as a `DemoError`, and the shared console."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from rich.console import Console
from rich.markup import escape

console = Console()

# Job statuses after which nothing more happens.
FINAL_STATES = ("completed", "failed", "cancelled", "stopped")


class DemoError(Exception):
    """A failure the user can act on: a message, optional detail lines, and the exit code."""

    def __init__(self, message: str, details: list[str] | None = None, code: int = 1) -> None:
        super().__init__(message)
        self.message, self.details, self.code = message, details or [], code


def print_error(exc: DemoError) -> None:
    console.print(f"[red]✗ {escape(exc.message)}[/red]")
    for line in exc.details:
        console.print(f"  {escape(line)}")


@contextmanager
def api_client(url: str) -> Iterator[httpx.Client]:
    """Loopback callers act as admin until an admin exists; after that the demo needs TUNEFORGE_API_KEY."""
    with httpx.Client(base_url=url, timeout=60.0) as client:
        status = call(client, "GET", "/api/cloud/auth/setup/status", "reading the setup status")
        if status.get("has_admin"):
            key = os.environ.get("TUNEFORGE_API_KEY")
            if not key:
                raise DemoError("This workspace already has an admin, so the API needs credentials. Run the demo "
                                "with a fresh --workspace, or set TUNEFORGE_API_KEY to an admin's key.", code=2)
            client.headers["X-API-Key"] = key
        yield client


def call(client: httpx.Client, method: str, path: str, doing: str, **kwargs: Any) -> dict[str, Any]:
    return body(client.request(method, path, **kwargs), doing)


def body(response: httpx.Response, doing: str) -> dict[str, Any]:
    """The JSON body of a successful call; otherwise a DemoError with the server's `detail` and field errors."""
    if response.is_success:
        return response.json()
    request = response.request
    raise DemoError(f"{doing.capitalize()} failed: {request.method} {request.url.path} → {response.status_code}: "
                    f"{detail(response)}", field_errors(response))


def detail(response: httpx.Response) -> str:
    try:
        content = response.json()
    except ValueError:
        return response.text[:500] or response.reason_phrase
    return str(content.get("detail", content)) if isinstance(content, dict) else str(content)


def field_errors(response: httpx.Response) -> list[str]:
    try:
        problems = response.json().get("errors") or []
    except (ValueError, AttributeError):
        return []
    return [f"{p.get('field')}: {p.get('message')}" for p in problems if isinstance(p, dict)]
