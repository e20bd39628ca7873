"""User hooks, trackers and exit-code classification of the training engine, on the tiny model, in-process."""

from __future__ import annotations

import json
import os
import shlex
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

from engine_helpers import make_spec, read_events, run_in_process, write_images
from tuneforge import runfolder
from tuneforge.errors import Invalid
from tuneforge.trainer.__main__ import classify

RECORDER = """\
import json, sys, time
time.sleep({delay})  # a slow hook: the run must still wait for it before it reports its end
with open(sys.argv[1], "a", encoding="utf-8") as handle:
    handle.write(json.dumps(sys.argv[2:]) + "\\n")
"""


def _recorder(tmp_path, delay: float = 0.0):
    """A hook script that appends its arguments (after the record file) as one JSON line per call."""
    script, record = tmp_path / "record.py", tmp_path / "calls.jsonl"
    script.write_text(RECORDER.format(delay=delay))
    return f"{shlex.quote(sys.executable)} {shlex.quote(str(script))} {shlex.quote(str(record))}", record


def _calls(record) -> list[list[str]]:
    return [json.loads(line) for line in record.read_text().splitlines()] if record.exists() else []


def _hook_logs(events, hook: str) -> list[dict]:
    return [e for e in events if e["type"] == "log.message" and e["data"].get("hook") == hook]


def test_external_validation_script_gets_separate_substituted_arguments(tmp_path, tiny_pixart):
    data = write_images(tmp_path / "data", 2)
    command, record = _recorder(tmp_path)
    command += " {global_step} {model_family} {validation_num_inference_steps} {local_checkpoint_path}"
    command += " {tracker_run_name}"
    spec = make_spec(tmp_path, tiny_pixart, data, max_train_steps=4, validation_step_interval=2,
                     validation_prompt="a photo of a cat", validation_method="external-script",
                     validation_external_script=command, tracker_run_name="my run")
    outcome, run = run_in_process(tmp_path, spec)
    assert outcome == "completed"
    calls = _calls(record)
    # An empty value stays one (empty) argument, so positions never shift; no checkpoint was saved at these
    # steps, so {local_checkpoint_path} is empty.
    assert calls == [["2", "pixart_sigma", "3", "", "my run"], ["4", "pixart_sigma", "3", "", "my run"]]
    events = read_events(tmp_path / "run")
    logs = _hook_logs(events, "validation_external_script")
    assert len(logs) == len(calls) and all(e["severity"] == "info" for e in logs)
    assert logs[0]["data"]["args"][-5:] == calls[0]
    assert not any(e["type"] == "training.validation" for e in events)  # the built-in sampler did not run
    assert events[-1]["data"]["status"] == "completed"


@pytest.mark.parametrize("prompt", [None, "a photo of a cat"])
def test_external_validation_runs_once_per_interval(tmp_path, tiny_pixart, prompt):
    data = write_images(tmp_path / "data", 2)
    command, record = _recorder(tmp_path)
    spec = make_spec(tmp_path, tiny_pixart, data, max_train_steps=4, validation_step_interval=2,
                     validation_prompt=prompt, validation_method="external-script",
                     validation_external_script=command + " {global_step}")
    outcome, _ = run_in_process(tmp_path, spec)
    assert outcome == "completed"
    assert _calls(record) == [["2"], ["4"]]


def test_post_checkpoint_script_sees_each_checkpoint(tmp_path, tiny_pixart):
    data = write_images(tmp_path / "data", 2)
    command, record = _recorder(tmp_path, delay=0.5)
    spec = make_spec(tmp_path, tiny_pixart, data, max_train_steps=4, checkpoint_step_interval=2,
                     post_checkpoint_script=command + " {global_step} {local_checkpoint_path}")
    outcome, run = run_in_process(tmp_path, spec)
    assert outcome == "completed"
    calls = sorted(_calls(record), key=lambda c: int(c[0]))
    assert [c[0] for c in calls] == ["2", "4"]
    for step, path in calls:
        assert os.path.basename(path) == f"checkpoint-{step}" and os.path.isdir(path)
        assert os.path.isfile(os.path.join(path, "pytorch_lora_weights.safetensors"))
    events = read_events(tmp_path / "run")
    logs = _hook_logs(events, "post_checkpoint_script")
    assert sorted(e["data"]["args"][-2] for e in logs) == ["2", "4"]
    assert all(e["severity"] == "info" and e["message"] == "post_checkpoint_script finished" for e in logs)
    # The background hooks were waited for: their outcome comes before the run's last event.
    assert events[-1]["type"] == "training.status" and events[-1]["data"]["status"] == "completed"


def test_failing_missing_and_misspelt_hooks_are_warnings(tmp_path, tiny_pixart):
    data = write_images(tmp_path / "data", 2)
    failing = tmp_path / "fail.py"
    failing.write_text("import sys\nprint('something broke')\nsys.exit(3)\n")
    spec = make_spec(tmp_path, tiny_pixart, data, max_train_steps=2, checkpoint_step_interval=1,
                     validation_step_interval=1, validation_prompt="a photo of a cat",
                     validation_method="external-script",
                     validation_external_script=f"{shlex.quote(sys.executable)} {shlex.quote(str(failing))}",
                     post_checkpoint_script=str(tmp_path / "no-such-program") + " {global_step}")
    outcome, run = run_in_process(tmp_path, spec)
    assert outcome == "completed" and run.global_step == 2
    events = read_events(tmp_path / "run")
    assert events[-1]["type"] == "training.status" and events[-1]["data"]["status"] == "completed"
    assert not any(e["type"] == "error" for e in events)
    failed = _hook_logs(events, "validation_external_script")
    assert failed and all(e["severity"] == "warning" for e in failed)
    assert failed[0]["message"] == "validation_external_script exited with code 3"
    assert failed[0]["data"]["returncode"] == 3 and "something broke" in failed[0]["data"]["output_tail"]
    missing = _hook_logs(events, "post_checkpoint_script")
    assert len(missing) == 2 and all(e["severity"] == "warning" for e in missing)
    assert "could not start" in missing[0]["message"] and "no-such-program" in missing[0]["message"]

    root = tmp_path / "typo"
    spec = make_spec(root, tiny_pixart, data, max_train_steps=1, checkpoint_step_interval=1,
                     post_checkpoint_script=f"{shlex.quote(sys.executable)} -c pass {{nope}}")
    outcome, _ = run_in_process(root, spec)
    assert outcome == "completed"
    [typo] = _hook_logs(read_events(root / "run"), "post_checkpoint_script")
    assert typo["severity"] == "warning" and "unknown placeholder {nope}" in typo["message"]
    assert "global_step" in typo["message"] and "local_checkpoint_path" in typo["message"]


