"""Helpers for the config tests: real image folders with captions, and the tutorial's environment flows."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

PIXART_ENV = {"name": "pixart-api-demo", "model_family": "pixart_sigma", "model_flavour": "900M-1024-v0.6",
              "model_type": "full", "description": "PixArt 900M API-driven training"}
KONTEXT_ENV = {"name": "kontext-api-demo", "model_family": "flux", "model_flavour": "kontext", "model_type": "lora",
               "lora_type": "lycoris", "description": "Flux Kontext LoRA via API"}


def make_images(folder: Path, stems: list[str], captions: bool = True, colour: int = 0) -> None:
    """Small real PNGs (and a .txt caption beside each)."""
    folder.mkdir(parents=True, exist_ok=True)
    for index, stem in enumerate(stems):
        Image.new("RGB", (96, 64), (colour, 40 * index % 256, 120)).save(folder / f"{stem}.png")
        if captions:
            (folder / f"{stem}.txt").write_text(f"a photo of {stem}", encoding="utf-8")


def pixart_dataloader(root: Path) -> list[dict]:
    """The tutorial's PixArt dataloader, pointed at real folders under `root`."""
    return [
        {"id": "pixart-camera", "type": "local", "dataset_type": "image",
         "instance_data_dir": str(root / "datasets/pseudo-camera-10k"), "caption_strategy": "filename",
         "resolution": 1.0, "resolution_type": "area", "minimum_image_size": 0.25, "maximum_image_size": 1.0,
         "target_downsample_size": 1.0, "cache_dir_vae": str(root / "cache/vae/pixart/pseudo-camera-10k"),
         "crop": True, "crop_style": "random", "crop_aspect": "square", "metadata_backend": "discovery"},
        {"id": "pixart-text-embeds", "type": "local", "dataset_type": "text_embeds", "default": True,
         "cache_dir": str(root / "cache/text/pixart/pseudo-camera-10k"), "write_batch_size": 128},
    ]


def kontext_dataloader(root: Path) -> list[dict]:
    return [
        {"id": "kontext-edit", "type": "local", "dataset_type": "image",
         "instance_data_dir": str(root / "datasets/kontext/edit"), "conditioning_data": ["kontext-reference"],
         "resolution": 1024, "resolution_type": "pixel_area", "caption_strategy": "textfile",
         "minimum_image_size": 768, "maximum_image_size": 1536, "target_downsample_size": 1024,
         "cache_dir_vae": str(root / "cache/vae/kontext/edit"), "crop": True, "crop_style": "random",
         "crop_aspect": "square"},
        {"id": "kontext-reference", "type": "local", "dataset_type": "conditioning",
         "instance_data_dir": str(root / "datasets/kontext/reference"), "conditioning_type": "reference_strict",
         "resolution": 1024, "resolution_type": "pixel_area", "cache_dir_vae": str(root / "cache/vae/kontext/ref")},
        {"id": "kontext-text-embeds", "type": "local", "dataset_type": "text_embeds", "default": True,
         "cache_dir": str(root / "cache/text/kontext")},
    ]


PIXART_OVERRIDES = {
    "--train_batch_size": 2, "--gradient_accumulation_steps": 2, "--learning_rate": 0.0001,
    "--optimizer": "adamw_bf16", "--lr_scheduler": "cosine", "--lr_warmup_steps": 500, "--max_train_steps": 1800,
    "--num_train_epochs": 0, "--validation_prompt": "a studio portrait of <token> wearing a leather jacket",
    "--validation_guidance": 3.8, "--validation_resolution": "1024x1024", "--validation_num_inference_steps": 28,
    "--seed": 1337, "--resume_from_checkpoint": "latest", "--base_model_precision": "bf16",
    "--dataloader_prefetch": True, "--report_to": "none", "--checkpoints_total_limit": 4, "--validation_seed": 12345,
    "--data_backend_config": "pixart-api-demo/multidatabackend.json",
}

KONTEXT_OVERRIDES = {
    "--train_batch_size": 1, "--gradient_accumulation_steps": 4, "--learning_rate": 0.00001,
    "--optimizer": "optimi-lion", "--lr_scheduler": "cosine", "--lr_warmup_steps": 200, "--max_train_steps": 12000,
    "--num_train_epochs": 0, "--validation_prompt": "a cinematic 1024px product photo of <token>",
    "--validation_guidance": 2.5, "--validation_resolution": "1024x1024", "--validation_num_inference_steps": 30,
    "--seed": 777, "--resume_from_checkpoint": "latest", "--base_model_precision": "int8-quanto",
    "--dataloader_prefetch": True, "--report_to": "wandb", "--lora_rank": 16, "--lora_dropout": 0.05,
    "--conditioning_multidataset_sampling": "combined", "--clip_skip": 2,
    "--data_backend_config": "kontext-api-demo/multidatabackend.json",
}


def tutorial_flow(client, workspace: Path, env: dict, dataloader: list[dict], overrides: dict) -> None:
    """Steps 1-4 of the tutorial: create, write the dataloader file, GET + jq-style merge + PUT, activate."""
    created = client.post("/api/configs/environments", json=env)
    assert created.status_code == 201, created.text
    name = env["name"]
    (workspace / "config" / name / "multidatabackend.json").write_text(json.dumps(dataloader, indent=2))
    merged = client.get(f"/api/configs/{name}").json()["config"] | overrides | {
        "--output_dir": str(workspace / "output" / name), "--cache_dir_vae": str(workspace / "cache/vae" / name)}
    update = {"name": name, "description": env["description"], "tags": ["api"], "config": merged}
    config = workspace / "config" / name / "config.json"
    before = config.read_bytes()
    saved = client.put(f"/api/configs/{name}", json=update)
    assert saved.status_code == 200, saved.text
    assert config.with_name("config.json.bak").read_bytes() == before
    assert client.post(f"/api/configs/{name}/activate").status_code == 200


def pixart_data(workspace: Path) -> None:
    make_images(workspace / "datasets/pseudo-camera-10k", ["a red car", "a blue sky", "a green tree", "a cat"],
                captions=False)


def kontext_data(workspace: Path, reference_stems: list[str] | None = None) -> None:
    stems = ["shoe", "lamp", "chair"]
    make_images(workspace / "datasets/kontext/edit", stems)
    make_images(workspace / "datasets/kontext/reference", reference_stems or stems, captions=False, colour=200)


def validate_fields(workspace: Path, model: Path, **extra: str) -> dict[str, str]:
    """The form fields of a small run that validates: two images in the workspace, the given model."""
    make_images(workspace / "datasets/ok", ["one", "two"])
    loader = [{"id": "ok", "instance_data_dir": "datasets/ok", "resolution": 64, "resolution_type": "pixel"},
              {"id": "text", "dataset_type": "text_embeds", "default": True}]
    (workspace / "config").mkdir(exist_ok=True)
    (workspace / "config/loader.json").write_text(json.dumps(loader))
    base = {"--model_family": "pixart_sigma", "--pretrained_model_name_or_path": str(model),
            "--data_backend_config": "config/loader.json", "--max_train_steps": "2", "--num_train_epochs": "0"}
    return base | extra
