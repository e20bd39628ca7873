"""Jobs and their guarded state transitions.

`queued → starting → running → completed | failed | cancelled | stopped`, plus `queued → cancelled`.
Each transition is one `UPDATE … WHERE id=? AND state IN (…)` plus an event row, in one transaction.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from tuneforge.db.models import DeviceLease, Job
from tuneforge.errors import Forbidden, NotFound
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
           run_dir: str, output_dir: str, num_processes: int, gpu_count: int = 0, gpu_ids: list[int] | None = None,
           priority: int = 0) -> Job:
    job = Job(id=job_id, state="queued", owner_id=owner.user_id, owner_name=owner.username, env_name=env_name,
              config=config, run_dir=run_dir, output_dir=output_dir, num_processes=num_processes,
              gpu_count=gpu_count, gpu_ids=gpu_ids, priority=priority, events_offset=0, next_index=0, startup={})
    db.add(job)
    db.flush()
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
    if to == "starting":
        fields.setdefault("started_at", now)
    result = db.execute(
        update(Job).where(Job.id == job_id, Job.state.in_(sources)).values(state=to, reason=reason, **fields)
    )
    if result.rowcount != 1:
        return False
    if to in FINAL:  # its GPUs are free again, however it ended
        db.execute(delete(DeviceLease).where(DeviceLease.job_id == job_id))
    job_events.append(db, job_id, job_events.status_event(to, reason))
    return True


def get(db: Session, job_id: str) -> Job:
    job = db.get(Job, job_id)
    if job is None:
        raise NotFound(f"Job {job_id} not found")
    return job


def live(db: Session) -> list[Job]:
    return list(db.scalars(select(Job).where(Job.state.in_(LIVE)).order_by(Job.created_at)))


def current(db: Session, principal: Principal | None = None) -> Job | None:
    """The job the tutorial's "current job" routes act on when no `job_id` is given: the caller's own most recent
    running (or starting) job, else their most recent queued one; without either, anyone's, in the same order."""
    newest_first = list(db.scalars(select(Job).where(Job.state.in_(ACTIVE)).order_by(Job.created_at.desc())))
    own = principal.user_id if principal is not None else None

    def rank(job: Job) -> tuple[bool, bool]:
        return own is None or job.owner_id != own, job.state not in LIVE

    return min(newest_first, key=rank, default=None)  # min keeps the first (newest) of equal rank


def current_or_latest(db: Session, principal: Principal | None = None) -> Job | None:
    return current(db, principal) or db.scalars(select(Job).order_by(Job.created_at.desc())).first()


def list_all(db: Session, limit: int = 100, state: State | None = None, owner: str | None = None,
             offset: int = 0) -> tuple[list[Job], int]:
    """A page of jobs, newest first, and how many match in all."""
    query = select(Job)
    if state:
        query = query.where(Job.state == state)
    if owner:
        query = query.where(Job.owner_name == owner)
    total = db.scalar(select(func.count()).select_from(query.subquery())) or 0
    page = query.order_by(Job.created_at.desc(), Job.id).offset(offset).limit(limit)
    return list(db.scalars(page)), total


def may_steer(job: Job, principal: Principal) -> bool:
    try:
        ensure_may_steer(job, principal)
    except Forbidden:
        return False
    return True


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
