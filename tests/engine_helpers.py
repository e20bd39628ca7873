"""Shared helpers of the engine tests: small image folders, run specs, runs in this process (tiny models: conftest)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image


def write_images(folder: Path, count: int, sizes=((64, 64), (96, 64), (64, 96)), seed: int = 0,
                 caption: str = "a photo of a cat number {i}") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        width, height = sizes[i % len(sizes)]
        pixels = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"img{i:03d}.png")
        (folder / f"img{i:03d}.txt").write_text(caption.format(i=i))
    return folder


def make_spec(root: Path, model: Path, data: Path | None = None, datasets: list[dict] | None = None,
              lycoris: dict | None = None, hooks_dir: Path | None = None, **options: Any):
    """A RunSpec for a tiny run; `options` override the defaults below; `lycoris` makes it a LyCORIS run. Hooks run
    as under `tuneforge train` (any program), or only from `hooks_dir` as a server job's do."""
    from tuneforge.options.dataloader import DatasetConfig
    from tuneforge.options.lycoris import LycorisConfig, with_run_options
    from tuneforge.options.registry import TrainingOptions
    from tuneforge.options.spec import RunSpec

    defaults = dict(
        model_family="pixart_sigma", model_type="lora", pretrained_model_name_or_path=str(model),
        output_dir=str(root / "out"), max_train_steps=8, num_train_epochs=0, train_batch_size=1,
        learning_rate=1e-3, seed=7, mixed_precision="no", checkpoint_step_interval=0, optimizer="adamw",
        resolution=64, resolution_type="pixel", validation_step_interval=0, validation_num_inference_steps=3,
        validation_resolution="64x64",
    )
    if lycoris is not None:
        defaults["lora_type"] = "lycoris"
    defaults.update(options)
    if datasets is None:
        datasets = [
            {"id": "images", "instance_data_dir": str(data), "resolution": 64, "resolution_type": "pixel",
             "crop": True, "crop_aspect": "preserve"},
            {"id": "text", "dataset_type": "text_embeds", "default": True, "cache_dir": str(root / "cache" / "text")},
        ]
    config = TrainingOptions(**defaults)
    completed = with_run_options(LycorisConfig(**lycoris), config)[0] if lycoris is not None else None
    return RunSpec(workspace=root, job_id=root.name, config=config, datasets=[DatasetConfig(**d) for d in datasets],
                   lycoris=completed, hooks_dir=hooks_dir, hooks_confined=hooks_dir is not None)


def write_run_dir(root: Path, spec) -> Path:
    run_dir = root / "run"
    run_dir.mkdir(parents=True, exist_ok=True)
    spec.write(run_dir / "spec.json")
    return run_dir


def run_in_process(root: Path, spec, listener=None):
    """Build and execute a run in this process; returns (outcome, run)."""
    from tuneforge.events import EventWriter
    from tuneforge.trainer.run import build_run, execute

    run_dir = write_run_dir(root, spec)
    events = EventWriter(run_dir / "events.jsonl")
    if listener:
        events.add_listener(listener)
    run = build_run(spec, run_dir, events)
    return execute(run), run


def read_events(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]


def trainable(checkpoint: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(checkpoint / "trainable.safetensors"))


def write_pairs(root: Path, count: int, sizes=((64, 64), (96, 64)), seed: int = 0, sets: int = 1) -> list[dict]:
    """Edit images with captions in root/edit and references of the same names in root/reference (and
    root/reference2, ... for `sets` > 1); returns the dataloader entries (edit, references..., text)."""
    write_images(root / "edit", count, sizes, seed, caption="make the picture {i} brighter")
    names = [f"reference{n + 1 if n else ''}" for n in range(sets)]
    for offset, name in enumerate(names, 1):
        write_images(root / name, count, sizes, seed + offset)
        for caption in (root / name).glob("*.txt"):
            caption.unlink()  # references carry no captions
    entries = [{"id": "edit", "instance_data_dir": str(root / "edit"), "resolution": 64, "resolution_type": "pixel",
                "crop": True, "crop_aspect": "preserve", "conditioning_data": names}]
    entries += [{"id": name, "dataset_type": "conditioning", "instance_data_dir": str(root / name),
                 "conditioning_type": "reference_strict"} for name in names]
    entries.append({"id": "text", "dataset_type": "text_embeds", "default": True, "cache_dir": str(root / "text")})
    return entries
