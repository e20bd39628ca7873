"""`tuneforge demo`: the whole product working on this machine, in one command.

It starts the real server as a subprocess, builds a tiny random-weight model, uploads a small image dataset and
drives a short LoRA run over the HTTP API (create environment, validate, start, stream events), then says where
everything landed. The one file it writes into the workspace itself is the environment's dataloader file (the
API writes only starter ones); it can, because it runs on the server's machine. Nothing here imports torch at
import time: the CLI must stay quick to start.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import httpx
import typer

from tuneforge.cli.client import CliError
from tuneforge.cli.demo.api import api_client, console
from tuneforge.cli.demo.environment import cancel_unless_final, start, validate, write_environment
from tuneforge.cli.demo.follow import follow
from tuneforge.cli.demo.samples import MODELS, DemoModel, make_model, upload_dataset
from tuneforge.cli.demo.server import ServerProcess, free_port, running_server
from tuneforge.cli.demo.summary import summarise

__all__ = ["demo"]

DEFAULT_WORKSPACE = Path("tuneforge-demo")
MARKER = ".tuneforge-demo"


def demo(
    workspace: Annotated[Path, typer.Option(
        file_okay=False, help="Demo workspace: a new or empty folder, or one an earlier demo made")
    ] = DEFAULT_WORKSPACE,
    port: Annotated[int | None, typer.Option(
        min=0, max=65535, help="Port for the demo server (default or 0: a free one)")] = None,
    steps: Annotated[int, typer.Option(min=1, max=10000, help="Training steps of the tiny LoRA run")] = 30,
    family: Annotated[str, typer.Option(help=f"Model family to train: {', '.join(MODELS)}")] = "pixart_sigma",
) -> None:
    """Start a server, upload a sample dataset and train a tiny LoRA over the API, showing every step."""
    if family not in MODELS:
        raise typer.BadParameter(f"{family!r} is not one of {', '.join(MODELS)}", param_hint="--family")
    workspace = workspace.expanduser().resolve()
    started = time.monotonic()
    try:
        port = free_port(port)  # refused up front: another server on that port could answer /health
    except OSError as exc:
        raise CliError(f"Port {port} is not free ({exc.strerror}): pick another --port or leave it out",
                       code=2) from exc
    claim_workspace(workspace)
    try:
        _run(workspace, port, steps, MODELS[family])
    except KeyboardInterrupt:
        console.print("[yellow]Interrupted: the demo server was stopped.[/yellow]")
        raise typer.Exit(130) from None
    console.print(f"[dim]Demo finished in {time.monotonic() - started:.0f} s.[/dim]")


def claim_workspace(workspace: Path) -> None:
    """Create the workspace and mark it as the demo's, or refuse a folder that is not: the demo rewrites
    config/demo* and output/demo* and switches the active environment, which must never happen to a real
    workspace (or to any other folder)."""
    try:
        if workspace.is_dir() and not (workspace / MARKER).is_file() and any(workspace.iterdir()):
            raise CliError(f"{workspace} is not empty and no demo made it (there is no {MARKER} file in it), so "
                           "the demo would overwrite files there. Pick a new or empty --workspace.", code=2)
        workspace.mkdir(parents=True, exist_ok=True)
        (workspace / MARKER).write_text("A `tuneforge demo` workspace: later demos may overwrite config/demo*, "
                                        "output/demo* and server.log here and switch the active environment.\n")
    except OSError as exc:
        raise CliError(f"Cannot use {workspace} as the demo workspace: {exc}", code=2) from exc


def _run(workspace: Path, port: int, steps: int, demo: DemoModel) -> None:
    console.rule("[bold]tuneforge demo")
    with running_server(workspace, port) as server:
        try:
            with api_client(server.url) as client:
                _train(client, server, workspace, steps, demo)
        except httpx.HTTPError as exc:  # the server died, or stopped answering
            raise CliError(f"Talking to the demo server failed: {str(exc) or type(exc).__name__} "
                           f"(log: {server.log_path}, last lines below)", server.log_tail()) from exc


def _train(client: httpx.Client, server: ServerProcess, workspace: Path, steps: int, demo: DemoModel) -> None:
    model = make_model(workspace, demo)
    dataset = upload_dataset(client, demo)
    output_dir = workspace / "output" / demo.env
    write_environment(client, workspace, demo, model, dataset, output_dir, steps)
    validate(client, demo)
    job_id = start(client)
    try:
        job = follow(client, job_id, server)
    finally:
        # Whatever ended the wait (Ctrl-C, a lost stream): the trainer runs in a session of its own and would
        # outlive the demo's server.
        cancel_unless_final(client, job_id)
    summarise(client, server, job)
