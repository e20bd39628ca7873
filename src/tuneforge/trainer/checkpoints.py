"""Checkpoint folders: `checkpoint-<step>` in the output folder, written atomically and rotated.

A checkpoint is written into `.checkpoint-<step>.tmp`, finished with `trainer_state.json` (the completion
marker, written last), then renamed. Resume only considers folders named `checkpoint-<step>` that contain
`trainer_state.json`, so a crash at any moment leaves nothing that resume would pick.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

STATE_FILE = "trainer_state.json"
_NAME = re.compile(r"^checkpoint-(\d+)$")


class ResumeError(Exception):
    """resume_from_checkpoint names a checkpoint that does not exist (message lists the valid ones)."""


def valid_checkpoints(output_dir: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints, oldest first."""
    if not Path(output_dir).is_dir():
        return []
    found = []
    for folder in Path(output_dir).iterdir():
        match = _NAME.match(folder.name)
        if match and folder.is_dir() and (folder / STATE_FILE).is_file():
            found.append((int(match.group(1)), folder))
    return sorted(found)


def temporary_path(output_dir: Path, step: int) -> Path:
    return Path(output_dir) / f".checkpoint-{step}.tmp"


def final_path(output_dir: Path, step: int) -> Path:
    return Path(output_dir) / f"checkpoint-{step}"


def begin(output_dir: Path, step: int) -> Path:
    """A fresh, empty temporary folder (rank 0 only)."""
    temporary = temporary_path(output_dir, step)
    shutil.rmtree(temporary, ignore_errors=True)
    temporary.mkdir(parents=True)
    return temporary


def commit(output_dir: Path, step: int, state: dict[str, Any]) -> Path:
    """Write the completion marker, then rename into place (rank 0 only)."""
    temporary = temporary_path(output_dir, step)
    marker = temporary / STATE_FILE
    with open(marker, "w", encoding="utf-8") as handle:
        json.dump(state, handle, indent=2)
        handle.flush()
        os.fsync(handle.fileno())
    final = final_path(output_dir, step)
    if final.exists():  # e.g. a requested checkpoint at the same step as a scheduled one
        shutil.rmtree(final)
    os.replace(temporary, final)
    return final


def rotate(output_dir: Path, limit: int | None, keep: Path | None = None) -> list[Path]:
    """Delete the oldest complete checkpoints beyond `limit`, and leftover temporary folders."""
    removed = []
    for leftover in Path(output_dir).glob(".checkpoint-*.tmp"):
        shutil.rmtree(leftover, ignore_errors=True)
    if not limit:
        return removed
    found = [path for _, path in valid_checkpoints(output_dir)]
    for path in found[: max(0, len(found) - limit)]:
        if path != keep:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def resolve(output_dir: Path, value: str | None) -> Path | None:
    """The checkpoint to resume from: None for a fresh start."""
    if not value:
        return None
    found = valid_checkpoints(output_dir)
    if value == "latest":
        return found[-1][1] if found else None
    candidate = Path(value)
    if not candidate.is_absolute():
        candidate = Path(output_dir) / value
    if candidate.is_dir() and (candidate / STATE_FILE).is_file():
        return candidate
    names = ", ".join(path.name for _, path in found) or "none"
    raise ResumeError(
        f"resume_from_checkpoint: {value!r} is not a complete checkpoint in {output_dir} (available: {names}); "
        "use 'latest' or one of those names")


def read_state(checkpoint: Path) -> dict[str, Any]:
    return json.loads((Path(checkpoint) / STATE_FILE).read_text(encoding="utf-8"))
