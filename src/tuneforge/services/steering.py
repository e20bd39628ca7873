"""Steering live jobs: stop, cancel, checkpoint and validation requests, and the public view of a job."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from tuneforge import runfolder
from tuneforge.db.models import Job
from tuneforge.errors import BadRequest, Conflict
from tuneforge.schemas.jobs import JobAction, JobPublic
from tuneforge.services import jobs
from tuneforge.services.principal import Principal

NO_ACTIVE_JOB = "No active training job"


def public(job: Job, principal: Principal | None = None, devices: list[int] | None = None) -> JobPublic:
    """What callers see of a job; with `principal`, whether they may steer it (the page shows its buttons by it)."""
    config: dict[str, Any] = dict(job.config)
    if config.get("webhook_config"):  # tokens never leave the server
        config["webhook_config"] = [masked_webhook(entry) for entry in config["webhook_config"]]
    return JobPublic(
        job_id=job.id, status=job.state, owner=job.owner_name, env_name=job.env_name, output_dir=job.output_dir,
        run_dir=job.run_dir, created_at=job.created_at, started_at=job.started_at, finished_at=job.finished_at,
        reason=job.reason, exit_code=job.exit_code, progress=live_progress(job), startup_progress=job.startup or {},
        log_tail=job.log_tail, config=config, gpu_count=job.gpu_count, devices=devices or [],
        may_steer=jobs.may_steer(job, principal) if principal is not None else None,
    )


def live_progress(job: Job) -> dict[str, Any] | None:
    """The last progress event's figures, at the step the trainer has reached since (events come once a second)."""
    progress = job.progress
    if not progress or job.state not in jobs.LIVE:
        return progress
    step = runfolder.read_step(Path(job.run_dir))
    if step is None or step <= progress.get("step", 0):
        return progress
    total = progress.get("total_steps") or 0
    return {**progress, "step": step, "percent": round(100.0 * step / total, 2) if total else progress.get("percent")}


def masked_webhook(entry: dict[str, Any]) -> dict[str, Any]:
    """A webhook entry without its secrets: the auth token, and the token in a Discord webhook URL's path."""
    masked = {**entry, "auth_token": "***" if entry.get("auth_token") else None}
    url = str(entry.get("callback_url") or "")
    if entry.get("webhook_type") == "discord" and "/webhooks/" in url:
        masked["callback_url"] = url.split("/webhooks/", 1)[0] + "/webhooks/***"
    return masked


def target(db: Session, job_id: str | None, principal: Principal | None = None) -> Job:
    """The job named, or else the current one (`jobs.current`; 400 when no job is active)."""
    if job_id:
        return jobs.get(db, job_id)
    job = jobs.current(db, principal)
    if job is None:
        raise BadRequest(NO_ACTIVE_JOB)
    return job


def stop(db: Session, job: Job, principal: Principal) -> JobAction:
    _ask(db, job, principal, "stop")
    jobs.request(db, job, "stop")
    db.commit()
    return JobAction(job_id=job.id, status=job.state, message="Stop requested: the trainer checkpoints, then exits")


def cancel(db: Session, job: Job, principal: Principal) -> JobAction:
    if job.state == "queued":
        jobs.ensure_may_steer(job, principal)
        if jobs.transition(db, job.id, "cancelled", reason="cancelled before it started", expected="queued"):
            db.commit()
            return JobAction(job_id=job.id, status="cancelled", message="Cancelled before it started")
        db.refresh(job)  # the monitor launched it meanwhile: its trainer is cancelled like any live one
    _ask(db, job, principal, "cancel")
    jobs.request(db, job, "cancel")
    db.commit()
    return JobAction(job_id=job.id, status=job.state, message="Cancel requested: the trainer is being terminated")


def trigger(db: Session, job: Job, action: str, principal: Principal) -> JobAction:
    """Ask for a checkpoint or a validation pass after the next optimizer step."""
    _ask(db, job, principal, action)
    what = "Checkpoint" if action == "checkpoint" else "Validation"
    return JobAction(job_id=job.id, status=job.state, message=f"{what} requested after the next optimizer step")


def _ask(db: Session, job: Job, principal: Principal, action: str) -> None:
    """Every request to a live trainer: the caller may steer this job, it runs, and the request file is written.
    Looked at again once written: a job that ended meanwhile has had its requests reported (the monitor commits
    the end first, then reports what is left), so this one is taken back and refused instead of lost."""
    jobs.ensure_may_steer(job, principal)
    _ensure_live(job)
    runfolder.request(Path(job.run_dir), action)
    db.refresh(job)
    if job.state not in jobs.LIVE:
        runfolder.withdraw(Path(job.run_dir), action)
        _ensure_live(job)


def _ensure_live(job: Job) -> None:
    if job.state == "queued":
        raise Conflict(f"Job {job.id} has not started yet")
    if job.state not in jobs.LIVE:
        raise Conflict(f"Job {job.id} is {job.state}, not running")
