"""Training jobs over HTTP: status, events, live streams, steering, checkpoints (/api/training, /api/jobs)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, WebSocket, WebSocketException
from fastapi.responses import StreamingResponse
from starlette.status import WS_1008_POLICY_VIOLATION
from starlette.websockets import WebSocketDisconnect

from tuneforge.api import streams
from tuneforge.api.deps import DbSession, Requires, SchedulerDep, SessionFactory, SettingsDep
from tuneforge.api.errors import responses
from tuneforge.api.forms import FormFields
from tuneforge.api.routes import queue as queue_routes
from tuneforge.api.routes import training as training_routes
from tuneforge.errors import NotFound
from tuneforge.events import Severity
from tuneforge.schemas.jobs import (
    CheckpointList,
    EventPage,
    JobAction,
    JobList,
    JobPublic,
    RunningJob,
    StartResponse,
    TrainingStatus,
)
from tuneforge.schemas.queue import QueueSubmitted
from tuneforge.schemas.types import DB_INT_MAX
from tuneforge.services import checkpoints, job_events, jobs, queue, steering, submission
from tuneforge.services.permissions import Permission
from tuneforge.services.principal import Principal

router = APIRouter(tags=["training"])

Viewer = Annotated[Principal, Requires(Permission.JOB_VIEW_ALL)]
Submitter = Annotated[Principal, Requires(Permission.JOB_SUBMIT)]
Steerer = Annotated[Principal, Requires(Permission.JOB_CANCEL_OWN)]
SinceIndex = Annotated[int, Query(ge=0, le=DB_INT_MAX, description="First event index to return")]


BEFORE_DOC = ("Instead of since_index: the last `limit` events below this index, to read a log backwards "
              "(`next_index` is then the older page's `before_index`)")
EVENT_STREAM = {**responses(404), 200: {"description": "Server-Sent Events", "content": {"text/event-stream": {}}}}


@router.post("/api/training/start", status_code=202, response_model=StartResponse,
             openapi_extra=training_routes.BODY_SCHEMA, responses=responses(404))
async def training_start(fields: FormFields, session_factory: SessionFactory, settings: SettingsDep,
                         scheduler: SchedulerDep, principal: Submitter) -> StartResponse:
    """Validate (as `validate` does) and queue the job; it starts when it fits (`running`), or waits its turn
    (`queued`, with `queue_position`). 422 leaves nothing behind."""
    done = await queue_routes.enqueue(session_factory, settings, scheduler, principal, fields)
    assert done.job_id is not None
    status = "running" if done.status == "running" else done.status
    return StartResponse(job_id=done.job_id, status=status, state="starting" if status == "running" else status,
                         message=done.message + (f": {done.reason}" if done.reason else ""),
                         queue_position=done.queue_position, allocated_gpus=done.allocated_gpus)


def _job_id(fields: dict, job_id: str | None) -> str | None:
    """A current-job route's `job_id`, as a query parameter or a form field; none: `jobs.current`."""
    given = job_id or fields.get("job_id")
    return str(given) if given else None


@router.post("/api/training/cancel", response_model=JobAction, responses=responses(404, 409))
def training_cancel(db: DbSession, fields: FormFields, principal: Steerer, job_id: str | None = None) -> JobAction:
    """Cancel at once (`job_id` optional: the current job, see `GET /api/training/status`)."""
    return steering.cancel(db, steering.target(db, _job_id(fields, job_id), principal), principal)


@router.get("/api/training/status", response_model=TrainingStatus)
def training_status(db: DbSession, principal: Viewer) -> TrainingStatus:
    """The current job (the caller's most recent running job, else anyone's, else the latest) and all running."""
    running = [RunningJob(job_id=j.id, status=j.state, owner=j.owner_name, env_name=j.env_name,
                          progress=steering.live_progress(j), started_at=j.started_at) for j in jobs.live(db)]
    job = jobs.current_or_latest(db, principal)
    if job is None:
        return TrainingStatus(status="idle", job_id=None, progress=None, startup_progress={}, job_info=None)
    info = steering.public(job)
    return TrainingStatus(status=job.state, job_id=job.id, progress=info.progress,
                          startup_progress=info.startup_progress, job_info=info, running_jobs=running)


