"""`tuneforge train --env NAME` end to end in this process, on a workspace made like a user would."""

from __future__ import annotations

import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from engine_helpers import write_images
from typer.testing import CliRunner

from tuneforge.cli.main import app


def test_make_tiny_model_then_train_an_environment(tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["dev", "make-tiny-model", str(tmp_path / "models" / "tiny")])
    assert result.exit_code == 0, result.output
    write_images(tmp_path / "datasets" / "demo", 4)
    env = tmp_path / "config" / "demo"
    env.mkdir(parents=True)
    (env / "config.json").write_text(json.dumps({
        "--model_family": "pixart_sigma", "--model_type": "lora", "--pretrained_model_name_or_path": "models/tiny",
        "--output_dir": "output/demo", "--data_backend_config": "demo/multidatabackend.json",
        "--max_train_steps": 4, "--num_train_epochs": 0, "--seed": 1, "--mixed_precision": "no",
        "--checkpoint_step_interval": 2, "--resolution": 64, "--resolution_type": "pixel"}))
    (env / "multidatabackend.json").write_text(json.dumps([
        {"id": "demo", "type": "local", "dataset_type": "image", "instance_data_dir": "datasets/demo",
         "resolution": 64, "resolution_type": "pixel", "crop": True, "crop_aspect": "square"},
        {"id": "text", "type": "local", "dataset_type": "text_embeds", "default": True, "cache_dir": "cache/text"}]))
    result = runner.invoke(app, ["train", "--env", "demo", "--workspace", str(tmp_path), "--set", "max_train_steps=3"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "output" / "demo" / "pytorch_lora_weights.safetensors").is_file()
    runs = list((tmp_path / ".tuneforge" / "runs").iterdir())
    assert len(runs) == 1 and runs[0].name.startswith("local-")
    last = json.loads((runs[0] / "events.jsonl").read_text().splitlines()[-1])
    assert last["data"]["status"] == "completed" and last["data"]["step"] == 3
