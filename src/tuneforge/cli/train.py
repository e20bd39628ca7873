"""`tuneforge train --env NAME` / `--config FILE`: run the training engine in the foreground, without a server.

The run gets a folder `<workspace>/.tuneforge/runs/local-<timestamp>/` like a server job (spec.json,
events.jsonl, control/), so `touch .../control/stop` works here too. Ctrl-C cancels.
"""

from __future__ import annotations

import subprocess
import time
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from tuneforge import runfolder
from tuneforge.errors import TuneforgeError
from tuneforge.events import EventWriter, describe_telemetry, read_new_events
from tuneforge.scheduler.launcher import trainer_command
from tuneforge.settings import Settings

err = Console(stderr=True)


class ProgressView:
    """Draws lifecycle stages and training progress from trainer events."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.tasks: dict[str, int] = {}
        self.costs_shown = 0  # the step whose costs were printed last

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
            loss = f"loss {p.loss:.4f}, " if p.loss is not None else ""
            self.progress.update(task, completed=p.step, total=p.total_steps,
                                 description=f"Training ({loss}lr {p.learning_rate:.2e})")
            if p.telemetry and (p.step == p.total_steps or p.step // 100 > self.costs_shown // 100):
                self.costs_shown = p.step  # reports come once a second: a line each hundred steps crossed
                self.progress.console.print(f"[dim]step {p.step}: {describe_telemetry(p.telemetry)}[/dim]")
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


def _launch_multi(run_dir: Path, config, view: ProgressView) -> int:
    """Several processes: `accelerate launch` as the server starts it, following the events file for progress."""
    command = trainer_command(run_dir, config.num_processes, config.accelerate_config)
    with open(run_dir / runfolder.LOG_FILE, "ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        offset = 0
        while True:
            code = process.poll()  # polled before reading, so the last events are read after the exit
            events, offset = read_new_events(run_dir / runfolder.EVENTS_FILE, offset)
            for event in events:
                view(event)
            if code is not None:
                return code
            time.sleep(0.5)


def new_run_dir(runs_dir: Path) -> Path:
    """A fresh `local-<time>` folder; creating it claims the name, so runs started in the same second differ."""
    runs_dir.mkdir(parents=True, exist_ok=True)
    stamp = "local-" + datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir, number = runs_dir / stamp, 1
    while True:
        try:
            run_dir.mkdir()
            return run_dir
        except FileExistsError:
            number += 1
            run_dir = runs_dir / f"{stamp}-{number}"


def train(
    env: Annotated[str | None, typer.Option(help="Config environment (config/<env>/config.json)")] = None,
    config: Annotated[Path | None, typer.Option(help="A config JSON file instead of an environment")] = None,
    workspace: Annotated[Path | None, typer.Option(help="Workspace folder [env TUNEFORGE_HOME]")] = None,
    set_: Annotated[list[str], typer.Option("--set", help="Override an option: --set max_train_steps=10")] = [],  # noqa: B006
) -> None:
    """Train in the foreground with progress bars."""
    from tuneforge.services.job_policy import JobPolicy
    from tuneforge.services.validation import build_run_spec

    settings = Settings(workspace=workspace) if workspace is not None else Settings()
    overrides = _overrides(set_)
    run_dir = new_run_dir(settings.runs_dir)
    try:
        # A person in a shell trains as themselves: the server's limits on what a job may touch do not apply.
        spec = build_run_spec(settings, env=env, config_file=config, overrides=overrides, job_id=run_dir.name,
                              policy=JobPolicy.unrestricted())
    except TuneforgeError as exc:
        run_dir.rmdir()  # nothing was written into it
        err.print(f"[red]{exc.detail}[/red]")
        for problem in exc.errors:
            err.print(f"  [red]{problem.field}[/red]: {problem.message}")
        raise typer.Exit(runfolder.INVALID_CONFIG) from None
    (run_dir / "control").mkdir()
    spec.write(run_dir / "spec.json")
    err.print(f"run folder: {run_dir}")
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=err) as progress:
        view = ProgressView(progress)
        if spec.config.num_processes > 1:
            code = _launch_multi(run_dir, spec.config, view)
        else:
            from tuneforge.trainer.__main__ import main

            events = EventWriter(run_dir / runfolder.EVENTS_FILE)
            events.add_listener(view)
            code = main(run_dir, events)
    err.print(f"exit: {runfolder.EXIT_NAMES.get(code, code)}")
    raise typer.Exit(code)
