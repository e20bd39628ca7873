"""Watches jobs: launches queued ones, tails each live run's events.jsonl into the database, notices exits.

Runs in a worker thread, one `tick()` at a time. The byte offset of the events file is stored with the
events in the same transaction, so a server restart continues exactly where it stopped.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from tuneforge import runfolder
from tuneforge.db.models import Job, JobEvent
from tuneforge.events import Event
from tuneforge.scheduler import launcher
from tuneforge.scheduler.outbox import Outbox
from tuneforge.services import job_events, jobs, queue
from tuneforge.services.devices import Gpu

log = logging.getLogger("tuneforge.scheduler")
MAX_READ = 8 * 1024 * 1024
COMMIT_EVERY = 200  # events per transaction
CANCEL_GRACE = timedelta(seconds=10)
LOST = "lost: the trainer ended without reporting a final status (killed, or the machine restarted)"
LOST_BEFORE_LAUNCH = "lost before launch: the server stopped while starting the trainer; start the job again"
KILLED = "the trainer was killed by SIGKILL (not by tuneforge; `dmesg` tells whether it ran out of memory)"
REQUEST_OUTCOMES = {"stop": "stopped", "cancel": "cancelled"}
OOM_KILLED = "out_of_memory: the kernel's out-of-memory killer ended the trainer (the machine ran out of memory)"


class Monitor:
    def __init__(self, session_factory: sessionmaker[Session], workspace: Path, outbox: Outbox,
                 gpus: Sequence[Gpu] = ()) -> None:
        self.session_factory = session_factory
        self.gpus = tuple(gpus)
        self.workspace = workspace
        self.outbox = outbox
        self.children: dict[str, subprocess.Popen] = {}
        self.signalled: set[str] = set()
        self.oom_kills_at_launch: dict[str, int | None] = {}
        self.read_to: dict[Path, int] = {}  # each live job's events file, and how far the last tick read it

    def adopt_all(self) -> None:
        """At start-up: keep watching trainers that outlived the previous server; close out the rest, after
        storing what they wrote (their last status decides how they ended)."""
        with self.session_factory() as db:
            for job in jobs.live(db):
                if launcher.is_running(job.pid, job.pid_started_at):
                    continue
                self._drain(db, job)
                self._finish(db, job, exit_code=None)
                if job.pid is None:
                    # The previous server stopped between committing `starting` and storing the pid (see
                    # `_launch_queued`). A trainer may have been spawned in that gap, so no second one is launched
                    # into the same run folder: the job is closed out as lost before launch, and any such trainer
                    # is asked to cancel itself (it reads the request at its first step).
                    runfolder.request(Path(job.run_dir), "cancel")

    def tick(self) -> bool:
        """One pass over all jobs; True when anything new was stored (listeners are then woken)."""
        changed = False
        read_to = {}
        with self.session_factory() as db:
            changed |= self._launch_queued(db)
            for job in jobs.live(db):
                changed |= self._ingest(db, job) > 0
                changed |= self._check_process(db, job)
                read_to[Path(job.run_dir) / runfolder.EVENTS_FILE] = job.events_offset
        self.read_to = read_to
        return changed

    def has_news(self) -> bool:
        """A live trainer has written events since the last tick: a stat per job, no database."""
        for path, offset in self.read_to.items():
            try:
                if os.stat(path).st_size > offset:
                    return True
            except OSError:
                continue
        return False

    def _launch_queued(self, db: Session) -> bool:
        """Start the queued jobs that fit now (`services.placement`), each on the GPUs it is leased."""
        started = queue.plan(db, self.gpus).starts
        for job_id, devices in started.items():
            try:
                self._launch(db, jobs.get(db, job_id), devices)
            except SQLAlchemyError:  # one job's launch must never stop the watching of all the others
                db.rollback()
                log.exception("could not launch job %s", job_id)
                jobs.transition(db, job_id, "failed", reason="could not lease its GPUs (see the server log)")
                db.commit()
        return bool(started)

    def _launch(self, db: Session, job: Job, devices: tuple[int, ...]) -> None:
        if not jobs.transition(db, job.id, "starting", expected="queued"):
            db.rollback()
            return
        queue.lease(db, job.id, devices)
        # Committed before the spawn: a server that dies in between leaves a `starting` job without a pid, which
        # the next server closes out (freeing its GPUs), never a `queued` one whose trainer runs already.
        db.commit()
        run_dir = Path(job.run_dir)
        processes = len(devices) or job.num_processes
        command = launcher.trainer_command(run_dir, processes, job.config.get("accelerate_config") or None)
        # The lease decides the GPUs, numbered as NVML (and so the API) numbers them.
        environment = {"CUDA_VISIBLE_DEVICES": queue.cuda_visible_devices(devices, self.gpus),
                       "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
        try:
            process = launcher.launch(command, run_dir, self.workspace, environment)
        except OSError as exc:
            jobs.transition(db, job.id, "failed", reason=f"could not start the trainer: {exc}")
            db.commit()
            return
        self.children[job.id] = process
        self.oom_kills_at_launch[job.id] = launcher.oom_kills()
        job.pid, job.pid_started_at = process.pid, launcher.started_at(process.pid)
        db.commit()

    def _drain(self, db: Session, job: Job) -> None:
        """Store all that an exited trainer wrote: one pass reads MAX_READ bytes at most."""
        while self._ingest(db, job):
            pass

    def _ingest(self, db: Session, job: Job) -> int:
        """Store the complete new lines in the next MAX_READ bytes of the job's events file; return how many."""
        path = Path(job.run_dir) / runfolder.EVENTS_FILE
        lines, _, rest = runfolder.read_lines(path, job.events_offset, MAX_READ)
        if not lines:
            return self._skip_long_line(db, job, path, rest) if len(rest) == MAX_READ else 0
        # Short transactions: a long one would hold SQLite's write lock from webhooks and steering requests.
        # Each commit stores its events together with the file offset after them, so nothing is read twice.
        for start in range(0, len(lines), COMMIT_EVERY):
            batch = lines[start:start + COMMIT_EVERY]
            for line in batch:
                self._store(db, job, _parse(line))
            job.events_offset += sum(len(line) + 1 for line in batch)
            db.commit()
        return len(lines)

    def _skip_long_line(self, db: Session, job: Job, path: Path, head: bytes) -> int:
        """A line longer than MAX_READ never fits in one read: store its start as a warning and move past it."""
        end = _find_newline(path, job.events_offset + len(head))
        if end is None:
            return 0  # still being written: look again next pass
        title = f"Trainer event too long ({end - job.events_offset} bytes): stored truncated"
        self._store(db, job, _unreadable(head, title))
        job.events_offset = end + 1
        db.commit()
        return 1

    def _store(self, db: Session, job: Job, envelope: dict[str, Any]) -> None:
        payload = job_events.append(db, job.id, self.outbox.redact(job, envelope))
        if payload.get("progress"):
            job.progress = payload["progress"]
        stage = payload.get("stage")
        if stage:
            job.startup = {**job.startup, stage["key"]: {k: v for k, v in stage.items() if k != "key"}}
        status = payload.get("data", {}).get("status") if payload["type"] == "training.status" else None
        if job.state == "starting" and (status in ("started", "running") or payload["type"] == "training.progress"):
            jobs.transition(db, job.id, "running")  # the ORM update also refreshes job.state

    def _check_process(self, db: Session, job: Job) -> bool:
        child = self.children.get(job.id)
        exit_code = child.poll() if child is not None else None
        alive = exit_code is None if child is not None else launcher.is_running(job.pid, job.pid_started_at)
        if alive:
            self._enforce_cancel(job)
            return False
        self._drain(db, job)  # what it wrote before exiting decides how it ended
        self._finish(db, job, exit_code)
        self.children.pop(job.id, None)
        return True

    def _enforce_cancel(self, job: Job) -> None:
        """Cancel is immediate: SIGTERM to the group at once, SIGKILL after a grace period."""
        if job.requested != "cancel" or job.pid is None:
            return
        if job.id not in self.signalled:
            launcher.signal_group(job.pid, signal.SIGTERM)
            self.signalled.add(job.id)
        elif job.requested_at and datetime.now(UTC) - job.requested_at > CANCEL_GRACE:
            launcher.signal_group(job.pid, signal.SIGKILL)

    def _finish(self, db: Session, job: Job, exit_code: int | None) -> None:
        state, reason = _decide(exit_code, job.requested, _last_trainer_status(db, job.id), _last_error(db, job.id),
                                launched=job.pid is not None, oom_killed=self._oom_killed(job.id, exit_code))
        log_tail = self.outbox.redact(job, runfolder.tail(Path(job.run_dir) / runfolder.LOG_FILE))
        jobs.transition(db, job.id, state, reason=reason, exit_code=exit_code, log_tail=log_tail)
        db.commit()
        self._report_requests_left(db, job, state)
        self.signalled.discard(job.id)
        self.oom_kills_at_launch.pop(job.id, None)

    def _report_requests_left(self, db: Session, job: Job, state: str) -> None:
        """Every request answered 202 is carried out or answered by an event: those the trainer never got to (the
        job ended first) are reported now. After the final state is committed, so that a request written later
        finds the job ended and is refused (`services.steering`)."""
        for action in sorted(runfolder.left_over(Path(job.run_dir))):
            if REQUEST_OUTCOMES.get(action) == state:
                continue  # a cancel that ended the job by signal, a stop it ended with
            self._store(db, job, job_events.request_not_done(action, state))
        db.commit()

    def _oom_killed(self, job_id: str, exit_code: int | None) -> bool:
        """A SIGKILL we did not send while the kernel's out-of-memory killer was at work (its count rose)."""
        before = self.oom_kills_at_launch.get(job_id)
        if exit_code != -signal.SIGKILL or before is None:
            return False
        return (launcher.oom_kills() or 0) > before


