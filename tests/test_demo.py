"""`tuneforge demo` end to end: the real command in a subprocess, checked by what it prints and leaves on disk."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import psutil


def _printed(label: str, output: str) -> Path:
    """The first value of a row of the summary table (the separator is │, or | without UTF-8)."""
    match = re.search(rf"{label}\s*[│|]\s*(\S+)", output)
    assert match, f"no {label!r} row in:\n{output}"
    return Path(match.group(1))


def test_demo_trains_a_tiny_lora_over_the_api_and_stops_its_server(tmp_path):
    workspace = tmp_path / "ws"
    # Wide columns, so that rich prints each path on one line.
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "300", "PYTHONIOENCODING": "utf-8"}
    env.pop("TUNEFORGE_API_KEY", None)
    result = subprocess.run(
        [sys.executable, "-m", "tuneforge", "demo", "--workspace", str(workspace), "--steps", "12"],
        capture_output=True, text=True, env=env, timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "completed" in output

    lora = _printed("LoRA weights", output)
    assert lora == workspace / "output" / "demo" / "pytorch_lora_weights.safetensors" and lora.is_file()
    checkpoint = _printed("Checkpoints", output)
    assert checkpoint.is_dir() and checkpoint.name == "checkpoint-10", output
    image = _printed("Validation images", output)
    assert image.is_file() and image.suffix == ".png"
    assert len(list((workspace / "datasets" / "demo-shapes").glob("*.png"))) == 8

    url = re.search(r"Server up at (http://127\.0\.0\.1:\d+)", output).group(1)
    try:
        answer = httpx.get(f"{url}/health", timeout=2)
    except httpx.TransportError:
        answer = None
    assert answer is None, "the demo's server still answers"
    assert not [p for p in psutil.process_iter(["cmdline"]) if str(workspace) in " ".join(p.info["cmdline"] or [])]
