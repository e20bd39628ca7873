"""The `tuneforge` command (also installed as `simpletuner`)."""

from __future__ import annotations

import typer

from tuneforge.cli import auth, configs, datasets, demo, dev, server, train

app = typer.Typer(
    name="tuneforge",
    help="tuneforge: a self-hosted training server for diffusion models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.command("server")(server.serve)
app.add_typer(auth.app, name="auth")
app.add_typer(configs.app, name="configs")
app.add_typer(datasets.app, name="datasets")
app.command("train")(train.train)
app.add_typer(dev.app, name="dev")
app.command("demo")(demo.demo)


def main() -> None:
    app()
