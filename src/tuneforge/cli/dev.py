"""`tuneforge dev ...`: developer tools (tiny random-weight models for demos and tests)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Developer tools.", no_args_is_help=True)


@app.command("make-tiny-model")
def make_tiny_model(
    out: Annotated[Path, typer.Argument(help="Folder to write the diffusers pipeline into")],
    family: Annotated[str, typer.Option(help="Model family: pixart_sigma or flux")] = "pixart_sigma",
    flavour: Annotated[str | None, typer.Option(
        help="Flavour (flux: dev, schnell, kontext); the family's default")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the random weights")] = 0,
) -> None:
    """Write a tiny random-weight diffusers pipeline (offline tokenizers included)."""
    from tuneforge.models.tiny import make_tiny_model as make

    try:
        path = make(family, out, seed, flavour)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--family/--flavour") from None
    typer.echo(f"wrote {path}")
