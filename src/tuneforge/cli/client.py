"""The HTTP client used by client commands: server URL and API key from flags, env or the config file."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import httpx
import typer
from rich.console import Console

from tuneforge.settings import DEFAULT_SERVER_URL, ClientSettings

console = Console(stderr=True)


def load_client_config(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, json.JSONDecodeError) as exc:
        console.print(f"[red]Cannot read client config {path}: {exc}[/red]")
        raise typer.Exit(2) from exc


def save_client_config(path: Path, data: dict[str, Any]) -> None:
    """Write the config readable by its owner only: it holds an API key."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle, indent=2)
    os.replace(temporary, path)


def connect(url: str | None = None, timeout: float = 30.0) -> httpx.Client:
    """A client for the configured server; the env beats the config file, a flag beats both."""
    settings = ClientSettings()
    stored = load_client_config(settings.client_config)
    base = url or settings.url or stored.get("url") or DEFAULT_SERVER_URL
    key = settings.api_key or stored.get("api_key")
    headers = {"X-API-Key": key} if key else {}
    return httpx.Client(base_url=base, headers=headers, timeout=timeout)


def check(response: httpx.Response) -> dict[str, Any]:
    """Return the JSON body, or print the server's `detail` and exit non-zero."""
    try:
        body = response.json()
    except ValueError:
        body = {"detail": response.text[:500]}
    if response.is_success:
        return body
    console.print(f"[red]{response.status_code}: {body.get('detail', body)}[/red]")
    for problem in body.get("errors", []) or []:
        console.print(f"  - {problem.get('field')}: {problem.get('message')}")
    raise typer.Exit(1)