def _find_newline(path: Path, start: int, block: int = 1024 * 1024) -> int | None:
    """The file position of the first newline at or after `start`, reading a block at a time."""
    with open(path, "rb") as handle:
        handle.seek(start)
        position = start
        while data := handle.read(block):
            found = data.find(b"\n")
            if found >= 0:
                return position + found
            position += len(data)
    return None


def _parse(line: bytes) -> dict[str, Any]:
    try:
        return Event.model_validate_json(line).to_dict()
    except ValidationError:
        return _unreadable(line, "Unreadable trainer event")


def _unreadable(line: bytes, title: str) -> dict[str, Any]:
    text = line[:8000].decode("utf-8", errors="replace")[:2000]
    return {"type": "log.message", "severity": "warning", "title": title, "message": text, "data": {}}


def _last_trainer_status(db: Session, job_id: str) -> str | None:
    query = (select(JobEvent.payload).where(JobEvent.job_id == job_id, JobEvent.type == "training.status")
             .order_by(JobEvent.index.desc()).limit(20))
    for payload in db.scalars(query):
        data = payload.get("data", {})
        if data.get("source") != "server":
            return data.get("status")
    return None


def _last_error(db: Session, job_id: str) -> str | None:
    query = (select(JobEvent.payload).where(JobEvent.job_id == job_id, JobEvent.type == "error")
             .order_by(JobEvent.index.desc()).limit(1))
    payload = db.scalars(query).first()
    return (payload.get("message") or payload.get("title")) if payload else None


