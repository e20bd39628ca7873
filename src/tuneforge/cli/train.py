"""`tuneforge train --env NAME` / `--config FILE`: run the training engine in the foreground, without a server.

The run gets a folder `<workspace>/.tuneforge/runs/local-<timestamp>/` like a server job (spec.json,
events.jsonl, control/), so `touch .../control/stop` works here too. Ctrl-C cancels.
"""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from tuneforge.errors import TuneforgeError
from tuneforge.events import EventWriter, read_events
from tuneforge.settings import Settings
from tuneforge.trainer import exit_codes

err = Console(stderr=True)


class ProgressView:
    """Draws lifecycle stages and training progress from trainer events."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.tasks: dict[str, int] = {}

    def _task(self, key: str, label: str, total: int | None) -> int:
        if key not in self.tasks:
            self.tasks[key] = self.progress.add_task(label, total=total or None)
        return self.tasks[key]

    def __call__(self, event) -> None:
        if event.type == "lifecycle.stage" and event.stage:
            stage = event.stage
            task = self._task(stage.key, stage.label, stage.total)
            if stage.status == "completed":
                self.progress.update(task, total=max(stage.total, 1), completed=max(stage.total, 1))
            elif stage.total:
                self.progress.update(task, total=stage.total, completed=stage.current)
        elif event.type == "training.progress" and event.progress:
            p = event.progress
            task = self._task("training", "Training", p.total_steps)
            self.progress.update(task, completed=p.step, total=p.total_steps,
                                 description=f"Training (loss {p.loss:.4f}, lr {p.learning_rate:.2e})")
        elif event.type in ("training.checkpoint", "training.validation", "error", "training.status"):
            colour = "red" if event.severity == "error" else "cyan"
            self.progress.console.print(f"[{colour}]{event.title}[/{colour}]: {event.message}")
        elif event.type == "log.message" and event.severity in ("warning", "error"):
            self.progress.console.print(f"[yellow]{event.message}[/yellow]")


def _overrides(values: list[str]) -> dict[str, str]:
    result = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep:
            raise typer.BadParameter(f"--set expects KEY=VALUE, got {item!r}")
        result[key.strip()] = value
    return result


def _launch_multi(run_dir: Path, processes: int, view: ProgressView) -> int:
    """Several processes: `accelerate launch`, following the events file for progress."""
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes",
               str(processes), "-m", "tuneforge.trainer", str(run_dir)]
    with open(run_dir / "trainer.log", "ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        seen = 0
        while True:
            code = process.poll()
            events = list(read_events(run_dir / "events.jsonl"))
            for event in events[seen:]:
                view(event)
            seen = len(events)
            if code is not None:
                return code
            time.sleep(0.5)


def train(
    env: Annotated[str | None, typer.Option(help="Config environment (config/<env>/config.json)")] = None,
    config: Annotated[Path | None, typer.Option(help="A config JSON file instead of an environment")] = None,
    workspace: Annotated[Path | None, typer.Option(help="Workspace folder [env TUNEFORGE_HOME]")] = None,
    set_: Annotated[list[str], typer.Option("--set", help="Override an option: --set max_train_steps=10")] = [],  # noqa: B006
) -> None:
    """Train in the foreground with progress bars."""
    from tuneforge.services.validation import build_run_spec

    settings = Settings(workspace=workspace) if workspace is not None else Settings()
    job_id = "local-" + datetime.now().strftime("%Y%m%d-%H%M%S")
    try:
        spec = build_run_spec(settings, env=env, config_file=config, overrides=_overrides(set_), job_id=job_id)
    except TuneforgeError as exc:
        err.print(f"[red]{exc.detail}[/red]")
        for problem in exc.errors:
            err.print(f"  [red]{problem.field}[/red]: {problem.message}")
        raise typer.Exit(exit_codes.INVALID_CONFIG) from None
    run_dir = settings.runs_dir / job_id
    (run_dir / "control").mkdir(parents=True)
    spec.write(run_dir / "spec.json")
    err.print(f"run folder: {run_dir}")
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=err) as progress:
        view = ProgressView(progress)
        if spec.config.num_processes > 1:
            code = _launch_multi(run_dir, spec.config.num_processes, view)
        else:
            from tuneforge.trainer.__main__ import main

            events = EventWriter(run_dir / "events.jsonl")
            events.add_listener(view)
            code = main(run_dir, events)
    err.print(f"exit: {exit_codes.NAMES.get(code, code)}")
    raise typer.Exit(code)
