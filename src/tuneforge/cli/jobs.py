"""`tuneforge jobs`: submit, list, inspect, follow and steer training jobs on a running server.

Every command takes `--json` to print the server's response body as is, for scripts; errors go to stderr.
"""

from __future__ import annotations

import json
from typing import Annotated, Any
from urllib.parse import quote

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tuneforge.cli.client import CliError, check, connect
from tuneforge.cli.demo.follow import follow
from tuneforge.events import describe_telemetry

app = typer.Typer(help="Training jobs on a running server: submit, list, follow, stop.", no_args_is_help=True)
out = Console()

UrlOption = Annotated[str | None, typer.Option(help="Server URL [env TUNEFORGE_URL; default http://localhost:8001]")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the server's JSON response")]
EVENTS_PAGE = 1000


def _call(url: str | None, method: str, path: str, doing: str, **kwargs: Any) -> Any:
    with connect(url) as client:
        return check(client.request(method, path, **kwargs), doing)


def _job_path(job_id: str, tail: str = "") -> str:
    return f"/api/jobs/{quote(job_id, safe='')}{tail}"


def _print_json(body: Any) -> None:
    out.print_json(json.dumps(body))


def _text(value: Any) -> str:
    return "-" if value is None or value == "" else escape(str(value))


def _gpus(ids: list[int] | None) -> str:
    return ", ".join(map(str, ids)) if ids else "-"


def _details(rows: dict[str, Any]) -> Table:
    table = Table(show_header=False, box=None)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    for label, value in rows.items():
        table.add_row(label, _text(value))
    return table


def _show_submitted(result: dict[str, Any], as_json: bool) -> None:
    """A submit or resume answer; exit 1 when it was not accepted (rejected, or over at once and not completed)."""
    if as_json:
        _print_json(result)
    else:
        out.print(escape(result.get("message", "")))
        out.print(_details({"Job": result.get("job_id"), "Status": result.get("status"),
                            "GPUs": _gpus(result.get("allocated_gpus")),
                            "Queue position": result.get("queue_position"), "Reason": result.get("reason")}))
    if result.get("success", True):
        return
    if as_json:  # the reason on stderr; the table above already shows it
        raise CliError(f"Job {result.get('status')}: {result.get('reason') or 'no reason given'}")
    raise typer.Exit(1)


@app.command()
def submit(
    name: Annotated[str, typer.Argument(help="Config environment to train")],
    no_wait: Annotated[bool, typer.Option("--no-wait", help="Reject instead of queueing when it cannot start now")]
    = False,
    any_gpu: Annotated[bool, typer.Option("--any-gpu", help="Any free GPUs instead of the configured ids")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only say what would happen; queue nothing")] = False,
    priority: Annotated[int | None, typer.Option(help="Higher starts first (needs queue.manage)")] = None,
    url: UrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Queue a job from environment NAME: it starts when it fits, or waits its turn."""
    body: dict[str, Any] = {"config_name": name, "no_wait": no_wait, "any_gpu": any_gpu, "dry_run": dry_run}
    if priority is not None:
        body["priority"] = priority
    _show_submitted(_call(url, "POST", "/api/queue/submit", f"submitting '{name}'", json=body), as_json)


@app.command("list")
def list_cmd(
    all_jobs: Annotated[bool, typer.Option("--all", help="Recent jobs of any state, not only the queue")] = False,
    url: UrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """List running and queued jobs (in the order they will start), or with --all the recent jobs."""
    path = "/api/jobs" if all_jobs else "/api/queue"
    body = _call(url, "GET", path, "listing jobs")
    if as_json:
        _print_json(body)
    elif not body["count"]:
        out.print("No jobs." if all_jobs else "The queue is empty: no job is running or waiting.")
    else:
        out.print(_jobs_table(body["jobs"]) if all_jobs else _queue_table(body["entries"]))


def _queue_table(entries: list[dict[str, Any]]) -> Table:
    table = Table("job", "status", "owner", "environment", "priority", "position", "GPUs", "waiting for",
                  "created", box=None)
    for e in entries:
        table.add_row(e["job_id"], e["status"], _text(e.get("owner")), _text(e.get("env_name")),
                      _text(e.get("priority")), _text(e.get("queue_position")), _entry_gpus(e),
                      _text(e.get("waiting_for")), _text(e.get("created_at")))
    return table


def _entry_gpus(entry: dict[str, Any]) -> str:
    """The GPUs a queue entry holds, else the ones it waits for."""
    if entry.get("allocated_gpus"):
        return _gpus(entry["allocated_gpus"])
    if not entry.get("gpu_count"):
        return "cpu"
    return f"wants {_gpus(entry['gpu_ids']) if entry.get('gpu_ids') else entry['gpu_count']}"


def _jobs_table(found: list[dict[str, Any]]) -> Table:
    table = Table("job", "status", "owner", "environment", "created", "finished", "reason", box=None)
    for j in found:
        table.add_row(j["job_id"], j["status"], _text(j.get("owner")), _text(j.get("env_name")),
                      _text(j.get("created_at")), _text(j.get("finished_at")), _text(j.get("reason")))
    return table


@app.command()
def status(job_id: str, url: UrlOption = None, as_json: JsonOption = False) -> None:
    """Show one job: state, progress, output folder, times."""
    job = _call(url, "GET", _job_path(job_id), f"reading job '{job_id}'")
    if as_json:
        _print_json(job)
        return
    out.print(_details({"Job": job["job_id"], "Status": job["status"], "Owner": job.get("owner"),
                        "Environment": job.get("env_name"), "Progress": _progress(job.get("progress")),
                        "Output": job.get("output_dir"), "Reason": job.get("reason"),
                        "Created": job.get("created_at"), "Started": job.get("started_at"),
                        "Finished": job.get("finished_at")}))


def _progress(progress: dict[str, Any] | None) -> str | None:
    if not progress:
        return None
    text = f"step {progress.get('step', '?')}/{progress.get('total_steps', '?')}"
    loss = progress.get("loss")
    text += f", loss {loss:.4f}" if isinstance(loss, (int, float)) else ""
    cost = describe_telemetry(progress.get("telemetry"))
    return f"{text}\n{cost}" if cost else text


@app.command()
def logs(
    job_id: str,
    follow_: Annotated[bool, typer.Option("--follow", "-f", help="Stream live with progress until the job ends")]
    = False,
    url: UrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Print a job's events, one line each; --follow streams them until the job ends (exit 1 unless completed)."""
    if follow_:
        if as_json:
            raise typer.BadParameter("--json prints the stored events; it does not combine with --follow")
        _follow(job_id, url)
        return
    page = _all_events(job_id, url)
    if as_json:
        _print_json(page)
        return
    for event in page["events"]:
        out.print(_event_line(event), highlight=False)


def _all_events(job_id: str, url: str | None) -> dict[str, Any]:
    """Every stored event, page after page, as one page of the server's shape."""
    events: list[dict[str, Any]] = []
    page: dict[str, Any] = {"job_id": job_id, "next_index": 0}
    with connect(url) as client:
        while True:
            params = {"since_index": page["next_index"], "limit": EVENTS_PAGE}
            page = check(client.get(_job_path(job_id, "/events"), params=params), f"reading the events of '{job_id}'")
            if not page["events"]:
                return {**page, "events": events}
            events.extend(page["events"])


def _event_line(event: dict[str, Any]) -> str:
    title, message = event.get("title") or "", event.get("message") or ""
    text = f"{title}: {message}" if title and message and title != message else title or message
    if event.get("type") == "training.progress":
        text = _progress(event.get("progress")) or text
    colour = {"error": "red", "warning": "yellow", "success": "green"}.get(event.get("severity", ""), "")
    line = f"{event.get('timestamp', '')} {event.get('type', '?'):<20} {escape(text)}"
    return f"[{colour}]{line}[/{colour}]" if colour else line


def _follow(job_id: str, url: str | None) -> None:
    with connect(url) as client:
        check(client.get(_job_path(job_id)), f"reading job '{job_id}'")  # at once: unknown id, unreachable server
        try:
            job = follow(client, job_id)
        except KeyboardInterrupt:
            out.print(f"[yellow]Stopped following; job {escape(job_id)} carries on "
                      f"(`tuneforge jobs stop {escape(job_id)}` stops it).[/yellow]")
            raise typer.Exit(130) from None
    if job["status"] != "completed":
        raise CliError(f"Job {job_id} ended {job['status']}: {job.get('reason') or 'no reason given'}")
    out.print(f"[green]Job {escape(job_id)} completed.[/green] Output: {escape(job.get('output_dir', ''))}")


def _act(job_id: str, action: str, url: str | None, as_json: bool) -> None:
    result = _call(url, "POST", _job_path(job_id, f"/{action}"), f"asking job '{job_id}' to {action}")
    if as_json:
        _print_json(result)
    else:
        out.print(f"{escape(result.get('message', ''))} (job {escape(result['job_id'])}: {result['status']})")


@app.command()
def stop(job_id: str, url: UrlOption = None, as_json: JsonOption = False) -> None:
    """Stop a job gracefully: it saves a checkpoint first, so it can be resumed."""
    _act(job_id, "stop", url, as_json)


@app.command()
def cancel(job_id: str, url: UrlOption = None, as_json: JsonOption = False) -> None:
    """Cancel a job at once (a queued one never starts)."""
    _act(job_id, "cancel", url, as_json)


@app.command()
def resume(job_id: str, url: UrlOption = None, as_json: JsonOption = False) -> None:
    """Queue a new job that carries on from the last checkpoint of a stopped, failed or cancelled one."""
    result = _call(url, "POST", _job_path(job_id, "/resume"), f"resuming job '{job_id}'")
    _show_submitted(result, as_json)
