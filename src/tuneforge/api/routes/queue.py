"""The local job queue (`/api/queue`) and the one way jobs enter it, shared with `POST /api/training/start`."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter
from sqlalchemy.orm import Session, sessionmaker

from tuneforge.api.deps import DbSession, Requires, SchedulerDep, SessionFactory, SettingsDep
from tuneforge.api.errors import responses
from tuneforge.errors import Conflict, Forbidden
from tuneforge.schemas.jobs import JobAction
from tuneforge.schemas.queue import (
    Concurrency,
    ConcurrencyUpdate,
    PriorityUpdate,
    QueueEntry,
    QueueList,
    QueueStats,
    QueueSubmit,
    QueueSubmitted,
)
from tuneforge.services import jobs, queue, steering, submission
from tuneforge.services.notify import Scheduling
from tuneforge.services.permissions import Permission
from tuneforge.services.principal import Principal
from tuneforge.settings import Settings

router = APIRouter(prefix="/api/queue", tags=["queue"])
Viewer = Annotated[Principal, Requires(Permission.JOB_VIEW_ALL)]
Submitter = Annotated[Principal, Requires(Permission.JOB_SUBMIT)]
Steerer = Annotated[Principal, Requires(Permission.JOB_CANCEL_OWN)]
Manager = Annotated[Principal, Requires(Permission.QUEUE_MANAGE)]
LAUNCH_WAIT_SECONDS = 5.0


async def enqueue(session_factory: sessionmaker[Session], settings: Settings, scheduler: Scheduling,
                  principal: Principal, fields: dict[str, Any], env: str | None = None,
                  how: submission.Request = submission.Request()) -> QueueSubmitted:
    """Validate and queue a job, then wait a moment for the scheduler to start it (when it fits)."""
    if how.priority and not principal.can(Permission.QUEUE_MANAGE):
        raise Forbidden("Not allowed: a priority other than 0 needs the 'queue.manage' permission")

    def submit() -> submission.Outcome:
        with session_factory() as db:
            return submission.submit(db, settings, principal, fields, scheduler.gpus, env=env, how=how)

    outcome = await asyncio.to_thread(submit)
    if outcome.job is None:  # rejected (no_wait) or a dry run
        rejected = outcome.status == "rejected"
        message = f"Rejected: {outcome.reason}" if rejected else _dry_run_message(outcome)
        return QueueSubmitted(success=not rejected, job_id=None, status=outcome.status,  # type: ignore[arg-type]
                              allocated_gpus=list(outcome.gpus), queue_position=None, reason=outcome.reason,
                              message=message)
    scheduler.wake()
    state, reason = await scheduler.wait_for_launch(outcome.job.id, LAUNCH_WAIT_SECONDS)
    return await asyncio.to_thread(_submitted, session_factory, scheduler, outcome.job.id, state, reason,
                                   outcome.reason)


def _dry_run_message(outcome: submission.Outcome) -> str:
    if outcome.status == "would_run":
        where = f"GPUs {', '.join(map(str, outcome.gpus))}" if outcome.gpus else "the CPU"
        return f"Dry run: it would start now on {where}"
    return f"Dry run: it would be queued ({outcome.reason})"


def _submitted(session_factory: sessionmaker[Session], scheduler: Scheduling, job_id: str, state: str,
               reason: str | None, queued_because: str | None) -> QueueSubmitted:
    with session_factory() as db:
        if state == "queued":
            # Why it waits now; or, when what it waited for is being freed this very moment (the plan would start
            # it at the next tick), why it had to wait when it was submitted.
            waiting = queue.plan(db, scheduler.gpus).waiting.get(job_id) or queued_because
            return QueueSubmitted(success=True, job_id=job_id, status="queued", allocated_gpus=[],
                                  queue_position=queue.positions(db).get(job_id), reason=waiting,
                                  message="Training queued")
        gpus = queue.devices_of(db, job_id)
    if state in jobs.LIVE:
        return QueueSubmitted(success=True, job_id=job_id, status="running", allocated_gpus=gpus,
                              queue_position=None, message="Training started")
    # Over already: the launch failed, or someone cancelled it before it started.
    return QueueSubmitted(success=state == "completed", job_id=job_id, status=state,  # type: ignore[arg-type]
                          allocated_gpus=[], queue_position=None, reason=reason, message=f"Training {state}")


@router.get("", response_model=QueueList)
def list_queue(db: DbSession, scheduler: SchedulerDep, _: Viewer) -> QueueList:
    """Running jobs, then queued ones in the order they will start, with what each waits for."""
    found = [QueueEntry(**entry) for entry in queue.entries(db, scheduler.gpus)]
    return QueueList(entries=found, count=len(found))


@router.get("/stats", response_model=QueueStats)
def queue_stats(db: DbSession, scheduler: SchedulerDep, _: Viewer) -> QueueStats:
    return QueueStats(**queue.stats(db, scheduler.gpus))


@router.post("/submit", response_model=QueueSubmitted, responses=responses(404))
async def submit_job(data: QueueSubmit, session_factory: SessionFactory, settings: SettingsDep,
                     scheduler: SchedulerDep, principal: Submitter) -> QueueSubmitted:
    """Queue environment `config_name`: `running` (started), `queued` (with its position) or `rejected`
    (`no_wait` and it cannot start now); a job that could never run here is a 422."""
    how = submission.Request(any_gpu=data.any_gpu, no_wait=data.no_wait, dry_run=data.dry_run,
                             priority=data.priority)
    return await enqueue(session_factory, settings, scheduler, principal, {}, env=data.config_name, how=how)


@router.post("/concurrency", response_model=Concurrency)
def set_concurrency(data: ConcurrencyUpdate, db: DbSession, scheduler: SchedulerDep, _: Manager) -> Concurrency:
    """Change the limits; queued jobs that now fit start at once. Fields left out keep their value."""
    current = queue.set_limits(db, data.changes())
    db.commit()
    scheduler.wake()
    return Concurrency(local_gpu_max_concurrent=current.gpus, local_job_max_concurrent=current.jobs)


@router.post("/{job_id}/cancel", response_model=JobAction, responses=responses(404, 409))
def cancel_job(job_id: str, db: DbSession, principal: Steerer) -> JobAction:
    return steering.cancel(db, jobs.get(db, job_id), principal)


@router.post("/{job_id}/priority", response_model=QueueEntry, responses=responses(404, 409))
def set_priority(job_id: str, data: PriorityUpdate, db: DbSession, scheduler: SchedulerDep,
                 _: Manager) -> QueueEntry:
    """Move a queued job up (higher) or down the line."""
    queue.set_priority(db, jobs.get(db, job_id), data.priority)
    db.commit()
    scheduler.wake()
    entry = next((e for e in queue.entries(db, scheduler.gpus) if e["job_id"] == job_id), None)
    if entry is None:  # cancelled or over between the change and this answer
        raise Conflict(f"Job {job_id} has left the queue")
    return QueueEntry(**entry)
