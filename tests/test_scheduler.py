"""The scheduler's parts on real files and a real database: tailing events, judging how trainers ended,
migrations of the jobs tables (the webhook outbox: test_webhooks.py)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path

import pytest
from alembic.migration import MigrationContext
from sqlalchemy import BigInteger, text

from engine_helpers import make_spec, write_images, write_run_dir
from scheduler_support import add_job, give_dead_pid, ingest, job_row, stored_events, write_events
from tuneforge import runfolder
from tuneforge.db.engine import make_session_factory
from tuneforge.db.migrate import migrate
from tuneforge.db.models import Job, WebhookDelivery
from tuneforge.events import make
from tuneforge.scheduler.monitor import KILLED, LOST, LOST_BEFORE_LAUNCH, MAX_READ, OOM_KILLED, Monitor, _decide
from tuneforge.scheduler.outbox import Outbox
from tuneforge.services import jobs, steering
from tuneforge.services.notify import EventBus
from tuneforge.services.principal import LOCAL_ADMIN

pytestmark = pytest.mark.both_databases


def test_tailing_is_gap_free_and_resumes_after_restart(session_factory, tmp_path):
    job_id = add_job(session_factory, tmp_path)
    run_dir = tmp_path / "runs" / job_id
    outbox = Outbox(session_factory, b"k")
    progress = {"step": 1, "total_steps": 4, "epoch": 1, "total_epochs": 1, "loss": 0.5}
    write_events(run_dir, make("training.status", data={"status": "running"}),
           make("training.progress", progress=progress), torn='{"type": "training.pro')
    assert ingest(Monitor(session_factory, tmp_path, outbox), session_factory, job_id) == 2
    with session_factory() as db:
        job = jobs.get(db, job_id)
        assert job.state == "running" and job.progress["step"] == 1
    # a new monitor (a restarted server) picks up at the stored offset: the torn line completes, nothing repeats
    with open(run_dir / "events.jsonl", "a") as handle:
        handle.write('gress", "timestamp": "t", "progress": ' + json.dumps({**progress, "step": 2}) + "}\n")
    write_events(run_dir, make("log.message", message="hello"))
    assert ingest(Monitor(session_factory, tmp_path, outbox), session_factory, job_id) == 2
    events = stored_events(session_factory, job_id)
    assert [e["index"] for e in events] == list(range(len(events)))
    assert [e["type"] for e in events][-3:] == ["training.progress", "training.progress", "log.message"]
    assert events[-2]["progress"]["step"] == 2


def test_garbage_lines_are_kept_as_warnings(session_factory, tmp_path):
    job_id = add_job(session_factory, tmp_path)
    (tmp_path / "runs" / job_id / "events.jsonl").write_text("this is not an event\n")
    ingest(Monitor(session_factory, tmp_path, Outbox(session_factory, b"k")), session_factory, job_id)
    last = stored_events(session_factory, job_id)[-1]
    assert last["type"] == "log.message" and last["severity"] == "warning"


def test_cursor_migration_keeps_old_deliveries_and_events(bare_engine):
    engine = bare_engine
    migrate(engine, "0002")
    factory = make_session_factory(engine)
    with factory() as db:  # a job of the old schema, its queued event already fanned out
        db.execute(text("INSERT INTO jobs (id, state, owner_name, config, run_dir, output_dir, num_processes, "
                        "events_offset, next_index, startup, created_at) VALUES ('old', 'completed', 'admin', "
                        "'{}', '/r', '/o', 1, 0, 1, '{}', '2026-01-01 00:00:00')"))
        db.execute(text("INSERT INTO job_events (job_id, \"index\", type, severity, payload, created_at) VALUES "
                        "('old', 0, 'training.status', 'info', '{\"index\": 0}', '2026-01-01 00:00:00')"))
        db.execute(text("INSERT INTO webhook_deliveries (job_id, event_index, target, status, attempts, "
                        "next_attempt_at, created_at) "
                        "VALUES ('old', 0, 0, 'delivered', 1, '2026-01-01', '2026-01-01')"))
        db.commit()
    migrate(engine, "head")
    with factory() as db:
        assert db.scalar(text("SELECT webhook_index FROM jobs")) == 1, "old events are not sent again"
        assert Outbox(factory, b"k").fan_out(db) == 0
    migrate(engine, "0002", down=True)
    with factory() as db:
        assert db.scalar(text("SELECT count(*) FROM job_events")) == 1, "a downgrade keeps the events"


def _trainer_events(session_factory, job_id: str) -> list[dict]:
    return [e for e in stored_events(session_factory, job_id) if e.get("data", {}).get("source") != "server"]


def test_a_trainer_that_ended_while_no_server_ran_is_judged_by_what_it_wrote(session_factory, tmp_path):
    job_id = add_job(session_factory, tmp_path)
    progress = {"step": 4, "total_steps": 4, "epoch": 1, "total_epochs": 1}
    write_events(tmp_path / "runs" / job_id, make("training.progress", progress=progress),
           make("training.status", data={"status": "completed"}))
    give_dead_pid(session_factory, job_id)
    Monitor(session_factory, tmp_path, Outbox(session_factory, b"k")).adopt_all()
    job = job_row(session_factory, job_id)
    assert (job.state, job.reason) == ("completed", None)
    assert [e["type"] for e in _trainer_events(session_factory, job_id)] == ["training.progress", "training.status"]
    assert job.events_offset == (tmp_path / "runs" / job_id / "events.jsonl").stat().st_size


def test_a_job_left_starting_without_a_pid_fails_and_any_trainer_of_it_is_told_to_cancel(session_factory, tmp_path):
    job_id = add_job(session_factory, tmp_path)  # `starting` committed, the server gone before the pid was stored
    Monitor(session_factory, tmp_path, Outbox(session_factory, b"k")).adopt_all()
    job = job_row(session_factory, job_id)
    assert (job.state, job.reason) == ("failed", LOST_BEFORE_LAUNCH)
    assert (tmp_path / "runs" / job_id / "control" / "cancel").is_file()


def test_an_over_long_event_line_is_stored_truncated_and_skipped(session_factory, tmp_path):
    job_id = add_job(session_factory, tmp_path)
    run_dir = tmp_path / "runs" / job_id
    monitor = Monitor(session_factory, tmp_path, Outbox(session_factory, b"k"))
    huge = make("log.message", message="x" * MAX_READ)
    write_events(run_dir, torn=huge.to_json())
    assert ingest(monitor, session_factory, job_id) == 0, "not skipped while it is still being written"
    write_events(run_dir, torn="\n")
    write_events(run_dir, make("training.status", data={"status": "completed"}))
    give_dead_pid(session_factory, job_id)
    monitor.tick()  # skips the long line, then drains the rest as the trainer has exited
    job = job_row(session_factory, job_id)
    assert job.state == "completed", job.reason
    assert job.events_offset == (run_dir / "events.jsonl").stat().st_size
    warning, status = _trainer_events(session_factory, job_id)
    assert warning["severity"] == "warning" and "too long" in warning["title"]
    assert len(warning["message"]) == 2000 and warning["message"].startswith('{"type":"log.message"')
    assert status["data"]["status"] == "completed"


@pytest.mark.parametrize(("exit_code", "requested", "last_status", "last_error", "launched", "expected"), [
    (None, None, "completed", None, True, ("completed", None)),
    (None, None, "failed", "CUDA error", True, ("failed", "CUDA error")),
    (None, "cancel", "running", None, True, ("cancelled", "cancelled by request")),
    (None, None, "running", None, True, ("failed", LOST)),
    (None, None, None, None, False, ("failed", LOST_BEFORE_LAUNCH)),
    (runfolder.COMPLETED, None, None, None, True, ("completed", None)),
    (runfolder.STOPPED, "stop", None, None, True, ("stopped", "stopped by request")),
    (runfolder.CANCELLED, "cancel", None, None, True, ("cancelled", "cancelled by request")),
    (-signal.SIGTERM, "cancel", None, None, True, ("cancelled", "cancelled by request")),
    (-signal.SIGKILL, None, None, None, True, ("failed", KILLED)),
    (-40, None, None, None, True, ("failed", "the trainer was killed by signal 40")),  # a real-time signal
    (runfolder.OUT_OF_MEMORY, None, None, "CUDA out of memory", True, ("failed", "out_of_memory: CUDA out of memory")),
    (77, None, None, None, True, ("failed", "exit code 77")),
])
def test_decide(exit_code, requested, last_status, last_error, launched, expected):
    assert _decide(exit_code, requested, last_status, last_error, launched=launched) == expected


def test_a_trainer_killed_by_the_out_of_memory_killer_says_so(session_factory, tmp_path, memory_cgroup,
                                                             tiny_pixart):
    """A real out-of-memory kill: the trainer the monitor launched is moved into a cgroup limited to 32 MiB and
    dies loading torch; its job's reason says what happened, not just "SIGKILL"."""
    run_dir = tmp_path / "runs" / "job1"
    write_run_dir(run_dir.parent, make_spec(tmp_path, tiny_pixart, write_images(tmp_path / "data", 1)))
    (run_dir.parent / "run").rename(run_dir)
    with session_factory() as db:
        jobs.create(db, job_id="job1", owner=LOCAL_ADMIN, env_name=None, config={}, run_dir=str(run_dir),
                    output_dir=str(tmp_path / "out"), num_processes=1)
        db.commit()
    monitor = Monitor(session_factory, tmp_path, Outbox(session_factory, b"k"))
    monitor.tick()
    process = monitor.children["job1"]
    (memory_cgroup / "cgroup.procs").write_text(str(process.pid))
    assert process.wait(timeout=120) == -signal.SIGKILL
    monitor.tick()
    job = job_row(session_factory, "job1")
    assert (job.state, job.reason) == ("failed", OOM_KILLED)


