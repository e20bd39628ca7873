"""Following a training job: reading its server-sent events and rendering them as lines and a progress bar."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from tuneforge.cli.client import CliError, check
from tuneforge.cli.demo.api import console
from tuneforge.cli.demo.server import ServerProcess
from tuneforge.services.jobs import FINAL

STREAM_RETRIES = 5


def follow(client: httpx.Client, job_id: str, server: ServerProcess | None = None) -> dict[str, Any]:
    """Render the job's events until it is over and return the job; the stream resumes where it dropped.
    `server`: the one the demo started, whose exit ends the wait at once (a remote server is retried)."""
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[loss]}"), TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        view = JobView(progress)
        next_index, failures = 0, 0
        while True:
            try:
                for event in sse_events(client, job_id, next_index):
                    next_index = event["index"] + 1
                    view.show(event)
                    failures = 0
            except httpx.HTTPError as exc:
                failures += 1
                if server is not None and server.process.poll() is not None:
                    raise CliError("The server stopped while training was running", server.log_tail()) from exc
                if failures > STREAM_RETRIES:
                    raise CliError(f"Lost the event stream {failures} times in a row: {exc}") from exc
                time.sleep(1.0)
                continue
            # The stream ends once the job is over and drained; otherwise (e.g. a proxy closed it) resume.
            job = check(client.get(f"/api/jobs/{job_id}"), "reading the job")
            if job["status"] in FINAL:
                progress.update(view.stage_task, visible=False)
                return job


def sse_events(client: httpx.Client, job_id: str, since: int) -> Iterator[dict[str, Any]]:
    """Events of one SSE connection, from index `since` on."""
    timeout = httpx.Timeout(10.0, read=60.0)  # the server sends a keep-alive every 15 s
    with client.stream("GET", "/api/training/events/stream", params={"job_id": job_id, "since_index": since},
                       headers={"Accept": "text/event-stream"}, timeout=timeout) as response:
        if not response.is_success:
            response.read()
            check(response, "opening the event stream")  # raises, with the server's detail
        yield from _parse_sse(response.iter_lines())


def _parse_sse(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    """The JSON data of each event, until an `end` event."""
    kind, data = "message", []
    for line in lines:
        if line.startswith("event:"):
            kind = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())
        elif not line and data:  # a blank line ends one event
            if kind == "end":
                return
            yield json.loads("\n".join(data))
            kind, data = "message", []


class JobView:
    """Turns events into output: a line per stage, checkpoint and validation, and a bar for the steps."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.stage_task = progress.add_task("waiting for the trainer", total=None, loss="")
        self.train_task: Any = None
        self.stages: dict[str, str] = {}  # label -> last status shown

    def print(self, text: str) -> None:
        self.progress.console.print(text)

    def show(self, event: dict[str, Any]) -> None:
        handler = {
            "lifecycle.stage": self._stage, "training.status": self._status, "training.progress": self._progress,
            "training.checkpoint": self._checkpoint, "training.validation": self._validation,
            "error": self._error, "log.message": self._log,
        }.get(event.get("type", ""))
        if handler:
            handler(event)

    def _stage(self, event: dict[str, Any]) -> None:
        stage = event.get("stage") or {}
        label, status = stage.get("label", "?"), stage.get("status", "?")
        if self.stages.get(label) == status and status != "running":
            return
        self.stages[label] = status
        if status == "running":
            total = stage.get("total") or None
            self.progress.update(self.stage_task, description=label, total=total, completed=stage.get("current", 0))
        elif status == "completed":
            self.print(f"  [green]✓[/green] {escape(label)}")
        else:
            self.print(f"  [{'red' if status == 'failed' else 'yellow'}]{status}[/] {escape(label)}")

    def _status(self, event: dict[str, Any]) -> None:
        data = event.get("data") or {}
        who = "server" if data.get("source") == "server" else "trainer"
        colour = {"error": "red", "warning": "yellow", "success": "green"}.get(event.get("severity", ""), "cyan")
        self.print(f"[{colour}]●[/] {who}: {escape(event.get('message') or event.get('title', ''))}")

    def _progress(self, event: dict[str, Any]) -> None:
        step = event.get("progress") or {}
        if self.train_task is None:
            self.progress.update(self.stage_task, visible=False)
            self.train_task = self.progress.add_task("training", total=step.get("total_steps"), loss="")
        loss = step.get("loss")
        self.progress.update(self.train_task, completed=step.get("step", 0), total=step.get("total_steps"),
                             loss=f"loss {loss:.4f}" if isinstance(loss, (int, float)) else "")

    def _checkpoint(self, event: dict[str, Any]) -> None:
        checkpoint = event.get("checkpoint") or {}
        self.print(f"  [magenta]■[/magenta] checkpoint at step {checkpoint.get('step')}: "
                   f"{escape(checkpoint.get('path', ''))}")

    def _validation(self, event: dict[str, Any]) -> None:
        data = event.get("data") or {}
        paths = data.get("paths") or []
        self.print(f"  [blue]▣[/blue] validation at step {data.get('step')} "
                   f"('{escape(str(data.get('prompt', '')))}'): {escape(', '.join(paths))}")

    def _error(self, event: dict[str, Any]) -> None:
        self.print(f"[red]✗ {escape(event.get('title', 'error'))}: {escape(event.get('message', ''))}[/red]")

    def _log(self, event: dict[str, Any]) -> None:
        if event.get("severity") in ("warning", "error"):
            self.print(f"  [yellow]![/yellow] {escape(event.get('message', ''))}")
