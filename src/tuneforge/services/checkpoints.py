"""Checkpoints of a job, as found in its output folder (`checkpoint-<step>`; temporary folders ignored)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

from tuneforge.schemas.jobs import CheckpointPublic

_NAME = re.compile(r"^checkpoint-(\d+)$")


def list_for(output_dir: Path) -> list[CheckpointPublic]:
    if not output_dir.is_dir():
        return []
    found = []
    for folder in output_dir.iterdir():
        match = _NAME.match(folder.name)
        if match and folder.is_dir() and not folder.is_symlink():
            found.append((int(match.group(1)), folder))
    found.sort()
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
