"""Which queued jobs start now, and on which GPUs: one pure function of the queue, the free devices and the limits.

Jobs are considered in priority order (higher first), then in the order they were queued. A job starts when a job
slot is free (`local_job_max_concurrent`), its GPUs are free (the ones it names, or any with `any_gpu`) and they fit
under `local_gpu_max_concurrent`. A job that does not fit yet does not hold up the jobs behind it (they may start on
what is free: backfilling), until it has waited `RESERVE_AFTER`: from then on nothing behind it starts, so the
running jobs drain until it fits (a job that cannot fit on this machine at all, after a limit was lowered or a GPU
went, waits without holding up anyone). On a machine without GPUs the CPU hosts the jobs; only the job limit applies.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

RESERVE_AFTER = timedelta(minutes=30)


@dataclass(frozen=True)
class Want:
    """What one queued job asks for."""

    job_id: str
    gpus: int = 0  # how many GPUs; 0 runs on the CPU
    device_ids: tuple[int, ...] | None = None  # exactly these, or None for any free ones
    priority: int = 0
    queued_at: datetime = datetime.min


@dataclass(frozen=True)
class Limits:
    jobs: int = 1  # local_job_max_concurrent
    gpus: int | None = None  # local_gpu_max_concurrent; None: no limit


@dataclass(frozen=True)
class Inventory:
    """The machine now: its GPU indexes, those leased to running jobs, and how many jobs run."""

    devices: tuple[int, ...] = ()
    leased: frozenset[int] = frozenset()
    running_jobs: int = 0


@dataclass
class Plan:
    starts: dict[str, tuple[int, ...]] = field(default_factory=dict)  # job id → its GPUs (empty: CPU)
    waiting: dict[str, str] = field(default_factory=dict)  # job id → why it waits


def queue_order(wants: Sequence[Want]) -> list[Want]:
    return sorted(wants, key=lambda want: (-want.priority, want.queued_at, want.job_id))


def place(queue: Sequence[Want], inventory: Inventory, limits: Limits, now: datetime) -> Plan:
    plan = Plan()
    free = [index for index in inventory.devices if index not in inventory.leased]
    running, gpus_in_use = inventory.running_jobs, len(inventory.leased)
    reserved_for: str | None = None
    for want in queue_order(queue):
        if reserved_for is not None:
            plan.waiting[want.job_id] = f"behind job {reserved_for}, which has waited longest and goes first"
            continue
        why, devices = _fit(want, free, running, gpus_in_use, limits)
        if why is not None:
            impossible = never_fits(want, inventory.devices, limits)  # the limit was lowered, a GPU is gone
            plan.waiting[want.job_id] = impossible or why
            if impossible is None and now - want.queued_at >= RESERVE_AFTER:
                reserved_for = want.job_id
            continue
        plan.starts[want.job_id] = devices
        free = [index for index in free if index not in devices]
        running, gpus_in_use = running + 1, gpus_in_use + len(devices)
    return plan


def _fit(want: Want, free: list[int], running: int, gpus_in_use: int,
         limits: Limits) -> tuple[str | None, tuple[int, ...]]:
    """(None, the GPUs it gets) when `want` can start now; (why not, ()) otherwise."""
    if running >= limits.jobs:
        return f"all {limits.jobs} job slots are taken (local_job_max_concurrent)", ()
    if want.gpus == 0:
        return None, ()
    if limits.gpus is not None and gpus_in_use + want.gpus > limits.gpus:
        return (f"needs {want.gpus} GPU(s); {gpus_in_use} of the {limits.gpus} allowed are in use "
                "(local_gpu_max_concurrent)"), ()
    if want.device_ids is not None:
        busy = [index for index in want.device_ids if index not in free]
        if busy:
            return f"GPU(s) {', '.join(map(str, busy))} are in use", ()
        return None, want.device_ids
    if len(free) < want.gpus:
        return f"needs {want.gpus} GPU(s); {len(free)} free", ()
    return None, tuple(free[:want.gpus])


def never_fits(want: Want, devices: Sequence[int], limits: Limits) -> str | None:
    """Why `want` could not start even on an idle machine (then it is refused, not queued forever), or None."""
    if want.device_ids is not None:
        unknown = [index for index in want.device_ids if index not in devices]
        if unknown:
            known = ", ".join(map(str, devices)) or "none"
            return f"GPU(s) {', '.join(map(str, unknown))} do not exist on this machine (GPUs: {known})"
    if want.gpus > len(devices):
        return f"needs {want.gpus} GPU(s); this machine has {len(devices)}"
    if limits.gpus is not None and want.gpus > limits.gpus:
        return f"needs {want.gpus} GPU(s); local_gpu_max_concurrent allows {limits.gpus}"
    return None
