"""The HTTP client used by client commands: server URL and API key from flags, env or the config file.

Failures are raised as `CliError`; the `tuneforge` command group (cli/main.py) prints them, and an unreachable
server, as one clear message and exits, so commands only say what they were doing.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.markup import escape

from tuneforge.settings import DEFAULT_SERVER_URL, ClientSettings

console = Console(stderr=True)


class CliError(Exception):
    """A failure the user can act on: a message, detail lines, and the exit code (2: fix the command or config)."""

    def __init__(self, message: str, details: list[str] | None = None, code: int = 1) -> None:
        super().__init__(message)
        self.message, self.details, self.code = message, details or [], code

    def show(self) -> None:
        console.print(f"[red]{escape(self.message)}[/red]")
        for line in self.details:
            console.print(f"  - {escape(line)}")


def unreachable(exc: httpx.TransportError) -> CliError:
    """`Cannot reach <server>: <why>` for a refused connection, a timeout, a bad address…"""
    try:
        url = exc.request.url
        where = f"{url.scheme}://{url.netloc.decode()}"
    except RuntimeError:  # raised before a request was made
        where = "the server"
    return CliError(f"Cannot reach {where}: {str(exc) or type(exc).__name__}")


def load_client_config(path: Path) -> dict[str, Any]:
    """The config file `tuneforge auth setup|login` writes: a JSON object with `url` and `api_key` strings."""
    try:
        stored = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise CliError(f"Cannot read client config {path}: {exc}", code=2) from exc
    if not isinstance(stored, dict) or any(stored.get(k) is not None and not isinstance(stored[k], str)
                                           for k in ("url", "api_key")):
        raise CliError(f"Client config {path} must be a JSON object whose \"url\" and \"api_key\" are strings; "
                       "fix or delete it (`tuneforge auth login` writes a new one)", code=2)
    return stored


def save_client_config(path: Path, data: dict[str, Any]) -> None:
    """Write the config readable by its owner only: it holds an API key."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle, indent=2)
    os.replace(temporary, path)


def configured() -> tuple[str | None, str | None]:
    """The server URL and API key: the env (TUNEFORGE_URL, TUNEFORGE_API_KEY) beats the config file."""
    settings = ClientSettings()
    stored = load_client_config(settings.client_config)
    return settings.url or stored.get("url"), settings.api_key or stored.get("api_key")


def connect(url: str | None = None, timeout: float = 30.0) -> httpx.Client:
    """A client for the configured server; a flag beats the env and the config file."""
    configured_url, key = configured()
    base = url or configured_url or DEFAULT_SERVER_URL
    # Checked here: httpx would take "localhost:8001" as a URL with scheme "localhost" and fail on each request.
    try:
        parsed = httpx.URL(base)
    except httpx.InvalidURL:
        parsed = None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.host:
        raise CliError(f"Invalid server URL {base!r}: expected http://host:port or https://host", code=2)
    headers = {"X-API-Key": key} if key else {}
    return httpx.Client(base_url=base, headers=headers, timeout=timeout)


def check(response: httpx.Response, doing: str | None = None) -> Any:
    """The JSON body of a successful call; otherwise a CliError with the status, the server's `detail` and one
    line per field error, prefixed by what was being done (`doing`, e.g. "uploading the dataset")."""
    try:
        body = response.json()
    except ValueError:
        body = {"detail": response.text[:500] or response.reason_phrase}
    if response.is_success:
        return body
    detail, problems = (body.get("detail", body), body.get("errors") or []) if isinstance(body, dict) else (body, [])
    message = f"{response.status_code}: {detail}"
    if doing:
        request = response.request
        message = f"{doing[:1].upper()}{doing[1:]} failed: {request.method} {request.url.path} → {message}"
    raise CliError(message, [f"{p.get('field')}: {p.get('message')}" for p in problems if isinstance(p, dict)])
