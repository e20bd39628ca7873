"""The local job queue: what each job asks for, the limits, device leases, and the views of it that the API shows.

Which job starts where is decided by `placement.place`; this module feeds it from the database and records the
outcome (leases) so a restart keeps them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tuneforge.db.models import AppState, DeviceLease, Job
from tuneforge.errors import Conflict, FieldError, Invalid
from tuneforge.services import jobs
from tuneforge.services.devices import Gpu
from tuneforge.services.placement import Inventory, Limits, Plan, Want, never_fits, place, queue_order

LIMITS_KEY = "queue_limits"


# --- limits ------------------------------------------------------------------------------------------------------

def limits(db: Session) -> Limits:
    row = db.get(AppState, LIMITS_KEY)
    stored = row.value if row else {}
    return Limits(jobs=stored.get("local_job_max_concurrent", 1), gpus=stored.get("local_gpu_max_concurrent"))


def set_limits(db: Session, changes: dict[str, int | None]) -> Limits:
    """Change the given limits (`local_job_max_concurrent`, `local_gpu_max_concurrent`; None: no GPU limit)."""
    current = limits(db)
    stored = {"local_job_max_concurrent": current.jobs, "local_gpu_max_concurrent": current.gpus, **changes}
    row = db.get(AppState, LIMITS_KEY)
    if row is None:
        db.add(AppState(key=LIMITS_KEY, value=stored))
    else:
        row.value = stored
    db.flush()
    return limits(db)


# --- what a job asks for -----------------------------------------------------------------------------------------

def want_of(config: dict[str, Any], gpus: Sequence[Gpu], any_gpu: bool) -> tuple[int, list[int] | None]:
    """(how many GPUs, which ones or None for any) from a job's config: `gpu_ids`, else the accelerate config's
    `gpu_ids`, else `num_processes` of any free ones. On a machine without GPUs everything runs on the CPU."""
    named = config.get("gpu_ids") or _accelerate_gpu_ids(config.get("accelerate_config"))
    if not gpus and not named:
        return 0, None
    count = len(named) if named else int(config.get("num_processes") or 1)
    return count, None if any_gpu or not named else list(named)


def _accelerate_gpu_ids(path: str | None) -> list[int] | None:
    """`gpu_ids: 0,1` of an accelerate config file (YAML or JSON); None for `all`, none or an unreadable file
    (validation reports those)."""
    if not path:
        return None
    try:
        value = (yaml.safe_load(Path(path).read_text()) or {}).get("gpu_ids")
    except (OSError, yaml.YAMLError, AttributeError, UnicodeDecodeError):
        return None
    if isinstance(value, int):
        return [value]
    if not isinstance(value, str) or value.strip().lower() in ("", "all"):
        return None
    try:
        return [int(part) for part in value.split(",") if part.strip()]
    except ValueError:
        return None


def ensure_can_ever_run(count: int, ids: list[int] | None, gpus: Sequence[Gpu], current: Limits) -> None:
    """422 for a job that would wait forever: GPUs that do not exist, more than the machine has or the limit."""
    why = never_fits(Want("new", count, tuple(ids) if ids is not None else None), [gpu.index for gpu in gpus],
                     current)
    if why:
        raise Invalid(f"This job cannot run here: {why}", [FieldError("gpu_ids" if ids else "num_processes", why)])


# --- placement -----------------------------------------------------------------------------------------------------

def queued(db: Session) -> list[Job]:
    return list(db.scalars(select(Job).where(Job.state == "queued")))


def want(job: Job) -> Want:
    ids = tuple(job.gpu_ids) if job.gpu_ids is not None else None
    return Want(job.id, job.gpu_count, ids, job.priority, job.created_at)


def running_jobs(db: Session) -> int:
    return db.scalar(select(func.count()).select_from(Job).where(Job.state.in_(jobs.LIVE))) or 0


def inventory(db: Session, gpus: Sequence[Gpu]) -> Inventory:
    leased = frozenset(db.scalars(select(DeviceLease.device_index)))
    running = running_jobs(db)
    return Inventory(tuple(gpu.index for gpu in gpus), leased, running)


def plan(db: Session, gpus: Sequence[Gpu], extra: Sequence[Want] = ()) -> Plan:
    """What would start now (with `extra`, jobs not queued yet: `no_wait` and dry runs ask this)."""
    line = [*map(want, queued(db)), *extra]
    if not line:  # the scheduler asks several times a second: an empty queue costs one query
        return Plan()
    return place(line, inventory(db, gpus), limits(db), datetime.now(UTC))


def positions(db: Session) -> dict[str, int]:
    """Each queued job's place in line, from 1."""
    return {item.job_id: place for place, item in enumerate(queue_order([want(job) for job in queued(db)]), 1)}


