"""Bad input gives a clear `error` event and the right exit code, in-process through the trainer's main()."""

from __future__ import annotations

import json
import os
import signal

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from engine_helpers import make_spec, read_events, write_images, write_run_dir

from tuneforge.trainer import exit_codes
from tuneforge.trainer.__main__ import main


def _run(root, spec, listener=None):
    from tuneforge.events import EventWriter

    run_dir = write_run_dir(root, spec)
    events = EventWriter(run_dir / "events.jsonl")
    if listener:
        events.add_listener(listener)
    code = main(run_dir, events)
    return code, read_events(run_dir)


def _error(events) -> str:
    errors = [e for e in events if e["type"] == "error"]
    assert errors, [e["type"] for e in events]
    assert events[-1]["type"] == "training.status"
    return errors[-1]["message"]


def test_missing_model_folder(tmp_path, tiny_pixart):
    data = write_images(tmp_path / "data", 2)
    code, events = _run(tmp_path, make_spec(tmp_path, tmp_path / "nope", data))
    assert code == exit_codes.INVALID_CONFIG
    assert "does not exist" in _error(events)


def test_folder_of_another_family(tmp_path, tiny_pixart):
    data = write_images(tmp_path / "data", 2)
    other = tmp_path / "flux"
    other.mkdir()
    (other / "model_index.json").write_text(json.dumps({"_class_name": "FluxPipeline"}))
    code, events = _run(tmp_path, make_spec(tmp_path, other, data))
    assert code == exit_codes.INVALID_CONFIG
    assert "FluxPipeline" in _error(events) and "model_family" in _error(events)


def test_empty_dataset(tmp_path, tiny_pixart):
    (tmp_path / "empty").mkdir()
    code, events = _run(tmp_path, make_spec(tmp_path, tiny_pixart, tmp_path / "empty"))
    assert code == exit_codes.INVALID_CONFIG
    assert "no usable images" in _error(events)


def test_all_images_below_minimum(tmp_path, tiny_pixart):
    data = write_images(tmp_path / "data", 2, sizes=((32, 32),))
    spec = make_spec(tmp_path, tiny_pixart, datasets=[
        {"id": "images", "instance_data_dir": str(data), "resolution": 64, "resolution_type": "pixel",
         "minimum_image_size": 64},
        {"id": "text", "dataset_type": "text_embeds", "default": True, "cache_dir": str(tmp_path / "t")}])
    code, events = _run(tmp_path, spec)
    assert code == exit_codes.INVALID_CONFIG
    assert "img000.png: 32x32 is below minimum_image_size 64" in _error(events)


def test_resume_name_that_does_not_exist(tmp_path, tiny_pixart):
    data = write_images(tmp_path / "data", 2)
    code, events = _run(tmp_path, make_spec(tmp_path, tiny_pixart, data, resume_from_checkpoint="checkpoint-99"))
    assert code == exit_codes.INVALID_CONFIG
    assert "checkpoint-99" in _error(events) and "latest" in _error(events)


def test_unreadable_spec(tmp_path):
    (tmp_path / "spec.json").write_text("{not json")
    assert main(tmp_path) == exit_codes.INVALID_CONFIG
    assert read_events(tmp_path)[0]["type"] == "error"


def test_sigterm_cancels(tmp_path, tiny_pixart):
    data = write_images(tmp_path / "data", 2)
    spec = make_spec(tmp_path, tiny_pixart, data, max_train_steps=50, checkpoint_step_interval=2)

    def terminate(event):
        if event.type == "training.checkpoint":
            os.kill(os.getpid(), signal.SIGTERM)

    previous = signal.getsignal(signal.SIGTERM)
    try:
        code, events = _run(tmp_path, spec, terminate)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert code == exit_codes.CANCELLED
    assert events[-1]["data"]["status"] == "cancelled" and events[-1]["data"]["step"] == 3
    assert (tmp_path / "run" / "pid").read_text().strip() == str(os.getpid())
