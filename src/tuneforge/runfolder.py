"""The run folder: the one contract between the server and a trainer process (torch-free; imports nothing of ours).

`<state>/runs/<job_id>/` holds
- `spec.json`      the resolved config, written by the server, read (only) by the trainer;
- `events.jsonl`   one JSON event per line, appended by the trainer only;
- `control/`       one file per request from the server (`stop`, `cancel`, `checkpoint`, `validate`), renamed by
                   the trainer when it takes it and deleted once carried out; what is left when the run ends, the
                   server reports as not carried out;
- `trainer.log`    the trainer's stdout and stderr; `pid` its process id;
- `step`           the latest optimizer step, rewritten as training goes (progress events are throttled).
The trainer's exit codes and the naming of the checkpoints and validation images it writes into its output folder are
part of the contract too: the server lists and serves them and decides a job's end from them.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

SPEC_FILE = "spec.json"
EVENTS_FILE = "events.jsonl"
LOG_FILE = "trainer.log"
PID_FILE = "pid"
STEP_FILE = "step"
CONTROL_DIR = "control"

# --- the latest step -------------------------------------------------------------------------------------------------

def write_step(run_dir: Path, step: int) -> None:
    temporary = Path(run_dir) / f".{STEP_FILE}.tmp"
    temporary.write_text(str(step))
    os.replace(temporary, Path(run_dir) / STEP_FILE)


def read_step(run_dir: Path) -> int | None:
    try:
        return int((Path(run_dir) / STEP_FILE).read_text())
    except (OSError, ValueError):
        return None


# --- control requests -------------------------------------------------------------------------------------------

ACTIONS = ("stop", "cancel", "checkpoint", "validate")


def request(run_dir: Path, action: str) -> None:
    """Ask the trainer for `action`, atomically: it sees the request whole or not at all."""
    if action not in ACTIONS:
        raise ValueError(f"unknown control action {action!r}")
    folder = Path(run_dir) / CONTROL_DIR
    folder.mkdir(parents=True, exist_ok=True)
    temporary = folder / f".{action}.tmp"
    temporary.write_text(action)
    os.replace(temporary, folder / action)


def take(run_dir: Path) -> set[str]:
    """The trainer claims the requests present now: each is renamed to `.<action>.taken`, so that one asked for
    while the work is under way waits for the next step instead of being deleted with it. Returns every request
    taken and not yet done."""
    folder = Path(run_dir) / CONTROL_DIR
    if not folder.is_dir():
        return set()
    for name in ACTIONS:
        try:
            os.replace(folder / name, folder / _taken(name))
        except FileNotFoundError:
            pass
    return {name for name in ACTIONS if (folder / _taken(name)).exists()}


def done(run_dir: Path, action: str) -> None:
    """A taken request was carried out."""
    (Path(run_dir) / CONTROL_DIR / _taken(action)).unlink(missing_ok=True)


def asked(run_dir: Path, actions: tuple[str, ...]) -> bool:
    """Whether any of `actions` is asked for, taken or not (a cheap check, e.g. once per sampling step)."""
    folder = Path(run_dir) / CONTROL_DIR
    return any((folder / name).exists() or (folder / _taken(name)).exists() for name in actions)


def left_over(run_dir: Path) -> set[str]:
    """Requests not carried out, taken or not, removing them: what the server reports once a run has ended."""
    folder = Path(run_dir) / CONTROL_DIR
    left = set()
    for name in ACTIONS:
        for path in (folder / name, folder / _taken(name)):
            if path.exists():
                left.add(name)
                path.unlink(missing_ok=True)
    return left


def withdraw(run_dir: Path, action: str) -> None:
    """Take back a request the trainer has not taken (its job ended before it could)."""
    (Path(run_dir) / CONTROL_DIR / action).unlink(missing_ok=True)


def _taken(action: str) -> str:
    return f".{action}.taken"


def encode(actions: set[str]) -> list[int]:
    """Actions as flags, so that ranks can agree on them with one reduction."""
    return [int(name in actions) for name in ACTIONS]


def decode(flags: list[int]) -> set[str]:
    return {name for name, flag in zip(ACTIONS, flags, strict=True) if flag}


# --- exit codes of `python -m tuneforge.trainer` -------------------------------------------------------------------

COMPLETED = 0
FAILED = 1
INVALID_CONFIG = 2
CANCELLED = 3
STOPPED = 4
OUT_OF_MEMORY = 5
NO_SPACE = 6

EXIT_NAMES = {
    COMPLETED: "completed",
    FAILED: "failed",
    INVALID_CONFIG: "invalid_config",
    CANCELLED: "cancelled",
    STOPPED: "stopped",
    OUT_OF_MEMORY: "out_of_memory",
    NO_SPACE: "no_space_left",
}
OUTCOME_CODES = {"completed": COMPLETED, "stopped": STOPPED, "cancelled": CANCELLED}

# --- checkpoints in the output folder ------------------------------------------------------------------------------
# A checkpoint is written into `.checkpoint-<step>.tmp`, finished with `trainer_state.json` (written last), then
# renamed. Only `checkpoint-<step>` folders holding that file count, so a crash never leaves one that looks complete.

CHECKPOINT_STATE_FILE = "trainer_state.json"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def checkpoint_name(step: int) -> str:
    return f"checkpoint-{step}"


def temporary_checkpoint_name(step: int | str) -> str:
    """`step="*"` gives the pattern of all of them."""
    return f".checkpoint-{step}.tmp"


def checkpoints(output_dir: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints, oldest first. Links are never followed out of the output folder."""
    folder = Path(output_dir)
    if not folder.is_dir():
        return []
    found = []
    for entry in folder.iterdir():
        match = _CHECKPOINT.match(entry.name)
        if match and entry.is_dir() and not entry.is_symlink() and (entry / CHECKPOINT_STATE_FILE).is_file():
            found.append((int(match.group(1)), entry))
    return sorted(found)