def _decide(exit_code: int | None, requested: str | None, last_status: str | None,
            last_error: str | None, launched: bool = True, oom_killed: bool = False) -> tuple[str, str | None]:
    """The final state from the exit code (if we are the parent) or else the trainer's last status."""
    if exit_code is None:
        if last_status in jobs.FINAL:
            return last_status, last_error if last_status == "failed" else None
        if requested == "cancel":
            return "cancelled", "cancelled by request"
        return "failed", LOST if launched else LOST_BEFORE_LAUNCH
    if exit_code == runfolder.COMPLETED:
        return "completed", None
    if exit_code == runfolder.STOPPED:
        return "stopped", "stopped by request"
    if exit_code == runfolder.CANCELLED or (exit_code < 0 and requested == "cancel"):
        return "cancelled", "cancelled by request"
    if oom_killed:
        return "failed", OOM_KILLED
    if exit_code == -signal.SIGKILL:
        return "failed", KILLED
    if exit_code < 0:
        return "failed", f"the trainer was killed by {_signal_name(-exit_code)}"
    label = runfolder.EXIT_NAMES.get(exit_code, f"exit code {exit_code}")
    return "failed", f"{label}: {last_error}" if last_error else label


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:  # real-time signals (SIGRTMIN+n) have no name in the enum
        return f"signal {number}"
