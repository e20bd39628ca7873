"""Response bodies of the training and jobs routes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


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
    gpu_count: int = 0
    devices: list[int] = Field([], description="The GPUs leased to it while it runs (NVML indexes)")
    may_steer: bool | None = Field(None, description="Whether the caller may stop, cancel, checkpoint or validate "
                                   "it (null where the answer does not say)")


class JobList(BaseModel):
    jobs: list[JobPublic]
    count: int = Field(description="Jobs on this page")
    total: int = Field(0, description="Jobs matching the filters in all")
    offset: int = 0


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


class JobFilePublic(BaseModel):
    path: str = Field(description="For GET /api/jobs/{job_id}/files/{path}: `output/...` or `run/trainer.log`")
    kind: str = Field(description="weights, file, folder, checkpoint, validation, preview or log")
    size_bytes: int
    modified_at: datetime
    step: int | None = Field(None, description="The training step of a checkpoint or validation image")
    url: str
    is_folder: bool = Field(description="Downloaded as a zip")


class JobFileList(BaseModel):
    job_id: str
    files: list[JobFilePublic]
    total: int
    offset: int


class MetricSeries(BaseModel):
    """The job's loss and learning rate by step, averaged into at most `max_points` points (each is the last step
    of its bucket)."""

    job_id: str
    step: list[int]
    loss: list[float | None]
    learning_rate: list[float | None]
    bucket_size: int = Field(description="Consecutive steps averaged into each point")
    points: int = Field(description="Steps reported in all")
    next_index: int = Field(description="Follow the event stream from this index for what comes after")
