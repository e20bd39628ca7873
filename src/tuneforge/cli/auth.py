"""`tuneforge auth`: create the first admin, log in, and keep an API key for later commands."""

from __future__ import annotations

from typing import Annotated

import httpx
import typer
from rich.console import Console

from tuneforge.cli.client import check, connect, load_client_config, save_client_config
from tuneforge.settings import ClientSettings

app = typer.Typer(help="Authenticate against a running server.", no_args_is_help=True)
console = Console()

UrlOption = Annotated[str | None, typer.Option(help="Server URL [env TUNEFORGE_URL; default http://localhost:8001]")]


@app.command()
def setup(
    username: Annotated[str, typer.Option(prompt=True)],
    email: Annotated[str, typer.Option(prompt=True)],
    password: Annotated[str, typer.Option(prompt=True, hide_input=True, confirmation_prompt=True)],
    url: UrlOption = None,
    setup_token: Annotated[str | None, typer.Option(help="Needed only from another machine")] = None,
) -> None:
    """Create the first admin on a running server and store an API key for later commands."""
    with connect(url) as client:
        body = {"username": username, "email": email, "password": password}
        if setup_token:
            body["setup_token"] = setup_token
        check(client.post("/api/cloud/auth/setup/first-admin", json=body), "creating the first admin")
        _store_new_key(client, "tuneforge-cli")
    console.print(f"Admin '{username}' created; an API key for this CLI is stored.")


@app.command()
def login(
    username: Annotated[str, typer.Option(prompt=True)],
    password: Annotated[str, typer.Option(prompt=True, hide_input=True)],
    url: UrlOption = None,
    key_name: Annotated[str, typer.Option(help="Name of the API key to create")] = "tuneforge-cli",
) -> None:
    """Log in and store a new API key for later commands."""
    with connect(url) as client:
        client.headers.pop("X-API-Key", None)
        check(client.post("/api/cloud/auth/login", json={"username": username, "password": password}), "logging in")
        _store_new_key(client, key_name)
    console.print(f"Logged in as '{username}'; an API key for this CLI is stored.")


@app.command()
def whoami(url: UrlOption = None) -> None:
    """Show who the stored credentials belong to."""
    with connect(url) as client:
        me = check(client.get("/api/cloud/auth/me"), "reading who the credentials belong to")
    user = me.get("user") or {}
    console.print(f"{user.get('username', me['auth_method'])} ({', '.join(user.get('level_names', []))})")


def _store_new_key(client: httpx.Client, name: str) -> None:
    created = check(client.post("/api/cloud/auth/api-keys", json={"name": name}), "creating an API key")
    settings = ClientSettings()
    stored = load_client_config(settings.client_config)
    stored.update({"url": str(client.base_url).rstrip("/"), "api_key": created["key"]})
    save_client_config(settings.client_config, stored)
