"""`tuneforge demo`: the whole product working on this machine, in one command.

It starts the real server as a subprocess, builds a tiny random-weight model, uploads a small image dataset and
drives a short LoRA run purely over the HTTP API (create environment, validate, start, stream events), then says
where everything landed. Nothing here imports torch at import time: the CLI must stay quick to start.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from tuneforge.cli.demo import api
from tuneforge.cli.demo.api import DemoError, api_client, console, print_error
from tuneforge.cli.demo.environment import ENV_NAME, cancel, start, validate, write_environment
from tuneforge.cli.demo.follow import follow
from tuneforge.cli.demo.samples import make_model, upload_dataset
from tuneforge.cli.demo.server import free_port, running_server
from tuneforge.cli.demo.summary import summarise

__all__ = ["demo"]

DEFAULT_WORKSPACE = Path("tuneforge-demo")


def demo(
    workspace: Annotated[Path, typer.Option(help="Demo workspace (created if missing)")] = DEFAULT_WORKSPACE,
    port: Annotated[int | None, typer.Option(help="Port for the demo server (default: a free one)")] = None,
    steps: Annotated[int, typer.Option(min=1, max=10000, help="Training steps of the tiny LoRA run")] = 30,
) -> None:
    """Start a server, upload a sample dataset and train a tiny LoRA over the API, showing every step."""
    workspace = workspace.expanduser().resolve()
    started = time.monotonic()
    try:
        code = _run(workspace, free_port(port), steps)
    except DemoError as exc:
        print_error(exc)
        raise typer.Exit(exc.code) from None
    except KeyboardInterrupt:
        console.print("[yellow]Interrupted: the demo server was stopped.[/yellow]")
        raise typer.Exit(130) from None
    console.print(f"[dim]Demo finished in {time.monotonic() - started:.0f} s.[/dim]")
    raise typer.Exit(code)


def _run(workspace: Path, port: int, steps: int) -> int:
    console.rule("[bold]tuneforge demo")
    workspace.mkdir(parents=True, exist_ok=True)
    with running_server(workspace, port) as server, api_client(server.url) as client:
        model = make_model(workspace)
        dataset = upload_dataset(client, workspace)
        output_dir = workspace / "output" / ENV_NAME
        write_environment(client, workspace, model, dataset, output_dir, steps)
        validate(client)
        job_id = start(client)
        try:
            seen = follow(client, server, job_id)
        except KeyboardInterrupt:
            cancel(client, job_id)  # the trainer runs in its own session: it would outlive the server
            raise
        job = api.call(client, "GET", f"/api/jobs/{job_id}", "reading the job")
        return summarise(client, server, job, seen)
