"""The demo's console, and a client of the demo server authenticated like the other client commands."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import httpx
from rich.console import Console
from rich.markup import escape

from tuneforge.cli.client import CliError, check, configured

console = Console()


@contextmanager
def api_client(url: str) -> Iterator[httpx.Client]:
    """Loopback callers act as admin until an admin exists; after that the demo needs an admin's API key."""
    with httpx.Client(base_url=url, timeout=60.0) as client:
        status = check(client.get("/api/cloud/auth/setup/status"), "reading the setup status")
        if status.get("has_admin"):
            _, key = configured()
            if not key:
                raise CliError("This workspace already has an admin, so the API needs credentials. Run the demo "
                               "with a fresh --workspace, or set TUNEFORGE_API_KEY to an admin's key.", code=2)
            client.headers["X-API-Key"] = key
            # Checked now rather than at the first call that needs it, minutes later.
            me = client.get("/api/cloud/auth/me")
            if me.status_code == 401:
                raise CliError("This workspace's server refused the API key (from TUNEFORGE_API_KEY or "
                               "`tuneforge auth login`): set TUNEFORGE_API_KEY to a key of this workspace's admin, "
                               "or run the demo with a fresh --workspace.", code=2)
            user = (check(me, "checking the API key").get("user") or {}).get("username", "?")
            console.print(f"[green]✓[/green] Using the API key of '{escape(user)}'")
        yield client
