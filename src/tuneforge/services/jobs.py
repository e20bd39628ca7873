"""Jobs and their guarded state transitions.

`queued → starting → running → completed | failed | cancelled | stopped`, plus `queued → cancelled`.
Each transition is one `UPDATE … WHERE id=? AND state IN (…)` plus an event row, in one transaction.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tuneforge.db.models import Job
from tuneforge.errors import Conflict, Forbidden, NotFound
from tuneforge.services import job_events
from tuneforge.services.permissions import Permission
from tuneforge.services.principal import Principal

State = Literal["queued", "starting", "running", "completed", "failed", "cancelled", "stopped"]
ACTIVE = ("queued", "starting", "running")
LIVE = ("starting", "running")
FINAL = ("completed", "failed", "cancelled", "stopped")
_SOURCES = {
    "starting": ("queued",),
    "running": ("starting",),
    "completed": LIVE,
    "failed": ACTIVE,
    "stopped": LIVE,
    "cancelled": ACTIVE,
}


def new_id() -> str:
    return secrets.token_hex(6)


def create(db: Session, *, job_id: str, owner: Principal, env_name: str | None, config: dict[str, Any],
           run_dir: str, output_dir: str, num_processes: int) -> Job:
    job = Job(id=job_id, state="queued", active_slot=1, owner_id=owner.user_id, owner_name=owner.username,
              env_name=env_name,
              config=config, run_dir=run_dir, output_dir=output_dir, num_processes=num_processes,
              events_offset=0, next_index=0, startup={})
    db.add(job)
    try:
        db.flush()
    except IntegrityError as exc:  # another start won the race for the single active slot
        db.rollback()
        ensure_none_running(db)
        raise Conflict("Another job was started at the same moment; try again") from exc
    job_events.append(db, job.id, job_events.status_event("queued"))
    return job


def transition(db: Session, job_id: str, to: str, reason: str | None = None, *, expected: str | None = None,
               **fields: Any) -> bool:
    """Move a job to `to` if its current state allows it; False when another actor got there first.

    With `expected`, only from that state: for a caller that acts on the state it saw (cancelling a queued job
    must not cancel the trainer the monitor launched meanwhile)."""
    sources = _SOURCES[to]
    if expected is not None:
        if expected not in sources:
            raise ValueError(f"a job never goes from {expected} to {to}")
        sources = (expected,)
    now = datetime.now(UTC)
    if to in FINAL:
        fields.setdefault("finished_at", now)
        fields["active_slot"] = None
    if to == "starting":
        fields.setdefault("started_at", now)
    result = db.execute(
        update(Job).where(Job.id == job_id, Job.state.in_(sources)).values(state=to, reason=reason, **fields)
    )
    if result.rowcount != 1:
        return False
    job_events.append(db, job_id, job_events.status_event(to, reason))
    return True


def get(db: Session, job_id: str) -> Job:
    job = db.get(Job, job_id)
    if job is None:
        raise NotFound(f"Job {job_id} not found")
    return job


def live(db: Session) -> list[Job]:
    return list(db.scalars(select(Job).where(Job.state.in_(LIVE)).order_by(Job.created_at)))


def active(db: Session) -> Job | None:
    query = select(Job).where(Job.state.in_(ACTIVE)).order_by(Job.created_at.desc())
    return db.scalars(query).first()


def current_or_latest(db: Session) -> Job | None:
    return active(db) or db.scalars(select(Job).order_by(Job.created_at.desc())).first()


def list_all(db: Session, limit: int = 100, state: State | None = None) -> list[Job]:
    query = select(Job).order_by(Job.created_at.desc()).limit(limit)
    if state:
        query = query.where(Job.state == state)
    return list(db.scalars(query))


def ensure_none_running(db: Session) -> None:
    running = active(db)
    if running is not None:
        raise Conflict(f"Job {running.id} is {running.state}; one job runs at a time. Stop or cancel it first")


def ensure_may_steer(job: Job, principal: Principal) -> None:
    """Stop and cancel: your own job with job.cancel.own, anyone's with job.cancel.all."""
    if principal.can(Permission.JOB_CANCEL_ALL):
        return
    if principal.can(Permission.JOB_CANCEL_OWN) and job.owner_id == principal.user_id:
        return
    raise Forbidden(f"Not allowed: job {job.id} belongs to {job.owner_name}")


def request(db: Session, job: Job, action: str) -> None:
    """Remember a stop/cancel request so the monitor can tell a requested exit from a crash."""
    db.execute(update(Job).where(Job.id == job.id).values(requested=action, requested_at=datetime.now(UTC)))
