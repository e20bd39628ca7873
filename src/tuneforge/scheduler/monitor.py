"""Watches jobs: launches queued ones, tails each live run's events.jsonl into the database, notices exits.

Runs in a worker thread, one `tick()` at a time. The byte offset of the events file is stored with the
events in the same transaction, so a server restart continues exactly where it stopped.
"""

from __future__ import annotations

import json
import logging
import signal
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tuneforge.db.models import Job, JobEvent
from tuneforge.events import EVENTS_FILE, Event
from tuneforge.scheduler import launcher
from tuneforge.scheduler.outbox import Outbox
from tuneforge.services import job_events, jobs
from tuneforge.services.run_control import tail
from tuneforge.trainer import exit_codes

log = logging.getLogger("tuneforge.scheduler")
MAX_READ = 8 * 1024 * 1024
COMMIT_EVERY = 200  # events per transaction
CANCEL_GRACE = timedelta(seconds=10)


class Monitor:
    def __init__(self, session_factory: sessionmaker[Session], workspace: Path, outbox: Outbox) -> None:
        self.session_factory = session_factory
        self.workspace = workspace
        self.outbox = outbox
        self.children: dict[str, subprocess.Popen] = {}
        self.signalled: set[str] = set()

    def adopt_all(self) -> None:
        """At start-up: keep watching trainers that outlived the previous server; close out the rest."""
        with self.session_factory() as db:
            for job in jobs.live(db):
                if not launcher.is_running(job.pid, job.pid_started_at):
                    self._finish(db, job, exit_code=None)

    def tick(self) -> bool:
        """One pass over all jobs; True when anything new was stored (listeners are then woken)."""
        changed = False
        with self.session_factory() as db:
            changed |= self._launch_queued(db)
            for job in jobs.live(db):
                changed |= self._ingest(db, job) > 0
                changed |= self._check_process(db, job)
        return changed

    def _launch_queued(self, db: Session) -> bool:
        if jobs.live(db):
            return False
        queued = db.scalars(select(Job).where(Job.state == "queued").order_by(Job.created_at)).first()
        if queued is None or not jobs.transition(db, queued.id, "starting"):
            return False
        run_dir = Path(queued.run_dir)
        accelerate_config = queued.config.get("accelerate_config") or None
        command = launcher.trainer_command(run_dir, queued.num_processes, accelerate_config)
        try:
            process = launcher.launch(command, run_dir, self.workspace)
        except OSError as exc:
            jobs.transition(db, queued.id, "failed", reason=f"could not start the trainer: {exc}")
            db.commit()
            return True
        self.children[queued.id] = process
        queued.pid, queued.pid_started_at = process.pid, launcher.started_at(process.pid)
        db.commit()
        return True

    def _ingest(self, db: Session, job: Job) -> int:
        """Store every complete new line of the job's events file; return how many were stored."""
        path = Path(job.run_dir) / EVENTS_FILE
        try:
            with open(path, "rb") as handle:
                handle.seek(job.events_offset)
                chunk = handle.read(MAX_READ)
        except FileNotFoundError:
            return 0
        complete = chunk[: chunk.rfind(b"\n") + 1]
        if not complete:
            return 0
        lines = complete[:-1].split(b"\n")
        # Short transactions: a long one would hold SQLite's write lock from webhooks and steering requests.
        # Each commit stores its events together with the file offset after them, so nothing is read twice.
        for start in range(0, len(lines), COMMIT_EVERY):
            batch = lines[start:start + COMMIT_EVERY]
            for line in batch:
                self._store(db, job, _parse(line))
            job.events_offset += sum(len(line) + 1 for line in batch)
            db.commit()
        return len(lines)

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
        self._ingest(db, job)  # drain what it wrote before exiting
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
        state, reason = _decide(exit_code, job.requested, _last_trainer_status(db, job.id), _last_error(db, job.id))
        log_tail = self.outbox.redact(job, tail(Path(job.run_dir) / "trainer.log"))
        jobs.transition(db, job.id, state, reason=reason, exit_code=exit_code, log_tail=log_tail)
        db.commit()
        self.signalled.discard(job.id)


def _parse(line: bytes) -> dict[str, Any]:
    try:
        return Event.model_validate_json(line).model_dump(mode="json", exclude_none=True)
    except ValidationError:
        text = line.decode("utf-8", errors="replace")[:2000]
        return {"type": "log.message", "severity": "warning", "title": "Unreadable trainer event",
                "message": text, "data": {}}


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
            last_error: str | None) -> tuple[str, str | None]:
    """The final state from the exit code (if we are the parent) or else the trainer's last status."""
    if exit_code is None:
        if last_status in jobs.FINAL:
            return last_status, last_error if last_status == "failed" else None
        if requested == "cancel":
            return "cancelled", "cancelled by request"
        return "failed", "lost: the trainer ended without reporting a final status (killed, or the machine restarted)"
    if exit_code == exit_codes.COMPLETED:
        return "completed", None
    if exit_code == exit_codes.STOPPED:
        return "stopped", "stopped by request"
    if exit_code == exit_codes.CANCELLED or (exit_code < 0 and requested == "cancel"):
        return "cancelled", "cancelled by request"
    if exit_code < 0:
        return "failed", f"the trainer was killed by {signal.Signals(-exit_code).name}"
    label = exit_codes.NAMES.get(exit_code, f"exit code {exit_code}")
    return "failed", f"{label}: {last_error}" if last_error else label