def lease(db: Session, job_id: str, devices: Sequence[int]) -> None:
    """Give `devices` to `job_id` (in the caller's transaction; a device leased already fails the flush)."""
    db.add_all(DeviceLease(device_index=index, job_id=job_id) for index in devices)
    db.flush()


def leases(db: Session) -> dict[int, str]:
    return dict(db.execute(select(DeviceLease.device_index, DeviceLease.job_id)).tuples().all())


def devices_by_job(db: Session) -> dict[str, list[int]]:
    """Every live job's leased GPUs, in order."""
    leased: dict[str, list[int]] = {}
    for device, job_id in sorted(leases(db).items()):
        leased.setdefault(job_id, []).append(device)
    return leased


def devices_of(db: Session, job_id: str) -> list[int]:
    return sorted(db.scalars(select(DeviceLease.device_index).where(DeviceLease.job_id == job_id)))


def cuda_visible_devices(devices: Sequence[int], gpus: Sequence[Gpu]) -> str:
    """What the trainer's `CUDA_VISIBLE_DEVICES` says for its leased GPUs (empty on the CPU: it sees no GPU)."""
    by_index = {gpu.index: gpu.cuda_id for gpu in gpus}
    return ",".join(by_index[index] for index in devices)


# --- views ---------------------------------------------------------------------------------------------------------

def allocation(db: Session, gpus: Sequence[Gpu]) -> dict[str, Any]:
    held = leases(db)
    running = running_jobs(db)
    return {
        "allocated_gpus": sorted(index for index in held if index in {gpu.index for gpu in gpus}),
        "available_gpus": [gpu.index for gpu in gpus if gpu.index not in held],
        "running_local_jobs": running,
        "devices": [{"index": gpu.index, "name": gpu.name, "memory_gb": gpu.memory_gb,
                     "allocated": gpu.index in held, "job_id": held.get(gpu.index)} for gpu in gpus],
    }


def stats(db: Session, gpus: Sequence[Gpu]) -> dict[str, Any]:
    by_status = dict(db.execute(select(Job.state, func.count()).group_by(Job.state)).tuples().all())
    current = limits(db)
    held = allocation(db, gpus)
    return {
        "queue_depth": by_status.get("queued", 0),
        "running": sum(by_status.get(state, 0) for state in jobs.LIVE),
        "by_status": by_status,
        "local_gpu_max_concurrent": current.gpus,
        "local_job_max_concurrent": current.jobs,
        "local": {"running_jobs": held["running_local_jobs"], "pending_jobs": by_status.get("queued", 0),
                  "allocated_gpus": held["allocated_gpus"], "available_gpus": held["available_gpus"],
                  "total_gpus": len(gpus)},
    }


def entries(db: Session, gpus: Sequence[Gpu]) -> list[dict[str, Any]]:
    """The running jobs, then the queued ones in line, with what each holds or waits for."""
    line, waiting, held = positions(db), plan(db, gpus).waiting, leases(db)
    active = db.scalars(select(Job).where(Job.state.in_(jobs.ACTIVE)).order_by(Job.created_at))
    found = [{
        "job_id": job.id, "status": job.state, "owner": job.owner_name, "env_name": job.env_name,
        "priority": job.priority, "queue_position": line.get(job.id), "gpu_count": job.gpu_count,
        "gpu_ids": job.gpu_ids, "allocated_gpus": sorted(i for i, holder in held.items() if holder == job.id),
        "waiting_for": waiting.get(job.id), "created_at": job.created_at,
    } for job in active]
    return sorted(found, key=lambda entry: (entry["queue_position"] or 0, entry["created_at"]))


def set_priority(db: Session, job: Job, priority: int) -> None:
    if job.state != "queued":
        raise Conflict(f"Job {job.id} is {job.state}: only a queued job's priority can change")
    job.priority = priority
    db.flush()
