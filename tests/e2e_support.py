"""End-to-end helpers: a workspace with a tiny model and a dataset, the tutorial's form fields, and waits
on the real server's job and event routes."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import psutil

from engine_helpers import write_images

DATALOADER = "config/multidatabackend-once.json"
FINAL = {"completed", "failed", "cancelled", "stopped"}


def prepare_workspace(workspace: Path) -> None:
    """The tutorial's fast-path dataloader file, pointed at a small real image folder in the workspace."""
    data = write_images(workspace / "datasets" / "demo", 6)
    (workspace / "config").mkdir(parents=True, exist_ok=True)
    (workspace / DATALOADER).write_text(json.dumps([
        {"id": "demo-images", "type": "local", "dataset_type": "image", "instance_data_dir": str(data),
         "caption_strategy": "textfile", "resolution": 64, "resolution_type": "pixel"},
        {"id": "demo-text-embeds", "type": "local", "dataset_type": "text_embeds", "default": True,
         "cache_dir": str(workspace / "cache" / "text" / "demo")},
    ]))


def run_fields(model: Path, output_dir: Path, **overrides: Any) -> dict[str, str]:
    """The fast path's `-F --name=value` fields for a tiny LoRA run; overrides use option names."""
    fields = {
        "model_family": "pixart_sigma", "model_type": "lora", "pretrained_model_name_or_path": str(model),
        "output_dir": str(output_dir), "data_backend_config": DATALOADER, "train_batch_size": 1,
        "learning_rate": 0.001, "max_train_steps": 12, "num_train_epochs": 0, "seed": 7, "optimizer": "adamw",
        "mixed_precision": "no", "resolution": 64, "resolution_type": "pixel", "validation_resolution": "64x64",
        "validation_num_inference_steps": 3, "validation_prompt": "test shot of <token>",
        "validation_step_interval": 0, "checkpoint_step_interval": 0,
    }
    fields.update(overrides)
    return {"__active_tab__": "model", **{f"--{name}": str(value) for name, value in fields.items()}}


def as_multipart(fields: dict[str, str]) -> dict[str, tuple[None, str]]:
    """What `curl -F name=value` sends."""
    return {name: (None, value) for name, value in fields.items()}


def start(client: httpx.Client, fields: dict[str, str]) -> str:
    response = client.post("/api/training/start", files=as_multipart(fields))
    assert response.status_code == 202, response.text
    return response.json()["job_id"]


def wait_for(predicate: Callable[[], Any], timeout: float = 120, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def job(client: httpx.Client, job_id: str) -> dict[str, Any]:
    response = client.get(f"/api/jobs/{job_id}")
    assert response.status_code == 200, response.text
    return response.json()


def wait_final(client: httpx.Client, job_id: str, timeout: float = 180) -> dict[str, Any]:
    return wait_for(lambda: (info := job(client, job_id))["status"] in FINAL and info, timeout,
                    f"job {job_id} to finish")


def all_events(client: httpx.Client, job_id: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    while True:
        page = client.get(f"/api/jobs/{job_id}/events", params={"since_index": len(events)}).json()
        if not page["events"]:
            return events
        events.extend(page["events"])


def wait_event(client: httpx.Client, job_id: str, accept: Callable[[dict[str, Any]], bool],
               timeout: float = 120, what: str = "an event", start: int = 0) -> dict[str, Any]:
    """The first event from index `start` on that `accept`s; each poll fetches only the events after the last."""
    cursor = start

    def next_accepted() -> dict[str, Any] | None:
        nonlocal cursor
        page = client.get(f"/api/jobs/{job_id}/events", params={"since_index": cursor}).json()
        cursor = page["next_index"]
        return next((e for e in page["events"] if accept(e)), None)

    return wait_for(next_accepted, timeout, what)


def progress_steps(events: list[dict[str, Any]]) -> list[int]:
    return [e["progress"]["step"] for e in events if e["type"] == "training.progress"]


def kill_trainers(workspace: Path) -> None:
    """Trainers outlive servers by design: a failed test must not leave one training for hours."""
    for pid_file in (workspace / ".tuneforge" / "runs").glob("*/pid"):
        with contextlib.suppress(psutil.Error, ValueError):
            process = psutil.Process(int(pid_file.read_text()))
            if "tuneforge.trainer" in process.cmdline():
                process.kill()


def trainer_process(run_dir: str) -> psutil.Process:
    """The trainer launched for a run folder (its command line names the folder)."""
    for process in psutil.process_iter(["cmdline"]):
        cmdline = process.info["cmdline"] or []
        if "tuneforge.trainer" in cmdline and run_dir in cmdline:
            return process
    raise AssertionError(f"no trainer process for {run_dir}")