@pytest.fixture
def memory_cgroup():
    """A cgroup (v2, else v1) whose processes may use 32 MiB; needs root, as on the CI machine."""
    v2 = Path("/sys/fs/cgroup")
    group, limits = (v2 / f"tuneforge-oom-{os.getpid()}", {"memory.max": 32 << 20, "memory.swap.max": 0})
    if not (v2 / "cgroup.controllers").is_file():
        group = v2 / "memory" / f"tuneforge-oom-{os.getpid()}"
        limits = {"memory.limit_in_bytes": 32 << 20, "memory.memsw.limit_in_bytes": 32 << 20}
    try:
        group.mkdir()
        for name, value in limits.items():
            if (group / name).exists():
                (group / name).write_text(str(value))
    except OSError as exc:
        pytest.skip(f"cannot make a memory-limited cgroup here (needs root): {exc}")
    yield group
    for _ in range(50):
        try:
            group.rmdir()
            return
        except OSError:
            time.sleep(0.1)


def test_a_live_job_with_a_broken_webhook_entry_is_stored_and_finished(session_factory, tmp_path):
    broken = [{"callback_url": "ftp://nope", "auth_token": "tok-of-a-broken-entry"}]
    job_id = add_job(session_factory, tmp_path, webhooks=broken)
    write_events(tmp_path / "runs" / job_id, make("log.message", message="hook token tok-of-a-broken-entry"),
           make("training.status", data={"status": "completed"}))
    give_dead_pid(session_factory, job_id)
    outbox = Outbox(session_factory, b"k")
    assert Monitor(session_factory, tmp_path, outbox).tick()
    assert job_row(session_factory, job_id).state == "completed"
    assert len(_trainer_events(session_factory, job_id)) == 2
    assert "tok-of-a-broken-entry" not in json.dumps(stored_events(session_factory, job_id)), "still redacted"
    with session_factory() as db:
        assert outbox.fan_out(db) == len(stored_events(session_factory, job_id))
        assert db.query(WebhookDelivery).count() == 0


