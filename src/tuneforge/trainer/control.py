"""Requests from the server (files in the run folder's `control/`), plus SIGTERM as cancel; and the latest step,
for the server to show between throttled progress events.

Rank 0 reads the folder; the decision is reduced across ranks so that every rank checkpoints or stops at the
same step.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

from tuneforge import runfolder

STEP_EVERY_S = 0.1


class Control:
    def __init__(self, run_dir: Path | None) -> None:
        self.run_dir = Path(run_dir) if run_dir else None
        self.cancel_requested = False
        self._step_written = 0.0

    def install_signal_handlers(self) -> None:
        def on_term(signum, frame):
            self.cancel_requested = True

        signal.signal(signal.SIGTERM, on_term)

    def take(self) -> set[str]:
        """Rank 0: the requests to act on at this step (see `runfolder.take`)."""
        found = {"cancel"} if self.cancel_requested else set()
        return found | (runfolder.take(self.run_dir) if self.run_dir is not None else set())

    def done(self, action: str) -> None:
        if self.run_dir is not None:
            runfolder.done(self.run_dir, action)

    def interrupting(self) -> bool:
        """A stop or cancel is waiting: long work (validation sampling) gives way to it."""
        if self.cancel_requested:
            return True
        return self.run_dir is not None and runfolder.asked(self.run_dir, ("stop", "cancel"))

    def report_step(self, step: int) -> None:
        """Rank 0: the step just done, at most ten times a second."""
        now = time.monotonic()
        if self.run_dir is not None and now - self._step_written >= STEP_EVERY_S:
            runfolder.write_step(self.run_dir, step)
            self._step_written = now
