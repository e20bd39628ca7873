"""`python -m tuneforge.trainer RUN_DIR` (or under `accelerate launch`): run the job described by spec.json."""

from __future__ import annotations

import atexit
import contextlib
import errno
import logging
import os
import signal
import sys
import traceback
from pathlib import Path

from tuneforge import runfolder


def classify(exc: BaseException) -> tuple[int, str]:
    """Exit code and event title for an exception raised by a run."""
    import torch

    from tuneforge.data.discovery import DatasetError
    from tuneforge.errors import Invalid
    from tuneforge.models.base import ModelLoadError
    from tuneforge.trainer.checkpoints import ResumeError

    if isinstance(exc, torch.OutOfMemoryError | MemoryError):
        return runfolder.OUT_OF_MEMORY, "Out of memory"
    if _caused_by(exc, _is_no_space):
        return runfolder.NO_SPACE, "No space left on the device"
    if isinstance(exc, Invalid | ModelLoadError | DatasetError | ResumeError):
        return runfolder.INVALID_CONFIG, "Invalid configuration"
    return runfolder.FAILED, "Training failed"


def _is_no_space(exc: BaseException) -> bool:
    """ENOSPC, also as libraries written in Rust or C++ report it (safetensors: "... (os error 28)")."""
    if isinstance(exc, OSError):
        return exc.errno == errno.ENOSPC
    return "No space left on device" in str(exc)


def _caused_by(exc: BaseException | None, test) -> bool:
    """True when `exc` or an exception it was raised from passes `test` (libraries wrap OSErrors in their own)."""
    seen = 0
    while exc is not None and seen < 10:
        if test(exc):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def _echo(event) -> None:
    """One write per event line, so lines from hook threads never interleave."""
    from tuneforge.events import log_line

    sys.stdout.write(log_line(event) + "\n")
    sys.stdout.flush()


def _echo_errors(event) -> None:
    """Ranks other than 0 write no events; their failure (with its traceback) must still reach trainer.log."""
    from tuneforge.events import log_line

    if event.type == "error":
        sys.stderr.write(log_line(event) + "\n")
        sys.stderr.flush()


def main(run_dir: Path, events=None) -> int:
    """Run the job in `run_dir`; returns the exit code. `events` lets the CLI listen to the same events."""
    from tuneforge.events import EventWriter

    run_dir = Path(run_dir)
    rank0 = int(os.environ.get("RANK", "0")) == 0
    if rank0 and (code := _write_pid(run_dir)) is not None:
        return code
    if events is None:
        events = EventWriter(run_dir / runfolder.EVENTS_FILE, enabled=rank0)
        # stdout and stderr are the run's trainer.log when the server launched us
        events.add_listener(_echo if rank0 else _echo_errors)
    try:
        from tuneforge.options.spec import RunSpec

        spec = RunSpec.read(run_dir / runfolder.SPEC_FILE)
    except (OSError, ValueError) as exc:
        events.error("Invalid configuration", f"cannot read {run_dir / runfolder.SPEC_FILE}: {exc}")
        events.status("failed", str(exc), severity="error")
        return runfolder.INVALID_CONFIG
    from tuneforge.trainer.run import build_run, execute

    try:
        run = build_run(spec, run_dir, events)
        run.control.install_signal_handlers()
        return runfolder.OUTCOME_CODES[execute(run)]
    except BaseException as exc:  # report everything, including KeyboardInterrupt, then exit with a code
        if isinstance(exc, KeyboardInterrupt):
            code, title = runfolder.CANCELLED, "Interrupted"
        else:
            code, title = classify(exc)
        _report_end(events, exc, code, title)
        return code


def _write_pid(run_dir: Path) -> int | None:
    """None when written; else the exit code of a run that cannot even start (a full disk)."""
    try:
        (run_dir / runfolder.PID_FILE).write_text(f"{os.getpid()}\n")
    except OSError as exc:
        with contextlib.suppress(OSError):
            sys.stderr.write(f"cannot write {run_dir / runfolder.PID_FILE}: {exc}\n")
        return runfolder.NO_SPACE if exc.errno == errno.ENOSPC else runfolder.FAILED
    return None


def _report_end(events, exc: BaseException, code: int, title: str) -> None:
    """Say how the run ended. On a full disk the report itself may not fit: the exit code still says it."""
    tail = "".join(traceback.format_exception(exc))[-4000:]
    message = (str(exc) or exc.__class__.__name__)[:1000]
    try:
        events.error(title, message, exception=exc.__class__.__name__, traceback=tail, exit_code=code)
        events.status("cancelled" if code == runfolder.CANCELLED else "failed", message, severity="error",
                      exit_code=code)
    except OSError as report_error:
        with contextlib.suppress(OSError):
            sys.stderr.write(f"{title}: {message} (and the report could not be written: {report_error})\n")


def _exit(code: int) -> None:
    """Exit with `code` once the output is flushed (what a full disk refused is dropped) and the exit handlers have
    run, without the interpreter's teardown: tearing down torch's object graph costs a second or more of every
    job's wall time, and the run has closed its files and trackers (`execute`)."""
    for name in ("stdout", "stderr"):
        with contextlib.suppress(OSError, ValueError):
            getattr(sys, name).flush()
    atexit._run_exitfuncs()  # what libraries registered (wandb finishes its run and removes its media folder)
    logging.shutdown()
    os._exit(code)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: python -m tuneforge.trainer RUN_DIR", file=sys.stderr)
        sys.exit(runfolder.INVALID_CONFIG)
    code = main(Path(sys.argv[1]))
    # The outcome is decided and reported. Python restores the default SIGTERM action while it shuts down, so the
    # server's cancel signal arriving now would replace our exit code with "killed by SIGTERM".
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _exit(code)