def test_cancelling_a_queued_job_the_monitor_just_launched_cancels_its_trainer(session_factory, tmp_path):
    run_dir = tmp_path / "runs" / "job1"
    with session_factory() as db:
        jobs.create(db, job_id="job1", owner=LOCAL_ADMIN, env_name=None, config={}, run_dir=str(run_dir),
                    output_dir=str(tmp_path / "out"), num_processes=1)
        db.commit()
    with session_factory() as db:
        seen = jobs.get(db, "job1")  # what the cancel request saw: queued
        with session_factory() as monitor_db:  # meanwhile the monitor launches it
            jobs.transition(monitor_db, "job1", "starting")
            monitor_db.commit()
        action = steering.cancel(db, seen, LOCAL_ADMIN)
    job = job_row(session_factory, "job1")
    assert (action.status, job.state, job.requested) == ("starting", "starting", "cancel"), \
        "not marked cancelled while its trainer runs on unwatched"
    assert (run_dir / "control" / "cancel").is_file()


def test_events_offset_holds_64_bits_and_migration_0004_keeps_events(bare_engine):
    engine = bare_engine
    migrate(engine, "0003")
    with engine.begin() as connection:  # a job of that schema (the ORM knows only the newest one) and its events
        connection.execute(text("INSERT INTO jobs (id, state, owner_name, config, run_dir, output_dir, "
                                "num_processes, events_offset, next_index, webhook_index, startup, created_at) "
                                "VALUES ('old', 'running', 'admin', '{}', '/r', '/o', 1, 0, 2, 0, '{}', :t)"),
                           {"t": "2026-01-01 00:00:00"})
        for index in (0, 1):
            connection.execute(text("INSERT INTO job_events (job_id, \"index\", type, severity, payload, created_at) "
                                    "VALUES ('old', :i, 'training.status', 'info', '{}', '2026-01-01')"), {"i": index})
    migrate(engine, "0004")
    with engine.connect() as connection:
        assert MigrationContext.configure(connection).get_current_revision() == "0004"
    assert isinstance(Job.__table__.c.events_offset.type, BigInteger), "32 bits on PostgreSQL otherwise"

    def offset(value: int | None = None) -> int:
        with engine.begin() as connection:
            if value is not None:
                connection.execute(text("UPDATE jobs SET events_offset = :v"), {"v": value})
            return connection.execute(text("SELECT events_offset FROM jobs")).scalar_one()

    assert offset(5 * 2**30) == 5 * 2**30
    if engine.dialect.name == "postgresql":  # 0003's INTEGER cannot hold it there: the downgrade says so, not truncates
        with pytest.raises(RuntimeError, match="past 2 GiB"):
            migrate(engine, "0003", down=True)
        offset(10)
    migrate(engine, "0003", down=True)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM job_events")).scalar() == 2, "events survive"


