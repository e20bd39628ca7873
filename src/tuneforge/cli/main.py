"""The `tuneforge` command (also installed as `simpletuner`)."""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import sys
from typing import Any

import click
import httpx
import typer
from typer.core import TyperGroup

from tuneforge.cli import auth, configs, datasets, demo, dev, jobs, server, train
from tuneforge.cli.client import CliError, unreachable


class Commands(TyperGroup):
    """Every command's failures that the user can act on end here: one clear message and an exit code, no
    traceback (`CliError` from a command, a server that cannot be reached)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CliError as exc:
            error = exc
        except httpx.TransportError as exc:
            error = unreachable(exc)
        error.show()
        raise typer.Exit(error.code)


app = typer.Typer(
    name="tuneforge",
    help="tuneforge: a self-hosted training server for diffusion models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    cls=Commands,
)
app.command("server")(server.serve)
app.add_typer(auth.app, name="auth")
app.add_typer(configs.app, name="configs")
app.add_typer(datasets.app, name="datasets")
app.add_typer(jobs.app, name="jobs")
app.command("train")(train.train)
app.add_typer(dev.app, name="dev")
app.command("demo")(demo.demo)


def main() -> None:
    """The console command. A command that trained in this process leaves torch's object graph behind, whose
    teardown at interpreter exit costs a second or more: once the command is done and its output flushed, the
    process ends at once."""
    try:
        app()
        code = 0
    except SystemExit as done:
        if isinstance(done.code, str):
            print(done.code, file=sys.stderr)
        code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
    if "torch" not in sys.modules:
        sys.exit(code)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    atexit._run_exitfuncs()  # what libraries registered (wandb finishes its run and removes its media folder)
    logging.shutdown()
    os._exit(code)
