"""A whole short LoRA job as a user runs it, split into where its time goes, beside the floor.

Two ways, on the tiny PixArt model: `tuneforge train --env` as one process, and `POST /api/queue/submit` →
`completed` on a running server. Each is split, from the trainer's own event timestamps, into start-up (process
start and imports, up to the trainer's first event), set-up (model, optimizer), caching (latents and text
embeddings), the steps, saving (final checkpoint and weights) and exit (after the last event until the process
is gone, or until the server reports the job completed). The floor is a Python process that imports torch and
diffusers and exits. Target: fixed cost (the whole job minus its steps) at most 1.5 s above the floor.

Usage, from the repository root:
    HF_HUB_OFFLINE=1 .venv/bin/python bench/job_wall.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from engine_helpers import write_images
from tuneforge.cli.demo.server import free_port, spawn
from tuneforge.models.tiny import make_tiny_model

TARGET_ABOVE_FLOOR_S = 1.5
ENV = "bench"
PARTS = ("start-up", "set-up", "caching", "steps", "saving", "exit")


def floor_seconds(repeats: int) -> float:
    """A process that imports torch and diffusers (the pipelines' modules) and exits."""
    times = []
    for _ in range(repeats):
        started = time.time()
        subprocess.run([sys.executable, "-c", "import torch, diffusers, diffusers.models"], check=True)
        times.append(time.time() - started)
    return statistics.median(times)


def prepare_workspace(root: Path, steps: int) -> Path:
    workspace = root / "workspace"
    model = make_tiny_model("pixart_sigma", workspace / "models" / "tiny")  # inside the folders jobs may read
    data = write_images(workspace / "datasets" / "shapes", 8, sizes=((64, 64),))
    folder = workspace / "config" / ENV
    folder.mkdir(parents=True)
    (folder / "multidatabackend.json").write_text(json.dumps([
        {"id": "shapes", "type": "local", "dataset_type": "image", "instance_data_dir": str(data),
         "caption_strategy": "textfile", "resolution": 64, "resolution_type": "pixel"},
        {"id": "text", "type": "local", "dataset_type": "text_embeds", "default": True,
         "cache_dir": str(workspace / "cache" / "text")}]))
    (folder / "config.json").write_text(json.dumps({
        "--model_family": "pixart_sigma", "--model_type": "lora", "--pretrained_model_name_or_path": str(model),
        "--output_dir": str(workspace / "output" / ENV), "--data_backend_config": f"{ENV}/multidatabackend.json",
        "--max_train_steps": steps, "--num_train_epochs": 0, "--train_batch_size": 1, "--learning_rate": 1e-3,
        "--mixed_precision": "no", "--resolution": 64, "--resolution_type": "pixel", "--seed": 1,
        "--checkpoint_step_interval": 0, "--validation_step_interval": 0, "--optimizer": "adamw"}))
    return workspace


def moment(event: dict) -> float:
    return datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00")).timestamp()


def split(events: list[dict], started: float, ended: float) -> dict[str, float]:
    """The parts of a job from its trainer's events (see the module's docstring)."""
    trainer = [e for e in events if (e.get("data") or {}).get("source") != "server"]
    status = {e["data"]["status"]: moment(e) for e in trainer if e["type"] == "training.status"}
    running_at = {}
    caching = 0.0
    for e in trainer:
        stage = e.get("stage")
        if e["type"] == "lifecycle.stage" and stage:
            if stage["status"] == "running":
                running_at.setdefault(stage["key"], moment(e))
            elif stage["status"] == "completed" and "cach" in stage["key"] and stage["key"] in running_at:
                caching += moment(e) - running_at[stage["key"]]
    first = moment(trainer[0])
    last_step = max(moment(e) for e in trainer if e["type"] == "training.progress")
    return {"start-up": first - started, "set-up": status["running"] - first - caching, "caching": caching,
            "steps": last_step - status["running"], "saving": status["completed"] - last_step,
            "exit": ended - status["completed"]}


def cli_job(workspace: Path) -> dict[str, float]:
    runs = workspace / ".tuneforge" / "runs"
    before = set(runs.glob("*")) if runs.is_dir() else set()
    started = time.time()
    subprocess.run([sys.executable, "-m", "tuneforge", "train", "--env", ENV, "--workspace", str(workspace)],
                   check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, stderr=subprocess.DEVNULL)
    ended = time.time()
    (run_dir,) = set(runs.glob("*")) - before
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    return split(events, started, ended)


def server_job(workspace: Path, root: Path) -> dict[str, float]:
    server = spawn(workspace, free_port(), env={**os.environ, "HF_HUB_OFFLINE": "1"}, log_path=root / "server.log")
    try:
        server.wait_healthy(60)
        with server.client() as client:  # this machine, before setup: the local admin
            started = time.time()
            answer = client.post("/api/queue/submit", json={"config_name": ENV})
            if answer.status_code != 200:
                raise SystemExit(f"the server refused the job: {answer.text}")
            job_id = answer.json()["job_id"]
            while client.get(f"/api/jobs/{job_id}").json()["status"] not in ("completed", "failed", "cancelled"):
                time.sleep(0.02)
            ended = time.time()
            events = client.get(f"/api/jobs/{job_id}/events", params={"limit": 1000}).json()["events"]
    finally:
        server.stop()
    return split(events, started, ended)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10 steps, one floor measurement")
    args = parser.parse_args()
    steps = 10 if args.quick else 30
    with tempfile.TemporaryDirectory(prefix="tuneforge-bench-") as scratch:
        root = Path(scratch)
        workspace = prepare_workspace(root, steps)
        floor = floor_seconds(1 if args.quick else 3)
        cli_job(workspace)  # once to fill the caches the way a user's second run finds them
        jobs = {"tuneforge train": cli_job(workspace), "server": server_job(workspace, root)}
    print(f"floor (import torch and diffusers, exit): {floor:.2f} s; {steps}-step LoRA job on the tiny PixArt model")
    print(f"{'':<16}" + "".join(f"{part:>10}" for part in PARTS) + f"{'total':>9}{'fixed':>8}{'target':>8}")
    figures = {}
    for name, parts in jobs.items():
        total = sum(parts.values())
        fixed = total - parts["steps"]
        figures[name] = {**parts, "total": total, "fixed": fixed, "fixed_above_floor": fixed - floor}
        print(f"{name:<16}" + "".join(f"{parts[p]:>10.2f}" for p in PARTS)
              + f"{total:>9.2f}{fixed:>8.2f}{floor + TARGET_ABOVE_FLOOR_S:>8.2f}")
    print(json.dumps({"bench": "job_wall", "quick": args.quick, "steps": steps, "floor_seconds": floor,
                      "target_fixed_above_floor_seconds": TARGET_ABOVE_FLOOR_S, "jobs": figures}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
