"""Submitting a training job: validate like `/api/training/validate`, record the job, write its run folder."""

from __future__ import annotations

import shutil
from typing import Any

from sqlalchemy.orm import Session

from tuneforge import runfolder
from tuneforge.db.models import Job
from tuneforge.services import configs, jobs, validation
from tuneforge.services.hook_rights import ensure_may_set_hooks
from tuneforge.services.principal import Principal
from tuneforge.settings import Settings


def submit(db: Session, settings: Settings, principal: Principal, fields: dict[str, Any],
           env: str | None = None) -> Job:
    """Queue a job from an environment (the active one unless named) overlaid with `fields`.

    Raises Invalid (nothing recorded) or Conflict (a job is already active)."""
    ensure_may_set_hooks(principal, fields)
    jobs.ensure_none_running(db)
    job_id = jobs.new_id()
    report = validation.validate(settings, env=env, overrides=fields, job_id=job_id)
    report.raise_if_invalid()
    spec, storable = report.spec, report.storable
    assert spec is not None and storable is not None
    run_dir = settings.runs_dir / job_id
    spec.write(run_dir / runfolder.SPEC_FILE)
    try:
        job = jobs.create(
            db, job_id=job_id, owner=principal, env_name=spec.environment,
            config=spec.config.model_dump(mode="json"), run_dir=str(run_dir),
            output_dir=str(spec.config.output_dir), num_processes=spec.config.num_processes or 1,
        )
        db.commit()
    except Exception:
        shutil.rmtree(run_dir, ignore_errors=True)
        raise
    if spec.environment:  # as the tutorial says: the resolved settings become the environment's config
        configs.save_config(settings, spec.environment, storable)
    return job
