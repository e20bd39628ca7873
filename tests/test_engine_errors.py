"""Bad input gives a clear `error` event and the right exit code, in-process through the trainer's main()."""

from __future__ import annotations

import json
import os
import signal

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from engine_helpers import make_spec, read_events, write_images, write_run_dir
from tuneforge import runfolder
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
    assert code == runfolder.INVALID_CONFIG
    assert "not found" in _error(events)


def test_folder_of_another_family(tmp_path, tiny_pixart):
    data = write_images(tmp_path / "data", 2)
    other = tmp_path / "flux"
    other.mkdir()
    (other / "model_index.json").write_text(json.dumps({"_class_name": "FluxPipeline"}))
    code, events = _run(tmp_path, make_spec(tmp_path, other, data))
    assert code == runfolder.INVALID_CONFIG
    assert "FluxPipeline" in _error(events) and "model_family" in _error(events)


def test_empty_dataset(tmp_path, tiny_pixart):
    (tmp_path / "empty").mkdir()
    code, events = _run(tmp_path, make_spec(tmp_path, tiny_pixart, tmp_path / "empty"))
    assert code == runfolder.INVALID_CONFIG
    assert "no usable images" in _error(events)


def test_all_images_below_minimum(tmp_path, tiny_pixart):
    data = write_images(tmp_path / "data", 2, sizes=((32, 32),))
    spec = make_spec(tmp_path, tiny_pixart, datasets=[
        {"id": "images", "instance_data_dir": str(data), "resolution": 64, "resolution_type": "pixel",
         "minimum_image_size": 64},
        {"id": "text", "dataset_type": "text_embeds", "default": True, "cache_dir": str(tmp_path / "t")}])
    code, events = _run(tmp_path, spec)
    assert code == runfolder.INVALID_CONFIG
    assert "img000.png: 32x32 is below minimum_image_size 64" in _error(events)


def test_resume_name_that_does_not_exist(tmp_path, tiny_pixart):
    data = write_images(tmp_path / "data", 2)
    code, events = _run(tmp_path, make_spec(tmp_path, tiny_pixart, data, resume_from_checkpoint="checkpoint-99"))
    assert code == runfolder.INVALID_CONFIG
    assert "checkpoint-99" in _error(events) and "latest" in _error(events)


def test_a_model_folder_of_another_family_is_refused_before_caching(tmp_path, tiny_pixart):
    data = write_images(tmp_path / "data", 2)
    code, events = _run(tmp_path, make_spec(tmp_path, tiny_pixart, data, model_family="flux"))
    assert code == runfolder.INVALID_CONFIG
    assert "holds a PixArtSigmaPipeline pipeline, not a flux one" in _error(events)
    assert not any(e["type"] == "lifecycle.stage" for e in events)  # refused before any stage began


def test_resume_with_another_lora_rank_names_the_option(tmp_path, tiny_pixart):
    data = write_images(tmp_path / "data", 2)
    code, _ = _run(tmp_path, make_spec(tmp_path, tiny_pixart, data, max_train_steps=1, lora_rank=4))
    assert code == runfolder.COMPLETED
    spec = make_spec(tmp_path, tiny_pixart, data, max_train_steps=2, lora_rank=8, resume_from_checkpoint="latest")
    code, events = _run(tmp_path, spec)
    assert code == runfolder.INVALID_CONFIG
    assert "lora_rank=4" in _error(events) and "lora_rank=8" in _error(events)


def test_output_dir_that_is_a_file(tmp_path, tiny_pixart):
    data = write_images(tmp_path / "data", 2)
    (tmp_path / "out").write_text("not a folder")
    code, events = _run(tmp_path, make_spec(tmp_path, tiny_pixart, data))
    assert code == runfolder.INVALID_CONFIG
    assert _error(events).startswith("output_dir:") and "is a file" in _error(events)


def test_other_ranks_write_their_failure_to_stderr(tmp_path, monkeypatch, capsys):
    data = write_images(tmp_path / "data", 2)
    run_dir = write_run_dir(tmp_path, make_spec(tmp_path, tmp_path / "nope", data))
    monkeypatch.setenv("RANK", "1")  # what accelerate launch sets for the second process
    assert main(run_dir) == runfolder.INVALID_CONFIG
    assert not (run_dir / "events.jsonl").exists()  # only rank 0 writes events ...
    err = capsys.readouterr().err  # ... so the failure goes to stderr, which is trainer.log under the server
    assert "not found" in err and "ModelLoadError" in err


def test_unreadable_spec(tmp_path):
    (tmp_path / "spec.json").write_text("{not json")
    assert main(tmp_path) == runfolder.INVALID_CONFIG
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
    assert code == runfolder.CANCELLED
    assert events[-1]["data"]["status"] == "cancelled" and events[-1]["data"]["step"] == 3
    assert (tmp_path / "run" / "pid").read_text().strip() == str(os.getpid())
