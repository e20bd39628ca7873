"""`tuneforge configs list|show|validate`: inspect config environments on the local workspace (no server)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from tuneforge.errors import FieldError, TuneforgeError
from tuneforge.services import configs, validation
from tuneforge.settings import Settings

app = typer.Typer(help="Inspect and validate config environments in a workspace.", no_args_is_help=True)
out = Console()
err = Console(stderr=True)

WorkspaceOption = Annotated[
    Path | None, typer.Option(help="Workspace folder [env TUNEFORGE_HOME; default: current directory]")]


def _settings(workspace: Path | None) -> Settings:
    settings = Settings(workspace=workspace) if workspace is not None else Settings()
    if not settings.workspace.is_dir():
        err.print(f"[red]Workspace {settings.workspace} does not exist[/red]")
        raise typer.Exit(2)
    return settings


def _fail(exc: TuneforgeError) -> typer.Exit:
    err.print(f"[red]{exc.detail}[/red]")
    _print_problems(exc.errors, "red")
    return typer.Exit(1)


def _print_problems(problems: list[FieldError], colour: str) -> None:
    for problem in problems:
        err.print(f"  [{colour}]{problem.field}[/{colour}]: {problem.message}", highlight=False)


@app.command("list")
def list_cmd(workspace: WorkspaceOption = None,
             as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False) -> None:
    """List environments (the active one is marked with *)."""
    listing = configs.list_environments(_settings(workspace))
    if as_json:
        out.print_json(json.dumps(listing))
        return
    table = Table("", "name", "family", "flavour", "type", "description", box=None)
    for env in listing["configs"]:
        kind = env.get("model_type") or "?"
        if env.get("lora_type") and kind == "lora":
            kind += f"/{env['lora_type']}"
        table.add_row("*" if env["is_active"] else "", env["name"], str(env.get("model_family") or "?"),
                      str(env.get("model_flavour") or "-"), kind, env.get("error") or env["description"])
    out.print(table if listing["count"] else "No environments (create one with POST /api/configs/environments)")


@app.command()
def show(name: str, workspace: WorkspaceOption = None) -> None:
    """Print an environment's config as JSON."""
    try:
        body: dict[str, Any] = configs.get_environment(_settings(workspace), name)
    except TuneforgeError as exc:
        raise _fail(exc) from exc
    out.print_json(json.dumps(body))


@app.command("validate")
def validate_cmd(name: str, workspace: WorkspaceOption = None) -> None:
    """Validate an environment as `POST /api/training/validate` would; exit 1 when invalid."""
    settings = _settings(workspace)
    try:
        report = validation.validate(settings, env=name)
    except TuneforgeError as exc:
        raise _fail(exc) from exc
    if report.warnings:
        err.print("[yellow]Warnings:[/yellow]")
        _print_problems(report.warnings, "yellow")
    if not report.valid:
        err.print(f"[red]Validation Failed for '{name}':[/red]")
        _print_problems(report.errors, "red")
        raise typer.Exit(1)
    out.print(f"[green]Configuration Valid[/green] ({name})")