def test_migration_0006_lets_several_jobs_be_active_and_keeps_jobs_and_events(bare_engine, tmp_path):
    engine = bare_engine
    migrate(engine, "0005")
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO jobs (id, state, active_slot, owner_name, config, run_dir, output_dir, "
                                "num_processes, events_offset, next_index, webhook_index, startup, created_at) "
                                "VALUES ('old', 'running', 1, 'admin', '{}', '/r', '/o', 1, 0, 1, 0, '{}', :t)"),
                           {"t": "2026-01-01 00:00:00"})
        connection.execute(text("INSERT INTO job_events (job_id, \"index\", type, severity, payload, created_at) "
                                "VALUES ('old', 0, 'training.status', 'info', '{}', '2026-01-01')"))
    migrate(engine, "head")
    factory = make_session_factory(engine)
    with factory() as db:
        assert db.scalar(text("SELECT count(*) FROM job_events")) == 1, "rebuilding jobs deleted no events"
        assert (jobs.get(db, "old").priority, jobs.get(db, "old").gpu_count) == (0, 0)
    first, second = (add_job(factory, tmp_path, job_id=name, run=False) for name in ("a1", "a2"))
    assert [job_row(factory, j).state for j in (first, second)] == ["queued", "queued"], "no single active slot"
    migrate(engine, "0005", down=True)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM job_events")).scalar() >= 1
        slots = connection.execute(text("SELECT id FROM jobs WHERE active_slot = 1")).scalars().all()
        assert len(slots) == 1, "one active job keeps the old single slot"


def test_a_publish_between_a_listeners_read_and_its_wait_is_not_missed():
    async def scenario() -> float:
        bus = EventBus()
        seen = bus.version  # the listener notes the version, then reads the database...
        await bus.publish()  # ...while the monitor stores something and publishes
        started = time.monotonic()
        await bus.wait(5.0, seen)
        return time.monotonic() - started

    assert asyncio.run(scenario()) < 1.0