def find_checkpoint(output_dir: Path, value: str | None) -> Path | None:
    """The checkpoint `resume_from_checkpoint` names: None for a fresh start (also `latest` with none saved yet).

    Raises ValueError, naming the checkpoints there are, for a name or path that is not a complete checkpoint."""
    if not value:
        return None
    found = checkpoints(output_dir)
    if value == "latest":
        return found[-1][1] if found else None
    candidate = Path(value) if Path(value).is_absolute() else Path(output_dir) / value
    if candidate.is_dir() and (candidate / CHECKPOINT_STATE_FILE).is_file():
        return candidate
    names = ", ".join(path.name for _, path in found) or "none"
    raise ValueError(f"{value!r} is not a complete checkpoint in {output_dir} (available: {names}); use 'latest' or "
                     "one of those names")


def checkpoint_state(checkpoint: Path) -> dict[str, Any]:
    return json.loads((Path(checkpoint) / CHECKPOINT_STATE_FILE).read_text(encoding="utf-8"))


# --- validation images in the output folder --------------------------------------------------------------------------
# `validation/step-<step>/<index>-<W>x<H>.png`, and the previews of that validation's sampling under `previews/`.

VALIDATION_DIR = "validation"
PREVIEW_DIR = "previews"
_VALIDATION_STEP = re.compile(r"^step-(\d+)$")


def validation_folder(step: int) -> str:
    """Relative to the output folder."""
    return f"{VALIDATION_DIR}/step-{step}"


def validation_step(folder_name: str) -> int | None:
    match = _VALIDATION_STEP.match(folder_name)
    return int(match.group(1)) if match else None


def checkpoint_step(folder_name: str) -> int | None:
    match = _CHECKPOINT.match(folder_name)
    return int(match.group(1)) if match else None


# --- reading what the trainer wrote ----------------------------------------------------------------------------------

def read_lines(path: Path, offset: int, limit: int | None = None) -> tuple[list[bytes], int, bytes]:
    """Complete lines appended to `path` after byte `offset` (at most `limit` bytes read), the offset after them,
    and the unfinished rest (a line the writer is still writing, or one longer than `limit`)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            chunk = handle.read() if limit is None else handle.read(limit)
    except FileNotFoundError:
        return [], offset, b""
    end = chunk.rfind(b"\n") + 1
    complete, rest = chunk[:end], chunk[end:]
    return (complete[:-1].split(b"\n") if complete else []), offset + end, rest


def tail(path: Path, lines: int = 40, max_bytes: int = 64 * 1024) -> list[str]:
    """The last lines of a log file, without reading all of it."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - max_bytes))
            text = handle.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return []
    return text.splitlines()[-lines:]
