"""Every run reports what its steps cost: a real tiny training run in this process, its progress events read back
from the run folder; the trainer's thread count; the latest step between throttled events."""

from __future__ import annotations

import os
import threading
import time
from types import SimpleNamespace

import pytest

from engine_helpers import make_spec, read_events, run_in_process, write_images
from tuneforge import runfolder
from tuneforge.db.models import Job
from tuneforge.models.flops import pixart_forward_flops, training_flops
from tuneforge.services.steering import live_progress
from tuneforge.trainer.setup import choose_threads

PHASES = ("data", "forward", "backward", "optimizer", "other")


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, tiny_pixart):
    root = tmp_path_factory.mktemp("telemetry")
    spec = make_spec(root, tiny_pixart, write_images(root / "data", 4, sizes=((64, 64),)), max_train_steps=12,
                     train_batch_size=2)
    outcome, run = run_in_process(root, spec)
    assert outcome == "completed"
    return run, read_events(root / "run"), root / "run"


def test_every_progress_event_says_where_the_time_went(finished_run):
    run, events, _ = finished_run
    reports = [e["progress"] for e in events if e["type"] == "training.progress"]
    assert reports and all("telemetry" in report for report in reports)
    for report in reports:
        t = report["telemetry"]
        assert sum(t[f"{phase}_seconds"] for phase in PHASES) == pytest.approx(t["step_seconds"], rel=1e-2)
        assert t["samples_per_second"] > 0 and t["peak_memory_mb"] > 100 and t["memory_kind"] == "rss"
        assert t.get("mfu") is None, "no MFU without a GPU's peak"
        # 64 px → an 8×8 latent → 16 PixArt tokens of 2×2 patches per sample
        assert t["image_tokens_per_second"] / t["samples_per_second"] == pytest.approx(16, rel=1e-3)


def test_the_model_flops_are_the_formulas(finished_run):
    run, events, _ = finished_run
    config = run.unwrapped().config
    text_tokens = run.adapter.max_tokens
    expected = training_flops(pixart_forward_flops(config, 16, text_tokens).times(2), trains_base=False)
    last = [e for e in events if e["type"] == "training.progress"][-1]["progress"]["telemetry"]
    assert last["model_tflops_per_step"] == pytest.approx(expected / 1e12, rel=1e-3)


def test_every_steps_loss_is_reported_once_and_read_back_once(finished_run):
    run, events, _ = finished_run
    reports = [e["progress"] for e in events if e["type"] == "training.progress"]
    steps = [step for report in reports for step in report["steps"]]
    losses = [loss for report in reports for loss in report["losses"]]
    assert steps == list(range(1, 13)) and losses == pytest.approx(run.losses)
    assert all(report["loss"] == report["losses"][-1] for report in reports)


def test_the_trainer_chooses_its_threads_and_says_so(finished_run, monkeypatch):
    _, events, run_dir = finished_run
    started = next(e for e in events if e["type"] == "training.status" and e["data"]["status"] == "started")
    assert started["data"]["cpu_threads"] == choose_threads(SimpleNamespace(trainer_threads=None))
    assert choose_threads(SimpleNamespace(trainer_threads=3)) == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "5")
    assert choose_threads(SimpleNamespace(trainer_threads=None)) == 5, "an admin's OMP_NUM_THREADS is kept"
    monkeypatch.delenv("OMP_NUM_THREADS")
    cpus = len(os.sched_getaffinity(0))
    assert choose_threads(SimpleNamespace(trainer_threads=None)) == max(1, cpus - 1)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", str(cpus))
    assert choose_threads(SimpleNamespace(trainer_threads=None)) == 1
    assert runfolder.read_step(run_dir) is not None


def test_the_status_shows_the_latest_step_between_events(tmp_path):
    job = Job(id="j", state="running", run_dir=str(tmp_path),
              progress={"step": 10, "total_steps": 200, "percent": 5.0, "loss": 0.5})
    assert live_progress(job)["step"] == 10
    runfolder.write_step(tmp_path, 50)
    assert live_progress(job) == {"step": 50, "total_steps": 200, "percent": 25.0, "loss": 0.5}
    job.state = "completed"
    assert live_progress(job)["step"] == 10, "an ended job shows its last report"


def test_a_stopped_run_reports_its_last_steps(tmp_path, tiny_pixart):
    """A stop between two reports (reports come once a second): the steps since the last one are reported before
    the run ends. The stop is asked for once the run folder's step counter passes step 1."""
    spec = make_spec(tmp_path, tiny_pixart, write_images(tmp_path / "data", 2, sizes=((64, 64),)),
                     max_train_steps=10_000)
    run_dir = tmp_path / "run"

    def stop_soon() -> None:
        while (runfolder.read_step(run_dir) or 0) < 2:
            time.sleep(0.001)
        runfolder.request(run_dir, "stop")

    threading.Thread(target=stop_soon, daemon=True).start()
    outcome, run = run_in_process(tmp_path, spec)
    assert outcome == "stopped" and 1 < run.global_step < 10_000
    reports = [e["progress"] for e in read_events(run_dir) if e["type"] == "training.progress"]
    assert [step for report in reports for step in report["steps"]] == list(range(1, run.global_step + 1))
    assert len(run.losses) == run.global_step


def test_compiling_the_transformer_compiles_each_block_in_place():
    """Compilation itself happens at the first call (a minute on these CPUs: `bench/gpu.py --compile` runs it)."""
    from tuneforge.models.tiny import tiny_flux_transformer, tiny_pixart_transformer
    from tuneforge.trainer.setup import compile_blocks

    flux, pixart = tiny_flux_transformer(), tiny_pixart_transformer()
    assert (compile_blocks(flux), compile_blocks(pixart)) == (3, 2)  # 1 dual + 2 single blocks; 2 PixArt blocks
    blocks = [*flux.transformer_blocks, *flux.single_transformer_blocks, *pixart.transformer_blocks]
    assert all(block._compiled_call_impl is not None for block in blocks)