def test_tensorboard_gets_metrics_and_validation_images(tmp_path, tiny_pixart):
    data = write_images(tmp_path / "data", 2)
    spec = make_spec(tmp_path, tiny_pixart, data, max_train_steps=2, report_to="tensorboard",
                     tracker_project_name="hooks-test", validation_prompt="a photo of a cat",
                     validation_step_interval=2)
    outcome, run = run_in_process(tmp_path, spec)
    assert outcome == "completed"
    files = [p for p in run.output_dir.rglob("*") if p.name.startswith("events.out.tfevents")]
    assert files, sorted(str(p.relative_to(run.output_dir)) for p in run.output_dir.rglob("*"))
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags = EventAccumulator(str(files[0].parent)).Reload().Tags()
    assert {"train/loss", "train/learning_rate", "train/samples_per_second", "train/epoch"} <= set(tags["scalars"])
    assert tags["images"] == ["validation/0-64x64"]


def _no_wandb_settings(monkeypatch, tmp_path):
    for name in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_DIR", "WANDB_BASE_URL", "NETRC"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/.netrc with a wandb login
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "wandb-cache"))


def test_wandb_without_credentials_runs_offline_with_images(tmp_path, tiny_pixart, monkeypatch):
    _no_wandb_settings(monkeypatch, tmp_path)
    data = write_images(tmp_path / "data", 2)
    spec = make_spec(tmp_path, tiny_pixart, data, max_train_steps=2, report_to="wandb", tracker_project_name="hooks",
                     tracker_run_name="offline run", validation_prompt="a photo of a cat", validation_step_interval=2)
    outcome, run = run_in_process(tmp_path, spec)
    assert outcome == "completed"
    assert "WANDB_MODE" not in os.environ  # decided for this run, not left behind in the process
    runs = list((run.output_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, sorted(str(p) for p in run.output_dir.rglob("*"))
    assert list(runs[0].glob("*.wandb")), sorted(p.name for p in runs[0].iterdir())
    assert list(runs[0].rglob("media/images/validation/*.png"))  # the validation image went to the tracker


def test_wandb_is_left_online_when_the_user_logged_in(tmp_path, monkeypatch):
    from tuneforge.trainer.trackers import wandb_mode

    _no_wandb_settings(monkeypatch, tmp_path)
    assert wandb_mode() == "offline"
    home = tmp_path / "home"
    home.mkdir()
    (home / ".netrc").write_text("machine api.wandb.ai\n  login user\n  password 0123456789abcdef\n")
    (home / ".netrc").chmod(0o600)
    assert wandb_mode() is None  # `wandb login` wrote this: wandb goes online with it
    assert wandb_mode({"WANDB_API_KEY": "k", "HOME": str(tmp_path)}) is None
    assert wandb_mode({"WANDB_MODE": "disabled", "HOME": str(tmp_path)}) is None  # the user's choice stands


def test_classify_out_of_memory_and_invalid():
    assert classify(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")) == (
        runfolder.OUT_OF_MEMORY, "Out of memory")
    assert classify(torch.OutOfMemoryError())[0] == runfolder.OUT_OF_MEMORY == 5
    assert classify(Invalid("bad value"))[0] == runfolder.INVALID_CONFIG
    assert classify(RuntimeError("boom")) == (runfolder.FAILED, "Training failed")
    wrapped = RuntimeError("could not save")
    wrapped.__cause__ = OSError(28, "No space left on device")
    assert classify(wrapped)[0] == classify(RuntimeError("I/O error: No space left on device (os error 28)"))[0] == (
        runfolder.NO_SPACE)


def test_a_server_job_runs_only_programs_of_its_hooks_folder(tmp_path, tiny_pixart):
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    script = hooks / "note.sh"
    script.write_text(f"#!/bin/sh\necho \"$1\" > {tmp_path / 'ran'}\n")
    script.chmod(0o755)
    data = write_images(tmp_path / "data", 2)
    root = tmp_path / "outside"
    spec = make_spec(root, tiny_pixart, data, max_train_steps=1, checkpoint_step_interval=1, hooks_dir=hooks,
                     post_checkpoint_script=f"touch {tmp_path / 'pwned'}")
    assert run_in_process(root, spec)[0] == "completed"
    [refused] = _hook_logs(read_events(root / "run"), "post_checkpoint_script")
    assert "not run" in refused["message"] and not (tmp_path / "pwned").exists()
    root = tmp_path / "inside"
    spec = make_spec(root, tiny_pixart, data, max_train_steps=1, checkpoint_step_interval=1, hooks_dir=hooks,
                     post_checkpoint_script="note.sh {global_step}")  # by its name in the hooks folder
    assert run_in_process(root, spec)[0] == "completed"
    assert (tmp_path / "ran").read_text().strip() == "1"
