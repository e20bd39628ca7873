"""Start a trainer process for a run folder, in its own session so a server restart does not end it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psutil

from tuneforge import runfolder


def trainer_command(run_dir: Path, num_processes: int = 1, accelerate_config: str | None = None) -> list[str]:
    if num_processes <= 1:
        return [sys.executable, "-m", "tuneforge.trainer", str(run_dir)]
    # `--gpu_ids all`: the GPUs are the ones CUDA_VISIBLE_DEVICES (the lease) shows, whatever the config file says.
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(num_processes),
              "--gpu_ids", "all"]
    launch += ["--config_file", accelerate_config] if accelerate_config else ["--multi_gpu"]
    return [*launch, "-m", "tuneforge.trainer", str(run_dir)]


def launch(command: list[str], run_dir: Path, cwd: Path, extra_env: dict[str, str] | None = None) -> subprocess.Popen:
    """Spawn detached from the server's session, output appended to `RUN_DIR/trainer.log`."""
    # The server's own settings (a database URL with its password, an API key) are not the trainer's business,
    # nor that of the user hooks it runs.
    inherited = {name: value for name, value in os.environ.items() if not name.startswith("TUNEFORGE_")}
    env = {**inherited, "PYTHONUNBUFFERED": "1", **(extra_env or {})}
    with open(run_dir / runfolder.LOG_FILE, "ab") as log:
        return subprocess.Popen(
            command, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, env=env,
        )


def started_at(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def is_running(pid: int | None, expected_start: float | None) -> bool:
    """True for a live, non-zombie process that is the one we launched (pids get reused)."""
    if pid is None:
        return False
    try:
        process = psutil.Process(pid)
        if expected_start is not None and abs(process.create_time() - expected_start) > 1.0:
            return False
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(os.getpgid(pid), sig)
    except (ProcessLookupError, PermissionError):
        pass


def oom_kills() -> int | None:
    """How many processes the kernel's out-of-memory killer has ended since boot (cgroup limits included)."""
    try:
        with open("/proc/vmstat") as handle:
            for line in handle:
                name, _, value = line.partition(" ")
                if name == "oom_kill":
                    return int(value)
    except (OSError, ValueError):
        pass
    return None
