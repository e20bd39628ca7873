"""`tuneforge server`: run the HTTP API."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
import uvicorn
from rich.console import Console

from tuneforge.api.app import create_app
from tuneforge.services import setup
from tuneforge.settings import Settings

console = Console(stderr=True)


def serve(
    host: Annotated[str | None, typer.Option(help="Bind address [env TUNEFORGE_HOST; default 0.0.0.0]")] = None,
    port: Annotated[int | None, typer.Option(help="Port [env TUNEFORGE_PORT; default 8001]")] = None,
    workspace: Annotated[
        Path | None, typer.Option(help="Workspace folder [env TUNEFORGE_HOME; default: current directory]")
    ] = None,
    env: Annotated[str | None, typer.Option(help="Validate this environment and start training once ready")] = None,
) -> None:
    """Start the tuneforge server."""
    overrides: dict[str, Any] = {"host": host, "port": port, "workspace": workspace}
    settings = Settings(**{k: v for k, v in overrides.items() if v is not None})
    if env is not None:
        console.print("[red]--env is not available yet: this build cannot run training jobs.[/red]")
        raise typer.Exit(2)
    app = create_app(settings)
    _announce(settings, app)
    config = uvicorn.Config(app, host=settings.host, port=settings.port, log_level=settings.log_level)
    uvicorn.Server(config).run()


def _announce(settings: Settings, app: Any) -> None:
    console.print(f"tuneforge workspace: {settings.workspace}")
    with app.state.session_factory() as db:
        if setup.has_admin(db):
            return
    token = setup.ensure_setup_token(settings.state_dir)
    console.print(
        "No admin yet. Requests from this machine act as admin until you create one:\n"
        f"  curl -s -X POST http://localhost:{settings.port}/api/cloud/auth/setup/first-admin "
        "-H 'Content-Type: application/json' -d '{\"email\": ..., \"username\": ..., \"password\": ...}'\n"
        "From another machine, add this one-time setup token to that body as \"setup_token\":\n"
        f"  {token}\n"
        f"(also in {settings.state_dir / setup.SETUP_TOKEN_FILE})"
    )
