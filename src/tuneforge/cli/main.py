"""The `tuneforge` command (also installed as `simpletuner`)."""

from __future__ import annotations

import typer

from tuneforge.cli import auth, server

app = typer.Typer(
    name="tuneforge",
    help="tuneforge: a self-hosted training server for diffusion models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.command("server")(server.serve)
app.add_typer(auth.app, name="auth")


def main() -> None:
    app()
