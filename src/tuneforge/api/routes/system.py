"""Health and system information."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from typing import Annotated

import psutil
from fastapi import APIRouter

from tuneforge import __version__
from tuneforge.api.deps import DbSession, Requires, SchedulerDep, public
from tuneforge.schemas.queue import GpuAllocation, GpuStatus, SystemStatus
from tuneforge.services import devices, queue
from tuneforge.services.permissions import Permission
from tuneforge.services.principal import Principal

router = APIRouter(tags=["system"])
STARTED = time.monotonic()


@router.get("/health")
@public
def health() -> dict[str, str]:
    return {"status": "ok", "version": __version__}


@router.get("/api/system/status", response_model=SystemStatus)
def system_status(db: DbSession, scheduler: SchedulerDep,
                        _: Annotated[Principal, Requires(Permission.SYSTEM_VIEW)],
                        include_allocation: bool = False) -> SystemStatus:
    """Memory and GPUs now (memory free, utilisation); with `include_allocation`, which job holds which GPU."""
    found = devices.discover()
    gpus = [GpuStatus(index=gpu.index, name=gpu.name, memory_gb=gpu.memory_gb,
                      memory_free_gb=round(gpu.memory_free / devices.GIB, 1) if gpu.memory_free is not None else None,
                      utilization_percent=gpu.utilization_percent) for gpu in found]
    allocation = GpuAllocation(**queue.allocation(db, scheduler.gpus)) if include_allocation else None
    return SystemStatus(timestamp=datetime.now(UTC), uptime_seconds=round(time.monotonic() - STARTED, 1),
                        memory_percent=psutil.virtual_memory().percent, cpu_count=os.cpu_count() or 1, gpus=gpus,
                        gpu_allocation=allocation)
