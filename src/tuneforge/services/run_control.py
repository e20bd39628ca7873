"""Requests to a running trainer: one file per request in `RUN_DIR/control/`, written atomically."""

from __future__ import annotations

import os
from pathlib import Path

ACTIONS = ("stop", "cancel", "checkpoint", "validate")


def request(run_dir: Path, action: str) -> None:
    if action not in ACTIONS:
        raise ValueError(f"unknown control action {action!r}")
    folder = run_dir / "control"
    folder.mkdir(parents=True, exist_ok=True)
    temporary = folder / f".{action}.tmp"
    temporary.write_text(action)
    os.replace(temporary, folder / action)


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
