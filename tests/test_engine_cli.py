"""`tuneforge train --env NAME` end to end in this process, on a workspace made like a user would."""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from typer.testing import CliRunner

from engine_helpers import write_images
from tuneforge.cli.main import app
from tuneforge.events import make, read_new_events


def _environment(root, model: str) -> None:
    """config/demo (options + dataloader file) and datasets/demo, as a user would write them."""
    write_images(root / "datasets" / "demo", 4)
    env = root / "config" / "demo"
    env.mkdir(parents=True)
    (env / "config.json").write_text(json.dumps({
        "--model_family": "pixart_sigma", "--model_type": "lora", "--pretrained_model_name_or_path": model,
        "--output_dir": "output/demo", "--data_backend_config": "demo/multidatabackend.json",
        "--max_train_steps": 4, "--num_train_epochs": 0, "--seed": 1, "--mixed_precision": "no",
        "--checkpoint_step_interval": 2, "--resolution": 64, "--resolution_type": "pixel"}))
    (env / "multidatabackend.json").write_text(json.dumps([
        {"id": "demo", "type": "local", "dataset_type": "image", "instance_data_dir": "datasets/demo",
         "resolution": 64, "resolution_type": "pixel", "crop": True, "crop_aspect": "square"},
        {"id": "text", "type": "local", "dataset_type": "text_embeds", "default": True, "cache_dir": "cache/text"}]))


def test_make_tiny_model_then_train_an_environment(tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["dev", "make-tiny-model", str(tmp_path / "models" / "tiny")])
    assert result.exit_code == 0, result.output
    _environment(tmp_path, "models/tiny")
    # Another run started in this second (or the next two) already holds the plain `local-<time>` folder.
    runs_dir = tmp_path / ".tuneforge" / "runs"
    now = datetime.now()
    taken = {f"local-{now + timedelta(seconds=s):%Y%m%d-%H%M%S}" for s in range(3)}
    for name in taken:
        (runs_dir / name / "control").mkdir(parents=True)
    result = runner.invoke(app, ["train", "--env", "demo", "--workspace", str(tmp_path), "--set", "max_train_steps=3"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "output" / "demo" / "pytorch_lora_weights.safetensors").is_file()
    runs = [p for p in runs_dir.iterdir() if p.name not in taken]
    assert len(runs) == 1 and runs[0].name.startswith("local-")
    last = json.loads((runs[0] / "events.jsonl").read_text().splitlines()[-1])
    assert last["data"]["status"] == "completed" and last["data"]["step"] == 3


def test_several_processes_are_launched_with_the_accelerate_config(tmp_path, tiny_pixart):
    _environment(tmp_path, str(tiny_pixart))
    # A config accelerate rejects at once: its complaint in trainer.log shows the file was used.
    config = tmp_path / "config" / "accelerate.yaml"
    config.write_text("compute_environment: LOCAL_MACHINE\ndistributed_type: NOT_A_TYPE\nnum_processes: 2\n")
    result = CliRunner().invoke(app, ["train", "--env", "demo", "--workspace", str(tmp_path), "--set",
                                      "num_processes=2", "--set", f"accelerate_config={config}"])
    assert result.exit_code not in (0, None), result.output
    [run_dir] = (tmp_path / ".tuneforge" / "runs").iterdir()
    assert "NOT_A_TYPE" in (run_dir / "trainer.log").read_text()


def test_events_are_followed_from_a_byte_offset(tmp_path):
    path = tmp_path / "events.jsonl"
    first, second = (make("log.message", f"line {i}").to_json().encode() + b"\n" for i in (1, 2))
    path.write_bytes(first + second[:10])  # the trainer is in the middle of writing the second line
    events, offset = read_new_events(path, 0)
    assert [e.title for e in events] == ["line 1"] and offset == len(first)
    with open(path, "ab") as handle:
        handle.write(second[10:])
    events, offset = read_new_events(path, offset)
    assert [e.title for e in events] == ["line 2"] and offset == len(first + second)
