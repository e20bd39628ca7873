"""Requests from the server: files in `RUN_DIR/control/`, plus SIGTERM as cancel.

Rank 0 reads the folder; the decision is broadcast so that every rank checkpoints or stops at the same step.
"""

from __future__ import annotations

import signal
from pathlib import Path

ACTIONS = ("stop", "cancel", "checkpoint", "validate")


class Control:
    def __init__(self, run_dir: Path | None) -> None:
        self.folder = Path(run_dir) / "control" if run_dir else None
        self.cancel_requested = False

    def install_signal_handlers(self) -> None:
        def on_term(signum, frame):  # noqa: ARG001 - signal handler signature
            self.cancel_requested = True

        signal.signal(signal.SIGTERM, on_term)

    def pending(self) -> set[str]:
        found = {"cancel"} if self.cancel_requested else set()
        if self.folder is not None and self.folder.is_dir():
            found |= {name for name in ACTIONS if (self.folder / name).exists()}
        return found

    def handled(self, action: str) -> None:
        if self.folder is not None:
            (self.folder / action).unlink(missing_ok=True)


def encode(actions: set[str]) -> list[int]:
    return [int(name in actions) for name in ACTIONS]


def decode(flags: list[int]) -> set[str]:
    return {name for name, flag in zip(ACTIONS, flags) if flag}
