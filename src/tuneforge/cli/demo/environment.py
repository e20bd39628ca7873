"""The training side of the API: the demo's environment and its dataloader, validation, start and cancel."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import httpx
from rich.markup import escape

from tuneforge.cli.client import check
from tuneforge.cli.demo.api import console
from tuneforge.cli.demo.samples import DemoData, DemoModel
from tuneforge.services.jobs import FINAL

VALIDATION_PROMPTS = {False: "a red circle on a white background", True: "make the circle green"}


def training_options(demo: DemoModel, model: Path, output_dir: Path, steps: int) -> dict[str, Any]:
    """A LoRA run small enough for a CPU: 64 px images, a few sampling steps for validation."""
    flavour = {"--model_flavour": demo.flavour} if demo.flavour else {}
    return {
        "--model_family": demo.family, **flavour, "--model_type": "lora", "--lora_type": "standard",
        "--pretrained_model_name_or_path": str(model), "--output_dir": str(output_dir),
        "--data_backend_config": f"{demo.env}/multidatabackend.json",
        "--max_train_steps": steps, "--num_train_epochs": 0, "--train_batch_size": 1, "--learning_rate": 1e-3,
        "--optimizer": "adamw", "--mixed_precision": "no", "--seed": 42, "--resolution": 64,
        "--resolution_type": "pixel", "--checkpoint_step_interval": 10,
        "--validation_prompt": VALIDATION_PROMPTS[demo.edits],
        "--validation_step_interval": 15, "--validation_resolution": "64x64",
        "--validation_num_inference_steps": 3, "--report_to": "none",
    }


def dataloader(workspace: Path, data: DemoData) -> list[dict[str, Any]]:
    """The images (or edits, each linked to its reference set), and the text-embeds cache."""
    images: dict[str, Any] = {
        "id": data.images.name, "type": "local", "dataset_type": "image", "instance_data_dir": str(data.images),
        "caption_strategy": "textfile", "resolution": 64, "resolution_type": "pixel", "crop": True,
        "crop_aspect": "square", "cache_dir_vae": str(workspace / "cache/vae" / data.images.name)}
    entries = [images]
    if data.references is not None:
        images["conditioning_data"] = [data.references.name]
        entries.append({"id": data.references.name, "type": "local", "dataset_type": "conditioning",
                        "instance_data_dir": str(data.references), "conditioning_type": "reference_strict",
                        "cache_dir_vae": str(workspace / "cache/vae" / data.references.name)})
    entries.append({"id": "demo-text-embeds", "type": "local", "dataset_type": "text_embeds", "default": True,
                    "cache_dir": str(workspace / "cache/text/demo")})
    return entries


def write_environment(client: httpx.Client, workspace: Path, demo: DemoModel, model: Path, data: DemoData,
                      output_dir: Path, steps: int) -> None:
    """Create (or take over) the demo's environment, point it at the upload, and make it the active one."""
    _ensure_environment(client, demo)
    # The API writes only starter dataloader files; like the tutorial, the file is written next to the config.
    # The demo runs on the server's machine, so it can.
    dataloader_file = workspace / "config" / demo.env / "multidatabackend.json"
    dataloader_file.write_text(json.dumps(dataloader(workspace, data), indent=2) + "\n")
    check(client.put(f"/api/configs/{demo.env}", json={"name": demo.env, "tags": ["demo"],
                                                        "config": training_options(demo, model, output_dir, steps)}),
          "saving the environment's settings")
    check(client.post(f"/api/configs/{demo.env}/activate"), "activating the environment")
    if output_dir.exists():  # a fresh run: old checkpoints at the same steps would be kept instead of re-saved
        shutil.rmtree(output_dir)
    console.print(f"[green]✓[/green] Environment '{demo.env}' ready: {steps} steps of {demo.label} LoRA training, "
                  f"output in {escape(str(output_dir))}")


def _ensure_environment(client: httpx.Client, demo: DemoModel) -> None:
    existing = client.get(f"/api/configs/{demo.env}")
    if existing.status_code == 404:
        check(client.post("/api/configs/environments", json={
            "name": demo.env, "model_family": demo.family, "model_flavour": demo.flavour, "model_type": "lora",
            "description": "tuneforge demo: a tiny LoRA run"}), "creating the environment")
    else:
        check(existing, "reading the environment")


def validate(client: httpx.Client, demo: DemoModel) -> None:
    result = check(client.post("/api/training/validate", params={"env": demo.env}), "validating the environment")
    console.print(f"[green]✓[/green] {result['message']}"
                  + (f" ({len(result['warnings'])} warnings)" if result.get("warnings") else ""))
    for warning in result.get("warnings", []):
        console.print(f"  [yellow]![/yellow] {escape(warning['field'])}: {escape(warning['message'])}")


def start(client: httpx.Client) -> str:
    job = check(client.post("/api/training/start"), "starting training")
    console.print(f"[green]✓[/green] {job['message']}: job [bold]{job['job_id']}[/bold] ({job['state']})")
    return job["job_id"]


def cancel_unless_final(client: httpx.Client, job_id: str) -> None:
    """Cancel the job unless it is over, and wait (briefly) until it is: the trainer runs in a session of its own
    and would outlive the demo's server."""
    try:
        if _status(client, job_id) in FINAL:
            return
        console.print("[yellow]Cancelling the training job…[/yellow]")
        client.post(f"/api/jobs/{job_id}/cancel")
        deadline = time.monotonic() + 30
        while _status(client, job_id) not in FINAL:
            if time.monotonic() > deadline:
                console.print(f"[yellow]Job {job_id} did not end within 30 s of its cancel request.[/yellow]")
                return
            time.sleep(0.5)
    except (httpx.HTTPError, ValueError) as exc:  # ValueError: an answer that is not JSON
        console.print(f"[yellow]Could not cancel job {job_id} ({escape(str(exc)) or type(exc).__name__}); its "
                      "trainer may still be running.[/yellow]")


def _status(client: httpx.Client, job_id: str) -> str | None:
    return client.get(f"/api/jobs/{job_id}").json().get("status")
