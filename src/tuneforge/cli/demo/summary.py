"""The demo's last word: a table of where everything landed, and why the job failed when it did."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from rich.markup import escape
from rich.table import Table

from tuneforge import runfolder
from tuneforge.cli.client import CliError, check
from tuneforge.cli.demo.api import console
from tuneforge.cli.demo.server import ServerProcess


def summarise(client: httpx.Client, server: ServerProcess, job: dict[str, Any]) -> None:
    """The summary table; a CliError when the job did not complete."""
    console.print(_table(client, server, job))
    state = job["status"]
    if state != "completed":
        raise CliError(f"The training job ended {state}.",
                       [f"reason: {job.get('reason') or 'none given'}", *(job.get("log_tail") or [])[-20:]])
    # The demo's server stops below; the same command brings it back at the same address (on loopback only,
    # like the demo's: the server's default is every interface).
    console.print(f"[green]Done.[/green] To look around: `tuneforge server --workspace "
                  f"{escape(str(server.workspace))} --host 127.0.0.1 --port {server.port}`, then the curl above or "
                  f"{server.url}/docs.")


def _table(client: httpx.Client, server: ServerProcess, job: dict[str, Any]) -> Table:
    job_id, state, output_dir = job["job_id"], job["status"], Path(job["output_dir"])
    listed = check(client.get("/api/training/checkpoints", params={"job_id": job_id}), "listing checkpoints")
    checkpoints = [c["path"] for c in listed["checkpoints"]]
    images = sorted(str(p) for p in (output_dir / runfolder.VALIDATION_DIR).glob("*/*.png"))
    lora = output_dir / "pytorch_lora_weights.safetensors"

    table = Table(title="tuneforge demo", show_header=False, title_justify="left")
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    table.add_row("Job", job_id)
    table.add_row("State", f"[{'green' if state == 'completed' else 'red'}]{state}[/]")
    table.add_row("LoRA weights", escape(str(lora)) if lora.is_file() else "(not written)")
    table.add_row("Checkpoints", escape("\n".join(checkpoints)) or "(none)")
    table.add_row("Validation images", escape("\n".join(images)) or "(none)")
    key_header = " -H \"X-API-Key: <your API key>\"" if "X-API-Key" in client.headers else ""
    table.add_row("Events", f"curl -s{key_header} {server.url}/api/jobs/{job_id}/events")
    table.add_row("Events file", escape(str(Path(job["run_dir"]) / "events.jsonl")))
    table.add_row("Server log", escape(str(server.log_path)))
    return table
