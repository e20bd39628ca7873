"""Every benchmark runs in its quick mode and ends with one JSON line of its figures (a script tracks them over
time). What the figures are is the benchmarks' business, not the tests': nothing here is timed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
BENCH = Path(__file__).resolve().parents[1] / "bench"
RUNS = {
    "step_overhead.py": ["--quick"], "job_wall.py": ["--quick"], "api_latency.py": ["--quick"],
    "gpu.py": ["--tiny"], "event_pipeline.py": ["--quick"], "upload_memory.py": ["--quick"],
}
FIGURES = {
    "step_overhead.py": lambda f: all(r["overhead"] > 0 and r["busy_ratio"] > 0 for r in f["results"]),
    "job_wall.py": lambda f: all(job["steps"] > 0 and job["total"] > job["steps"] for job in f["jobs"].values()),
    "api_latency.py": lambda f: f["requests"] > 0 and f["events"] > 0 and f["status_p50_ms"] > 0,
    "gpu.py": lambda f: [r["case"] for r in f["results"] if r["error"] is None] == [
        "flux-lora", "flux-lora-checkpointing", "flux-lora-int8", "pixart-900m-full"],
    "event_pipeline.py": lambda f: f["not_delivered"] == 0 and f["ingest_events_per_second"] > 0,
    "upload_memory.py": lambda f: all(case["files_uploaded"] > 0 for case in f["cases"]),
}


def test_every_benchmark_is_tested_here():
    assert sorted(RUNS) == sorted(path.name for path in BENCH.glob("*.py"))


@pytest.mark.parametrize("script", sorted(RUNS))
def test_the_benchmark_runs_quick_and_ends_with_its_figures(script):
    done = subprocess.run([sys.executable, str(BENCH / script), *RUNS[script]], capture_output=True, text=True,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=280)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    assert len(lines) >= 2, "a readable table first"
    figures = json.loads(lines[-1])
    assert figures["bench"] == script.removesuffix(".py")
    assert FIGURES[script](figures), figures
