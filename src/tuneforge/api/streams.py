"""Live event streams: Server-Sent Events and WebSocket, both resumable by event index."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from tuneforge.services import job_events, jobs
from tuneforge.services.notify import EventBus

KEEPALIVE_SECONDS = 15.0


async def follow(session_factory: sessionmaker[Session], bus: EventBus, job_id: str | None,
                 start: int) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """Yield (job_id, event) from `start` on, waiting for new ones; ends once the job is over and drained.
    With no job yet, waits for the first one."""
    job_id = job_id or None  # `?job_id=` means the current job, as it does for the event pages
    while job_id is None and not bus.closing:
        seen = bus.version  # noted before reading: a publish during the read then ends the wait below at once
        job_id = await asyncio.to_thread(_pick_job, session_factory)
        if job_id is None:
            await bus.wait(KEEPALIVE_SECONDS, seen)
            yield "", {}
    position = start
    while job_id is not None and not bus.closing:
        seen = bus.version  # noted before reading: a publish during the read then ends the wait below at once
        batch, finished = await asyncio.to_thread(_read, session_factory, job_id, position)
        for event in batch:
            position = event["index"] + 1
            yield job_id, event
        if finished and not batch:
            return
        if not batch:
            await bus.wait(KEEPALIVE_SECONDS, seen)
            yield job_id, {}  # a heartbeat: lets the caller notice a closed connection


def ensure_job(session_factory: sessionmaker[Session], job_id: str | None) -> None:
    """NotFound for a job id that names no job (no id: the stream follows the current job)."""
    if job_id:
        with session_factory() as db:
            jobs.get(db, job_id)


def _pick_job(session_factory: sessionmaker[Session]) -> str | None:
    with session_factory() as db:
        job = jobs.current_or_latest(db)
        return job.id if job else None


def _read(session_factory: sessionmaker[Session], job_id: str, start: int) -> tuple[list[dict[str, Any]], bool]:
    with session_factory() as db:
        job = jobs.get(db, job_id)
        finished = job.state in jobs.FINAL
        return job_events.since(db, job_id, start, limit=200), finished


async def sse(events: AsyncIterator[tuple[str, dict[str, Any]]]) -> AsyncIterator[str]:
    yield "retry: 2000\n\n"
    async for _job_id, event in events:
        if not event:
            yield ": keep-alive\n\n"
            continue
        yield f"id: {event['index']}\ndata: {json.dumps(event, separators=(',', ':'))}\n\n"
    yield "event: end\ndata: {}\n\n"
