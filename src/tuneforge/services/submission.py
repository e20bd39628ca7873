"""Submitting a training job: validate like `/api/training/validate`, check it can ever run here, record the job
(queued) and write its run folder. The scheduler's placement starts it when it fits."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from tuneforge import runfolder
from tuneforge.db.models import Job
from tuneforge.errors import Conflict
from tuneforge.services import configs, jobs, queue, validation
from tuneforge.services.devices import Gpu
from tuneforge.services.hook_rights import ensure_may_set_hooks
from tuneforge.services.placement import Want
from tuneforge.services.principal import Principal
from tuneforge.settings import Settings


@dataclass(frozen=True)
class Request:
    """How to queue it: `any_gpu` takes any free GPUs instead of the configured ones; `no_wait` refuses to queue
    a job that cannot start now; `dry_run` only says what would happen."""

    any_gpu: bool = False
    no_wait: bool = False
    dry_run: bool = False
    priority: int = 0
    # A resume's earlier config: the hooks in it count as set already, and the environment's file is left as it is.
    resuming: dict[str, Any] | None = None


@dataclass(frozen=True)
class Outcome:
    job: Job | None  # None when rejected or a dry run
    status: str  # "queued" (the scheduler starts it when it fits), "would_run", "would_queue" or "rejected"
    gpus: tuple[int, ...] = ()  # the GPUs it gets (or would get) now
    reason: str | None = None  # why it waits, or was rejected


def submit(db: Session, settings: Settings, principal: Principal, fields: dict[str, Any], gpus: Sequence[Gpu],
           env: str | None = None, how: Request = Request()) -> Outcome:
    """Queue a job from an environment (the active one unless named) overlaid with `fields`.

    Raises Invalid (nothing recorded) when the config would not train, or could never run on this machine."""
    ensure_may_set_hooks(principal, fields, how.resuming)
    job_id = jobs.new_id()
    report = validation.validate(settings, env=env, overrides=fields, job_id=job_id)
    report.raise_if_invalid()
    spec, storable = report.spec, report.storable
    assert spec is not None and storable is not None
    config = spec.config.model_dump(mode="json")
    gpu_count, gpu_ids = queue.want_of(config, gpus, how.any_gpu)
    queue.ensure_can_ever_run(gpu_count, gpu_ids, gpus, queue.limits(db))
    candidate = Want(job_id, gpu_count, tuple(gpu_ids) if gpu_ids is not None else None, how.priority,
                     datetime.now(UTC))
    now = queue.plan(db, gpus, extra=[candidate])
    starts_now = job_id in now.starts
    if how.dry_run:
        return Outcome(None, "would_run" if starts_now else "would_queue", now.starts.get(job_id, ()),
                       now.waiting.get(job_id))
    if how.no_wait and not starts_now:
        return Outcome(None, "rejected", reason=now.waiting.get(job_id))
    run_dir = settings.runs_dir / job_id
    spec.write(run_dir / runfolder.SPEC_FILE)
    try:
        job = jobs.create(db, job_id=job_id, owner=principal, env_name=spec.environment, config=config,
                          run_dir=str(run_dir), output_dir=str(spec.config.output_dir),
                          num_processes=spec.config.num_processes or 1, gpu_count=gpu_count, gpu_ids=gpu_ids,
                          priority=how.priority)
        db.commit()
    except Exception:
        shutil.rmtree(run_dir, ignore_errors=True)
        raise
    if spec.environment and how.resuming is None:  # as the tutorial says: the resolved settings become its config
        configs.save_config(settings, spec.environment, storable)
    return Outcome(job, "queued", now.starts.get(job_id, ()), now.waiting.get(job_id))


def resume_fields(job: Job) -> dict[str, Any]:
    """The options of a new job that carries on from `job`'s last checkpoint (a stopped, failed or cancelled one):
    its own settings, resuming from the newest complete checkpoint in its output folder."""
    if job.state not in ("stopped", "failed", "cancelled"):
        raise Conflict(f"Job {job.id} is {job.state}: only a stopped, failed or cancelled job can be resumed")
    found = runfolder.checkpoints(Path(job.output_dir))
    if not found:
        raise Conflict(f"Job {job.id} left no checkpoint in {job.output_dir} to resume from; start it again instead")
    fields = {name: value for name, value in job.config.items() if value is not None}
    return {**fields, "resume_from_checkpoint": str(found[-1][1])}
