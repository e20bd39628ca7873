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


def since(db: Session, job_id: str, start: int = 0, limit: int = 500) -> list[dict[str, Any]]:
    query = (
        select(JobEvent.payload)
        .where(JobEvent.job_id == job_id, JobEvent.index >= start)
        .order_by(JobEvent.index)
        .limit(limit)
    )
    return list(db.scalars(query))


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
