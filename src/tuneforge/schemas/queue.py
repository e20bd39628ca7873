"""Request and response bodies of the queue and system routes (the tutorial's shapes)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, field_validator

from tuneforge.schemas.configs import EnvPathName
from tuneforge.schemas.types import WHOLE_NUMBER

Priority = Annotated[int, Field(ge=-1000, le=1000, description="Higher starts first"), WHOLE_NUMBER]
Limit = Annotated[int, Field(ge=0, le=10_000), WHOLE_NUMBER]
LIMIT_SCHEMA = {"type": "integer", "minimum": 0, "maximum": 10_000}


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class QueueSubmit(_Request):
    config_name: EnvPathName
    no_wait: bool = Field(False, description="Reject at once, queueing nothing, when the job cannot start now")
    any_gpu: bool = Field(False, description="Any free GPUs (as many as configured) instead of the configured ids")
    dry_run: bool = Field(False, description="Only say what would happen: nothing is queued")
    priority: Priority = 0


class QueueSubmitted(BaseModel):
    success: bool
    job_id: str | None
    status: Literal["running", "queued", "rejected", "would_run", "would_queue", "completed", "failed",
                    "cancelled", "stopped"]
    allocated_gpus: list[int]
    queue_position: int | None
    reason: str | None = None
    message: str


class ConcurrencyUpdate(_Request):
    local_gpu_max_concurrent: Limit | None = Field(None, description="GPUs all local jobs may hold; null: no limit")
    # Left out: unchanged. There is no unlimited job count, so no null either.
    local_job_max_concurrent: Annotated[Limit | None, WithJsonSchema(LIMIT_SCHEMA)] = Field(
        None, description="Local jobs running at once (0 pauses)")

    @field_validator("local_job_max_concurrent")
    @classmethod
    def _a_number(cls, value: int | None) -> int | None:
        if value is None:
            raise ValueError("must be a whole number (there is no unlimited job count); leave it out to keep it")
        return value

    def changes(self) -> dict[str, int | None]:
        return self.model_dump(include=self.model_fields_set)


class Concurrency(BaseModel):
    success: bool = True
    local_gpu_max_concurrent: int | None
    local_job_max_concurrent: int


class PriorityUpdate(_Request):
    priority: Priority


class QueueEntry(BaseModel):
    job_id: str
    status: str
    owner: str
    env_name: str | None
    priority: int
    queue_position: int | None
    gpu_count: int
    gpu_ids: list[int] | None
    allocated_gpus: list[int]
    waiting_for: str | None
    created_at: datetime


class QueueList(BaseModel):
    entries: list[QueueEntry]
    count: int


class DevicePublic(BaseModel):
    index: int
    name: str
    memory_gb: float
    allocated: bool
    job_id: str | None


class GpuAllocation(BaseModel):
    allocated_gpus: list[int]
    available_gpus: list[int]
    running_local_jobs: int
    devices: list[DevicePublic]


class QueueStats(BaseModel):
    queue_depth: int
    running: int
    by_status: dict[str, int]
    local_gpu_max_concurrent: int | None
    local_job_max_concurrent: int
    local: dict[str, Any]


class GpuStatus(BaseModel):
    index: int
    name: str
    memory_gb: float
    memory_free_gb: float | None
    utilization_percent: int | None


class SystemStatus(BaseModel):
    timestamp: datetime
    uptime_seconds: float
    memory_percent: float
    cpu_count: int
    gpus: list[GpuStatus]
    gpu_allocation: GpuAllocation | None = None
