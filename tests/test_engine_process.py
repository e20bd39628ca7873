"""The real trainer process: killed mid-run it leaves no checkpoint that resume would wrongly pick; and a
2-process `accelerate launch` run (gloo on CPU) keeps the replicas in sync. Few and deliberate: each costs seconds."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest

from engine_helpers import make_spec, read_events, run_in_process, write_images, write_run_dir
from tuneforge import runfolder

pytestmark = pytest.mark.e2e


def _env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}


def _checkpoint_events(run_dir) -> int:
    path = run_dir / "events.jsonl"
    if not path.exists():
        return 0
    return sum('"training.checkpoint"' in line for line in path.read_text().splitlines())


def test_killed_trainer_leaves_only_complete_checkpoints(tmp_path, tiny_pixart):
    data = write_images(tmp_path / "data", 3)
    spec = make_spec(tmp_path, tiny_pixart, data, max_train_steps=100000, checkpoint_step_interval=1,
                     checkpoints_total_limit=3)
    run_dir = write_run_dir(tmp_path, spec)
    process = subprocess.Popen([sys.executable, "-m", "tuneforge.trainer", str(run_dir)], env=_env(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while _checkpoint_events(run_dir) < 4 and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.05)
        assert process.poll() is None, "trainer exited early"
        time.sleep(0.013)  # land somewhere inside the next save
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    output = tmp_path / "out"
    named = [p for p in output.iterdir() if p.name.startswith("checkpoint-")]
    assert named and all((p / runfolder.CHECKPOINT_STATE_FILE).is_file() for p in named)
    assert all((p / "trainable.safetensors").is_file() and (p / "optimizer.bin").is_file() for p in named)
    latest = runfolder.find_checkpoint(output, "latest")
    step = runfolder.checkpoint_state(latest)["global_step"]
    spec.config.resume_from_checkpoint = "latest"
    spec.config.max_train_steps = step + 2
    outcome, run = run_in_process(tmp_path, spec)
    assert outcome == "completed" and run.resumed_from == latest and run.global_step == step + 2


def test_a_save_that_fails_midway_leaves_no_checkpoint_resume_would_pick(tmp_path, tiny_pixart):
    """The deterministic counterpart of the kill above: after the first checkpoint the kernel refuses writes
    past half a checkpoint's weight file (RLIMIT_FSIZE, like a full disk), so the second save fails inside."""
    data = write_images(tmp_path / "data", 2)
    spec = make_spec(tmp_path, tiny_pixart, data, model_type="full", max_train_steps=4, checkpoint_step_interval=1)
    output, limit = tmp_path / "out", resource.getrlimit(resource.RLIMIT_FSIZE)

    def cap_file_size(event):
        if event.type == "training.checkpoint":
            size = (output / "checkpoint-1" / "trainable.safetensors").stat().st_size
            resource.setrlimit(resource.RLIMIT_FSIZE, (size // 2, limit[1]))

    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write then fails (EFBIG) instead of killing us
    try:
        with pytest.raises(Exception, match="File too large"):
            run_in_process(tmp_path, spec, cap_file_size)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limit)
        signal.signal(signal.SIGXFSZ, handler)
    assert (output / ".checkpoint-2.tmp").is_dir()  # the failure did land inside the second save
    assert sorted(p.name for p in output.iterdir() if p.name.startswith("checkpoint-")) == ["checkpoint-1"]
    assert runfolder.find_checkpoint(output, "latest") == output / "checkpoint-1"


def test_two_process_accelerate_run_agrees_across_ranks(tmp_path, tiny_flux):
    """A LyCORIS network on Flux: the network lives inside the prepared transformer, so DDP keeps it in sync."""
    data = write_images(tmp_path / "data", 8)
    spec = make_spec(tmp_path, tiny_flux, data, model_family="flux", max_train_steps=6, train_batch_size=2,
                     num_processes=2, checkpoint_step_interval=3,
                     lycoris={"algo": "lokr", "linear_dim": 4, "linear_alpha": 4, "factor": 4, "module_dropout": 0.2})
    run_dir = write_run_dir(tmp_path, spec)
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "-m", "tuneforge.trainer", str(run_dir)]
    result = subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=240)
    assert result.returncode == runfolder.COMPLETED, result.stdout[-3000:] + result.stderr[-3000:]
    events = read_events(run_dir)
    assert sum(e["type"] == "training.status" and e["data"]["status"] == "started" for e in events) == 1
    final = events[-1]
    assert final["data"]["status"] == "completed"
    sums = final["data"]["weights_checksums"]
    assert len(sums) == 2 and sums[0] == sums[1]
    state = json.loads((tmp_path / "out" / "checkpoint-6" / runfolder.CHECKPOINT_STATE_FILE).read_text())
    assert state["global_step"] == 6
    assert (tmp_path / "out" / "checkpoint-6" / "random_states_1.pkl").is_file()  # both ranks saved their RNG
