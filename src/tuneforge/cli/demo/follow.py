"""Following a training job: reading its server-sent events and rendering them as lines and a progress bar."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from tuneforge.cli.demo import api
from tuneforge.cli.demo.api import FINAL_STATES, DemoError, console
from tuneforge.cli.demo.server import Server

STREAM_RETRIES = 5


@dataclass
class Seen:
    """What the event stream told us, for the summary."""

    next_index: int = 0
    checkpoints: list[str] = field(default_factory=list)
    validation_images: list[str] = field(default_factory=list)
    stages: dict[str, str] = field(default_factory=dict)


def follow(client: httpx.Client, server: Server, job_id: str) -> Seen:
    """Render the job's events until it is over; the stream is resumed from the last index if it drops."""
    seen = Seen()
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[loss]}"), TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        view = JobView(progress)
        failures = 0
        while True:
            try:
                for event in sse_events(client, job_id, seen.next_index):
                    seen.next_index = event["index"] + 1
                    view.show(event, seen)
                    failures = 0
            except httpx.HTTPError as exc:
                failures += 1
                if server.process.poll() is not None:
                    raise DemoError("The server stopped while training was running", server.log_tail()) from exc
                if failures > STREAM_RETRIES:
                    raise DemoError(f"Lost the event stream {failures} times in a row: {exc}") from exc
                time.sleep(1.0)
                continue
            # The stream ends once the job is over and drained; otherwise (e.g. a proxy closed it) resume.
            if api.call(client, "GET", f"/api/jobs/{job_id}", "reading the job")["status"] in FINAL_STATES:
                progress.update(view.stage_task, visible=False)
                return seen


def sse_events(client: httpx.Client, job_id: str, since: int) -> Iterator[dict[str, Any]]:
    """Events of one SSE connection, from index `since` on."""
    headers = {"Accept": "text/event-stream", **({"Last-Event-ID": str(since - 1)} if since else {})}
    timeout = httpx.Timeout(10.0, read=60.0)  # the server sends a keep-alive every 15 s
    with client.stream("GET", "/api/training/events/stream", params={"job_id": job_id, "since_index": since},
                       headers=headers, timeout=timeout) as response:
        if not response.is_success:
            response.read()
            raise DemoError(f"Opening the event stream failed: {response.status_code}: {api.detail(response)}")
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

    def print(self, text: str) -> None:
        self.progress.console.print(text)

    def show(self, event: dict[str, Any], seen: Seen) -> None:
        handler = {
            "lifecycle.stage": self._stage, "training.status": self._status, "training.progress": self._progress,
            "training.checkpoint": self._checkpoint, "training.validation": self._validation,
            "error": self._error, "log.message": self._log,
        }.get(event.get("type", ""))
        if handler:
            handler(event, seen)

    def _stage(self, event: dict[str, Any], seen: Seen) -> None:
        stage = event.get("stage") or {}
        label, status = stage.get("label", "?"), stage.get("status", "?")
        if seen.stages.get(label) == status and status != "running":
            return
        seen.stages[label] = status
        if status == "running":
            total = stage.get("total") or None
            self.progress.update(self.stage_task, description=label, total=total, completed=stage.get("current", 0))
        elif status == "completed":
            self.print(f"  [green]✓[/green] {escape(label)}")
        else:
            self.print(f"  [{'red' if status == 'failed' else 'yellow'}]{status}[/] {escape(label)}")

    def _status(self, event: dict[str, Any], seen: Seen) -> None:
        data = event.get("data") or {}
        who = "server" if data.get("source") == "server" else "trainer"
        colour = {"error": "red", "warning": "yellow", "success": "green"}.get(event.get("severity", ""), "cyan")
        self.print(f"[{colour}]●[/] {who}: {escape(event.get('message') or event.get('title', ''))}")

    def _progress(self, event: dict[str, Any], seen: Seen) -> None:
        step = event.get("progress") or {}
        if self.train_task is None:
            self.progress.update(self.stage_task, visible=False)
            self.train_task = self.progress.add_task("training", total=step.get("total_steps"), loss="")
        loss = step.get("loss")
        self.progress.update(self.train_task, completed=step.get("step", 0), total=step.get("total_steps"),
                             loss=f"loss {loss:.4f}" if isinstance(loss, (int, float)) else "")

    def _checkpoint(self, event: dict[str, Any], seen: Seen) -> None:
        checkpoint = event.get("checkpoint") or {}
        seen.checkpoints.append(checkpoint.get("path", ""))
        self.print(f"  [magenta]■[/magenta] checkpoint at step {checkpoint.get('step')}: "
                   f"{escape(checkpoint.get('path', ''))}")

    def _validation(self, event: dict[str, Any], seen: Seen) -> None:
        data = event.get("data") or {}
        paths = data.get("paths") or []
        seen.validation_images += paths
        self.print(f"  [blue]▣[/blue] validation at step {data.get('step')} "
                   f"('{escape(str(data.get('prompt', '')))}'): {escape(', '.join(paths))}")

    def _error(self, event: dict[str, Any], seen: Seen) -> None:
        self.print(f"[red]✗ {escape(event.get('title', 'error'))}: {escape(event.get('message', ''))}[/red]")

    def _log(self, event: dict[str, Any], seen: Seen) -> None:
        if event.get("severity") in ("warning", "error"):
            self.print(f"  [yellow]![/yellow] {escape(event.get('message', ''))}")