@router.get("/api/training/events", response_model=EventPage, responses=responses(404))
def training_events(db: DbSession, principal: Viewer, since_index: SinceIndex = 0, job_id: str | None = None,
                    limit: Annotated[int, Query(ge=1, le=1000)] = 500) -> EventPage:
    job = jobs.get(db, job_id) if job_id else jobs.current_or_latest(db, principal)
    if job is None:
        return EventPage(events=[], job_id=None, next_index=since_index)
    return _page(db, job.id, since_index, limit)


def _page(db: DbSession, job_id: str, since_index: int, limit: int, min_severity: str | None = None) -> EventPage:
    events = job_events.since(db, job_id, since_index, limit, min_severity)
    next_index = events[-1]["index"] + 1 if events else since_index
    return EventPage(events=events, job_id=job_id, next_index=next_index)


def _sse_response(request: Request, job_id: str | None, since_index: int,
                  last_event_id: str | None) -> StreamingResponse:
    if last_event_id and last_event_id.strip().isdecimal():  # isdigit() would let "²" through to int()
        since_index = min(max(since_index, int(last_event_id) + 1), DB_INT_MAX)
    # Checked before the response starts: once it has, an error can only cut the stream off.
    streams.ensure_job(request.app.state.session_factory, job_id)
    scheduler = request.app.state.scheduler
    events = streams.follow(request.app.state.session_factory, scheduler.bus, job_id, since_index)
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(streams.sse(events), media_type="text/event-stream", headers=headers)


@router.get("/api/training/events/stream", response_class=StreamingResponse, responses=EVENT_STREAM)
def training_events_sse(request: Request, _: Viewer, since_index: SinceIndex = 0, job_id: str | None = None,
                        last_event_id: Annotated[str | None, Header(max_length=20)] = None) -> StreamingResponse:
    """Server-Sent Events (a WebSocket on the same path streams the same events)."""
    return _sse_response(request, job_id, since_index, last_event_id)


@router.get("/api/training/stream", response_class=StreamingResponse, responses=EVENT_STREAM)
def training_stream(request: Request, _: Viewer, since_index: SinceIndex = 0, job_id: str | None = None,
                    last_event_id: Annotated[str | None, Header(max_length=20)] = None) -> StreamingResponse:
    """The same SSE stream, at the path of the tutorial's reverse-proxy sample."""
    return _sse_response(request, job_id, since_index, last_event_id)


@router.websocket("/api/training/events/stream")
async def training_events_ws(websocket: WebSocket, _: Viewer, since_index: SinceIndex = 0,
                             job_id: str | None = None) -> None:
    try:  # refused before the handshake completes, as a refused login is
        await asyncio.to_thread(streams.ensure_job, websocket.app.state.session_factory, job_id)
    except NotFound as exc:
        raise WebSocketException(code=WS_1008_POLICY_VIOLATION, reason=exc.detail[:120]) from exc
    await websocket.accept()
    scheduler = websocket.app.state.scheduler
    try:
        async for current, event in streams.follow(websocket.app.state.session_factory, scheduler.bus,
                                                   job_id, since_index):
            if event:
                await websocket.send_json({"job_id": current, "event": event})
        await websocket.close()
    except WebSocketDisconnect:
        return


@router.post("/api/training/stop", response_model=JobAction, responses=responses(404, 409))
def training_stop(db: DbSession, fields: FormFields, principal: Steerer, job_id: str | None = None) -> JobAction:
    return steering.stop(db, steering.target(db, _job_id(fields, job_id), principal), principal)


@router.post("/api/training/validation/run", status_code=202, response_model=JobAction,
             responses=responses(404, 409))
def training_validation(db: DbSession, fields: FormFields, principal: Steerer,
                        job_id: str | None = None) -> JobAction:
    return steering.trigger(db, steering.target(db, _job_id(fields, job_id), principal), "validate", principal)


@router.post("/api/training/checkpoint/run", status_code=202, response_model=JobAction,
             responses=responses(404, 409))
def training_checkpoint(db: DbSession, fields: FormFields, principal: Steerer,
                        job_id: str | None = None) -> JobAction:
    return steering.trigger(db, steering.target(db, _job_id(fields, job_id), principal), "checkpoint", principal)


