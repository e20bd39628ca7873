"""A job's event log: gap-free per-job indexes assigned by the database, read back by index."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from tuneforge.db.models import Job, JobEvent
from tuneforge.events import now


def append(db: Session, job_id: str, envelope: dict[str, Any]) -> dict[str, Any]:
    """Store one event in the caller's transaction; the index comes from an atomic counter on the job row."""
    next_index = db.execute(
        update(Job).where(Job.id == job_id).values(next_index=Job.next_index + 1).returning(Job.next_index)
    ).scalar_one()
    payload = {**envelope, "index": next_index - 1, "job_id": job_id}
    payload.setdefault("timestamp", now())
    payload.setdefault("severity", "info")
    db.add(JobEvent(job_id=job_id, index=payload["index"], type=payload["type"],
                    severity=payload["severity"], payload=payload))
    return payload


SEVERITIES = ("debug", "info", "success", "warning", "error")  # least to most severe


def since(db: Session, job_id: str, start: int = 0, limit: int = 500,
          min_severity: str | None = None) -> list[dict[str, Any]]:
    query = select(JobEvent.payload).where(JobEvent.job_id == job_id, JobEvent.index >= start)
    query = _at_least(query, min_severity).order_by(JobEvent.index).limit(limit)
    return list(db.scalars(query))


def before(db: Session, job_id: str, end: int, limit: int = 500,
           min_severity: str | None = None) -> list[dict[str, Any]]:
    """The last `limit` events below index `end`, in order: a long log read backwards, a page at a time."""
    query = select(JobEvent.payload).where(JobEvent.job_id == job_id, JobEvent.index < end)
    query = _at_least(query, min_severity).order_by(JobEvent.index.desc()).limit(limit)
    return list(reversed(db.scalars(query).all()))


def _at_least(query, min_severity: str | None):
    if not min_severity:
        return query
    return query.where(JobEvent.severity.in_(SEVERITIES[SEVERITIES.index(min_severity):]))


def series(db: Session, job_id: str, end: int, max_points: int) -> dict[str, list]:
    """Step, loss and learning rate of every step reported below index `end` (a report carries the steps since the
    previous one), averaged into at most `max_points` buckets of consecutive steps. The database sends only the
    progress numbers, not the events."""
    progress = JobEvent.payload["progress"]
    query = (
        select(progress["step"].as_integer(), progress["loss"].as_float(), progress["learning_rate"].as_float(),
               progress["steps"], progress["losses"], progress["learning_rates"])
        .where(JobEvent.job_id == job_id, JobEvent.type == "training.progress", JobEvent.index < end)
        .order_by(JobEvent.index)
    )
    points = [point for row in db.execute(query) for point in _steps_of(*row)]
    size = max(1, -(-len(points) // max_points))
    buckets = [points[i:i + size] for i in range(0, len(points), size)]
    return {"step": [bucket[-1][0] for bucket in buckets],
            "loss": [_mean(point[1] for point in bucket) for bucket in buckets],
            "learning_rate": [_mean(point[2] for point in bucket) for bucket in buckets],
            "bucket_size": size, "points": len(points)}


def _steps_of(step, loss, rate, steps, losses, rates) -> list[tuple]:
    """A report's steps: the ones it lists, or (from trainers before the lists) the step it reports."""
    if isinstance(steps, list) and isinstance(losses, list) and isinstance(rates, list):
        return list(zip(steps, losses, rates, strict=False))
    return [(step, loss, rate)]


def _mean(values) -> float | None:
    known = [value for value in values if value is not None]
    return sum(known) / len(known) if known else None


def get(db: Session, job_id: str, index: int) -> dict[str, Any] | None:
    query = select(JobEvent.payload).where(JobEvent.job_id == job_id, JobEvent.index == index)
    return db.scalars(query).first()


def status_event(state: str, reason: str | None = None) -> dict[str, Any]:
    """The server's own record of a state change (the trainer reports its own status too)."""
    severity = "error" if state == "failed" else "info"
    message = reason or f"Job is {state}"
    return {"type": "training.status", "severity": severity, "title": f"Job {state}", "message": message,
            "data": {"status": state, "source": "server", **({"reason": reason} if reason else {})}}


REQUEST_NAMES = {"stop": "Stop", "cancel": "Cancel", "checkpoint": "Checkpoint", "validate": "Validation"}


def request_not_done(action: str, state: str) -> dict[str, Any]:
    """The server's answer to a steering request the trainer never carried out, because the job ended first."""
    what = REQUEST_NAMES[action]
    return {"type": "log.message", "severity": "warning", "title": f"{what} request not carried out",
            "message": f"{what} request not carried out: the job was {state} before the trainer got to it",
            "data": {"source": "server", "request": action, "carried_out": False, "status": state}}
