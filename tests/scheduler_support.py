"""Helpers of the scheduler and webhook tests: a job row with a run folder, events written as a trainer would,
and the monitor's and outbox's passes run once."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import subprocess
import sys
from pathlib import Path

from tuneforge.db.models import Job
from tuneforge.scheduler import launcher
from tuneforge.services import job_events, jobs
from tuneforge.services.outbound import OutboundPolicy
from tuneforge.services.principal import LOCAL_ADMIN

LOOPBACK = OutboundPolicy((ipaddress.ip_network("127.0.0.0/8"),))  # the tests' receivers listen on loopback


def add_job(session_factory, tmp_path: Path, webhooks=None, interval=None, job_id: str = "job1",
            run: bool = True) -> str:
    """A `starting` job with a run folder (its queued and starting events stored); `run=False`: only queued."""
    run_dir = tmp_path / "runs" / job_id
    run_dir.mkdir(parents=True, exist_ok=True)
    config = {"webhook_config": webhooks, "webhook_reporting_interval": interval}
    with session_factory() as db:
        job = jobs.create(db, job_id=job_id, owner=LOCAL_ADMIN, env_name=None, config=config,
                          run_dir=str(run_dir), output_dir=str(tmp_path / "out"), num_processes=1)
        if run:
            jobs.transition(db, job.id, "starting")
        db.commit()
    return job_id


def write_events(run_dir: Path, *events, torn: str = "") -> None:
    with open(run_dir / "events.jsonl", "a") as handle:
        for event in events:
            handle.write(event.to_json() + "\n")
        handle.write(torn)


def stored_events(session_factory, job_id):
    with session_factory() as db:
        return job_events.since(db, job_id, 0, 1000)


def ingest(monitor, session_factory, job_id):
    with session_factory() as db:
        return monitor._ingest(db, jobs.get(db, job_id))


def job_row(session_factory, job_id: str) -> Job:
    with session_factory() as db:
        return jobs.get(db, job_id)


def give_dead_pid(session_factory, job_id: str) -> None:
    """Give the job the pid of a process that has exited (and a start time no reused pid can match)."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    with session_factory() as db:
        job = jobs.get(db, job_id)
        job.pid, job.pid_started_at = process.pid, 1.0
        db.commit()


def deliver(outbox) -> int:
    """One outbox pass, waiting for its senders to finish; returns how many deliveries it handed out."""
    async def one_pass() -> int:
        handed_out = await outbox.deliver_due()
        await outbox.settle()
        return handed_out

    return asyncio.run(one_pass())


def add_running_stand_in(session_factory, tmp_path: Path) -> str:
    """A `starting` job whose trainer is this test process (alive, so the monitor leaves it be)."""
    with session_factory() as db:
        job = jobs.create(db, job_id=jobs.new_id(), owner=LOCAL_ADMIN, env_name=None, config={},
                          run_dir=str(tmp_path / "run"), output_dir=str(tmp_path / "o"), num_processes=1)
        jobs.transition(db, job.id, "starting")
        job.pid, job.pid_started_at = os.getpid(), launcher.started_at(os.getpid())
        db.commit()
        return job.id
