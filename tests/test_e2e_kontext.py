"""The tutorial's "Example: Flux Kontext LyCORIS LoRA", every command as written, against the real server and trainer.

What differs from the tutorial is only what a CPU needs: a tiny local Kontext model in place of the hub id, 64 px
pictures (so the dataloader's sizes are 64 px too), a few steps, and wandb offline.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors.torch import load_file

from e2e_support import all_events, as_multipart, kill_trainers, progress_steps, wait_final
from engine_helpers import write_images
from serverproc import start_server

ENV = {"name": "kontext-api-demo", "model_family": "flux", "model_flavour": "kontext", "model_type": "lora",
       "lora_type": "lycoris", "description": "Flux Kontext LoRA via API"}
FORM = {"__active_tab__": "model", "--num_train_epochs": "0"}


def dataloader(root) -> list[dict]:
    """The tutorial's three datasets, with this machine's paths and 64 px sizes."""
    return [
        {"id": "kontext-edit", "type": "local", "dataset_type": "image",
         "instance_data_dir": str(root / "datasets/kontext/edit"), "conditioning_data": ["kontext-reference"],
         "resolution": 64, "resolution_type": "pixel_area", "caption_strategy": "textfile",
         "minimum_image_size": 48, "maximum_image_size": 96, "target_downsample_size": 64,
         "cache_dir_vae": str(root / "cache/vae/kontext/edit"), "crop": True, "crop_style": "random",
         "crop_aspect": "square"},
        {"id": "kontext-reference", "type": "local", "dataset_type": "conditioning",
         "instance_data_dir": str(root / "datasets/kontext/reference"), "conditioning_type": "reference_strict",
         "resolution": 64, "resolution_type": "pixel_area", "cache_dir_vae": str(root / "cache/vae/kontext/reference")},
        {"id": "kontext-text-embeds", "type": "local", "dataset_type": "text_embeds", "default": True,
         "cache_dir": str(root / "cache/text/kontext")},
    ]


def hyperparameters(root, model) -> dict:
    """Step 3's jq merge, with the tiny model, a few steps and 64 px validation."""
    return {
        "--pretrained_model_name_or_path": str(model), "--output_dir": str(root / "output/kontext"),
        "--train_batch_size": 1, "--gradient_accumulation_steps": 4, "--learning_rate": 0.00001,
        "--optimizer": "optimi-lion", "--lr_scheduler": "cosine", "--lr_warmup_steps": 2, "--max_train_steps": 6,
        "--num_train_epochs": 0, "--validation_prompt": "a cinematic 1024px product photo of <token>",
        "--validation_guidance": 2.5, "--validation_resolution": "64x64", "--validation_num_inference_steps": 2,
        "--cache_dir_vae": str(root / "cache/vae/kontext"), "--seed": 777, "--resume_from_checkpoint": "latest",
        "--base_model_precision": "int8-quanto", "--dataloader_prefetch": True, "--report_to": "wandb",
        "--lora_rank": 16, "--lora_dropout": 0.05, "--conditioning_multidataset_sampling": "combined",
        "--clip_skip": 2, "--data_backend_config": "kontext-api-demo/multidatabackend.json",
        "--checkpoint_step_interval": 3, "--validation_step_interval": 6,
    }


@pytest.fixture
def server(tmp_path):
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    wandb = {"WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_CONFIG_DIR": str(tmp_path / "wandb-config"),
             "WANDB_CACHE_DIR": str(tmp_path / "wandb-cache")}
    process = start_server(workspace, env=wandb)
    try:
        yield process
    finally:
        process.stop()
        kill_trainers(workspace)


def test_the_tutorial_kontext_flow_trains_stops_resumes_and_its_output_loads(server, tiny_kontext):
    root = server.workspace
    write_images(root / "datasets/kontext/edit", 4, caption="make it a product photo of thing {i}")
    write_images(root / "datasets/kontext/reference", 4, seed=9)
    for caption in (root / "datasets/kontext/reference").glob("*.txt"):
        caption.unlink()
    with server.client() as http:
        # 1. Provision the environment
        created = http.post("/api/configs/environments", json=ENV)
        assert created.status_code == 201, created.text
        # 2. Describe the paired dataloader
        (root / "config/kontext-api-demo/multidatabackend.json").write_text(json.dumps(dataloader(root)))
        # 3. Apply Kontext-specific hyperparameters: GET, merge, PUT
        config = http.get("/api/configs/kontext-api-demo").json()["config"] | hyperparameters(root, tiny_kontext)
        update = {"name": "kontext-api-demo", "description": "Flux Kontext LyCORIS (API)",
                  "tags": ["flux", "kontext", "api"], "config": config}
        saved = http.put("/api/configs/kontext-api-demo", json=update)
        assert saved.status_code == 200, saved.text
        # 4. Activate, validate, and launch
        assert http.post("/api/configs/kontext-api-demo/activate").status_code == 200
        valid = http.post("/api/training/validate", files=as_multipart(FORM))
        assert valid.status_code == 200 and valid.json()["message"] == "Configuration Valid", valid.text
        started = http.post("/api/training/start", files=as_multipart(FORM))
        assert started.status_code == 202, started.text
        first = started.json()["job_id"]
        # Monitor and stop (asked while the trainer starts up, the stop lands at its first optimizer step)
        assert http.post("/api/training/stop").status_code == 200
        stopped = wait_final(http, first)
        assert stopped["status"] == "stopped", stopped
        assert http.get("/api/training/status").json()["job_id"] == first
        events = all_events(http, first)
        ready = next(e for e in events if e["message"].startswith("data ready"))
        assert ready["data"]["pairs"] == 4
        # Start again: resume_from_checkpoint=latest continues where the stop left it
        again = http.post("/api/training/start", files=as_multipart(FORM))
        assert again.status_code == 202, again.text
        finished = wait_final(http, again.json()["job_id"])
        assert finished["status"] == "completed", finished
        stopped_at = [e["checkpoint"]["step"] for e in events if e["type"] == "training.checkpoint"][-1]
        assert progress_steps(all_events(http, again.json()["job_id"]))[0] == stopped_at + 1
    output = root / "output/kontext"
    assert (output / "validation/step-6/0-64x64.png").is_file()
    assert list((output / "wandb").glob("offline-run-*"))

    from diffusers import FluxKontextPipeline
    from PIL import Image

    from tuneforge.models.lycoris import apply_lycoris_weights

    pipeline = FluxKontextPipeline.from_pretrained(tiny_kontext)
    pipeline.set_progress_bar_config(disable=True)
    reference = Image.open(root / "datasets/kontext/reference/img000.png")

    def edit():
        import torch

        return pipeline(image=reference, prompt="make it a product photo", height=64, width=64, max_area=64 * 64,
                        _auto_resize=False, num_inference_steps=2, guidance_scale=2.5, max_sequence_length=32,
                        generator=torch.Generator().manual_seed(0), output_type="np").images[0]

    before = edit()
    network = apply_lycoris_weights(pipeline.transformer, output)
    saved = load_file(str(output / "lycoris_weights.safetensors"))
    assert {name for name, _ in network.named_children()} == {key.split(".")[0] for key in saved}
    assert np.abs(edit() - before).max() > 0  # the trained network changes FluxKontextPipeline's edits
