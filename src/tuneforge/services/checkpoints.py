"""Checkpoints of a job, as found in its output folder (complete `checkpoint-<step>` folders only)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from tuneforge import runfolder
from tuneforge.schemas.jobs import CheckpointPublic


def list_for(output_dir: Path) -> list[CheckpointPublic]:
    found = runfolder.checkpoints(output_dir)
    latest = found[-1][0] if found else None
    return [
        CheckpointPublic(
            name=folder.name,
            path=str(folder),
            step=step,
            created_at=datetime.fromtimestamp(folder.stat().st_mtime, UTC),
            size_bytes=sum(f.stat().st_size for f in folder.rglob("*") if f.is_file() and not f.is_symlink()),
            is_latest=step == latest,
        )
        for step, folder in found
    ]
