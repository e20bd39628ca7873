"""Response bodies of the training and jobs routes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel


class JobPublic(BaseModel):
    job_id: str
    status: str
    owner: str
    env_name: str | None
    output_dir: str
    run_dir: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    reason: str | None
    exit_code: int | None
    progress: dict[str, Any] | None
    startup_progress: dict[str, Any]
    log_tail: list[str] | None
    config: dict[str, Any]


class JobList(BaseModel):
    jobs: list[JobPublic]
    count: int


class RunningJob(BaseModel):
    job_id: str
    status: str
    owner: str
    env_name: str | None
    progress: dict[str, Any] | None
    started_at: datetime | None


class TrainingStatus(BaseModel):
    """The current job (`jobs.current`: the caller's most recent running one first) and every running job."""

    status: str
    job_id: str | None
    progress: dict[str, Any] | None
    startup_progress: dict[str, Any]
    job_info: JobPublic | None
    running_jobs: list[RunningJob] = []


class EventPage(BaseModel):
    events: list[dict[str, Any]]
    job_id: str | None
    next_index: int


class JobAction(BaseModel):
    job_id: str
    status: str
    message: str


class StartResponse(BaseModel):
    job_id: str
    status: str
    state: str
    message: str
    queue_position: int | None = None
    allocated_gpus: list[int] = []


class CheckpointPublic(BaseModel):
    name: str
    path: str
    step: int | None
    created_at: datetime
    size_bytes: int
    is_latest: bool


class CheckpointList(BaseModel):
    output_dir: str | None
    checkpoints: list[CheckpointPublic]
    total: int