@router.get("/api/training/checkpoints", response_model=CheckpointList, responses=responses(404))
@router.post("/api/training/checkpoints", response_model=CheckpointList, responses=responses(404))
def training_checkpoints(db: DbSession, principal: Viewer, job_id: str | None = None) -> CheckpointList:
    job = jobs.get(db, job_id) if job_id else jobs.current_or_latest(db, principal)
    if job is None:
        return CheckpointList(output_dir=None, checkpoints=[], total=0)
    found = checkpoints.list_for(Path(job.output_dir))
    return CheckpointList(output_dir=job.output_dir, checkpoints=found, total=len(found))


@router.get("/api/jobs", response_model=JobList)
def list_jobs(db: DbSession, principal: Viewer, state: jobs.State | None = None,
              owner: Annotated[str | None, Query(max_length=50, description="Only this user's jobs")] = None,
              offset: Annotated[int, Query(ge=0, le=DB_INT_MAX)] = 0,
              limit: Annotated[int, Query(ge=1, le=500)] = 100) -> JobList:
    """Newest first, a page at a time (`offset`, `limit`; `total` counts all that match)."""
    page, total = jobs.list_all(db, limit, state, owner, offset)
    leased = queue.devices_by_job(db)
    found = [steering.public(job, principal, leased.get(job.id)) for job in page]
    return JobList(jobs=found, count=len(found), total=total, offset=offset)


@router.get("/api/jobs/{job_id}", response_model=JobPublic, responses=responses(404))
def get_job(job_id: str, db: DbSession, principal: Viewer) -> JobPublic:
    return steering.public(jobs.get(db, job_id), principal, queue.devices_of(db, job_id))


@router.get("/api/jobs/{job_id}/events", response_model=EventPage, responses=responses(404))
def job_events_page(job_id: str, db: DbSession, _: Viewer, since_index: SinceIndex = 0,
                    limit: Annotated[int, Query(ge=1, le=1000)] = 500,
                    before_index: Annotated[int | None, Query(ge=0, le=DB_INT_MAX, description=BEFORE_DOC)] = None,
                    min_severity: Annotated[Severity | None, Query(description="Leave out less severe events")]
                    = None) -> EventPage:
    jobs.get(db, job_id)
    if before_index is None:
        return _page(db, job_id, since_index, limit, min_severity)
    events = job_events.before(db, job_id, before_index, limit, min_severity)  # next: the older page's before_index
    return EventPage(events=events, job_id=job_id, next_index=events[0]["index"] if events else 0)


@router.post("/api/jobs/{job_id}/resume", response_model=QueueSubmitted, responses=responses(404, 409))
async def job_resume(job_id: str, session_factory: SessionFactory, settings: SettingsDep, scheduler: SchedulerDep,
                     principal: Submitter) -> QueueSubmitted:
    """A new job from the last checkpoint of a stopped, failed or cancelled one (its settings, queued as usual)."""

    def earlier() -> tuple[dict, dict, str | None]:
        with session_factory() as db:
            old = jobs.get(db, job_id)
            jobs.ensure_may_steer(old, principal)  # your own job, or anyone's with job.cancel.all
            return submission.resume_fields(old), old.config, old.env_name

    fields, config, env = await asyncio.to_thread(earlier)
    how = submission.Request(resuming=config)
    return await queue_routes.enqueue(session_factory, settings, scheduler, principal, fields, env=env, how=how)


@router.post("/api/jobs/{job_id}/stop", response_model=JobAction, responses=responses(404, 409))
def job_stop(job_id: str, db: DbSession, principal: Steerer) -> JobAction:
    return steering.stop(db, jobs.get(db, job_id), principal)


@router.post("/api/jobs/{job_id}/cancel", response_model=JobAction, responses=responses(404, 409))
def job_cancel(job_id: str, db: DbSession, principal: Steerer) -> JobAction:
    return steering.cancel(db, jobs.get(db, job_id), principal)


@router.post("/api/jobs/{job_id}/checkpoint", status_code=202, response_model=JobAction, responses=responses(404, 409))
def job_checkpoint(job_id: str, db: DbSession, principal: Steerer) -> JobAction:
    return steering.trigger(db, jobs.get(db, job_id), "checkpoint", principal)


@router.post("/api/jobs/{job_id}/validation", status_code=202, response_model=JobAction, responses=responses(404, 409))
def job_validation(job_id: str, db: DbSession, principal: Steerer) -> JobAction:
    return steering.trigger(db, jobs.get(db, job_id), "validate", principal)
