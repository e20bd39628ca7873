"""`tuneforge server`: run the HTTP API."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console

from tuneforge.errors import TuneforgeError
from tuneforge.services import setup, validation
from tuneforge.settings import Settings

console = Console(stderr=True)


def serve(
    host: Annotated[str | None, typer.Option(help="Bind address [env TUNEFORGE_HOST; default 0.0.0.0]")] = None,
    port: Annotated[int | None, typer.Option(help="Port [env TUNEFORGE_PORT; default 8001]")] = None,
    workspace: Annotated[
        Path | None,
        typer.Option(file_okay=False, help="Workspace folder [env TUNEFORGE_HOME; default: current directory]"),
    ] = None,
    env: Annotated[str | None, typer.Option(help="Validate this environment and start training once ready")] = None,
) -> None:
    """Start the tuneforge server."""
    overrides: dict[str, Any] = {"host": host, "port": port, "workspace": workspace}
    try:
        settings = Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        for problem in exc.errors():
            console.print(f"[red]Setting {'.'.join(map(str, problem['loc']))}: {problem['msg']}[/red]")
        raise typer.Exit(2) from exc
    if env is not None:
        _check_environment(settings, env)
    try:
        from tuneforge.api.app import create_app  # here: `tuneforge train` and the client commands need no server

        app = create_app(settings, start_env=env)
    except OSError as exc:  # creating the workspace's folders: under a file, no permission, disk full...
        console.print(f"[red]Cannot prepare the workspace {settings.workspace}: {exc}[/red]")
        raise typer.Exit(2) from exc
    _announce(settings, app)
    # proxy_headers off: uvicorn would otherwise take X-Forwarded-For from any loopback peer, whatever
    # TUNEFORGE_TRUSTED_PROXIES says; the API decides the client address itself (`api.deps.client_address`).
    import uvicorn

    config = uvicorn.Config(app, host=settings.host, port=settings.port, log_level=settings.log_level,
                            timeout_graceful_shutdown=5, proxy_headers=False)
    uvicorn.Server(config).run()


def _check_environment(settings: Settings, env: str) -> None:
    """Refuse to start with a clear message when the environment would not train."""
    try:
        report = validation.validate(settings, env=env)
    except TuneforgeError as exc:
        console.print(f"[red]Environment '{env}': {exc.detail}[/red]")
        raise typer.Exit(2) from exc
    if not report.valid:
        console.print(f"[red]Environment '{env}' is not valid; the server did not start:[/red]")
        for problem in report.errors:
            console.print(f"  - {problem.field}: {problem.message}")
        raise typer.Exit(2)
    console.print(f"Environment '{env}' is valid; training starts once the server is ready.")


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
