"""Writing checkpoint folders atomically and rotating them (naming and listing: `tuneforge.runfolder`)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from tuneforge import runfolder


class ResumeError(Exception):
    """resume_from_checkpoint names a checkpoint that does not exist or does not fit this run (message says why)."""


def temporary_path(output_dir: Path, step: int) -> Path:
    return Path(output_dir) / runfolder.temporary_checkpoint_name(step)


def final_path(output_dir: Path, step: int) -> Path:
    return Path(output_dir) / runfolder.checkpoint_name(step)


def begin(output_dir: Path, step: int) -> Path:
    """A fresh, empty temporary folder (rank 0 only)."""
    temporary = temporary_path(output_dir, step)
    shutil.rmtree(temporary, ignore_errors=True)
    temporary.mkdir(parents=True)
    return temporary


def commit(output_dir: Path, step: int, state: dict[str, Any]) -> Path:
    """Write the completion marker, then rename into place (rank 0 only)."""
    temporary = temporary_path(output_dir, step)
    with open(temporary / runfolder.CHECKPOINT_STATE_FILE, "w", encoding="utf-8") as handle:
        json.dump(state, handle, indent=2)
        handle.flush()
        os.fsync(handle.fileno())
    final = final_path(output_dir, step)
    if final.exists():  # e.g. a requested checkpoint at the same step as a scheduled one
        _discard(final)
    os.replace(temporary, final)
    return final


def _discard(checkpoint: Path) -> None:
    """Delete a checkpoint so that no crash leaves a part of it under its name: renamed to a temporary name (one
    atomic step; `rotate` removes leftovers of those), then deleted."""
    doomed = checkpoint.with_name(runfolder.temporary_checkpoint_name(checkpoint.name.split("-", 1)[-1] + ".discarded"))
    shutil.rmtree(doomed, ignore_errors=True)
    os.replace(checkpoint, doomed)
    shutil.rmtree(doomed, ignore_errors=True)


def rotate(output_dir: Path, limit: int | None, keep: Path | None = None) -> list[Path]:
    """Delete the oldest complete checkpoints beyond `limit`, and leftover temporary folders."""
    removed = []
    for leftover in Path(output_dir).glob(runfolder.temporary_checkpoint_name("*")):
        shutil.rmtree(leftover, ignore_errors=True)
    if not limit:
        return removed
    found = [path for _, path in runfolder.checkpoints(output_dir)]
    for path in found[: max(0, len(found) - limit)]:
        if path != keep:
            _discard(path)
            removed.append(path)
    return removed


def resolve(output_dir: Path, value: str | None) -> Path | None:
    """The checkpoint to resume from: None for a fresh start."""
    try:
        return runfolder.find_checkpoint(output_dir, value)
    except ValueError as exc:
        raise ResumeError(f"resume_from_checkpoint: {exc}") from None
