"""The scheduler's parts on real files and a real database: tailing events, webhook outbox delivery."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from tests.webhook_receiver import Receiver
from tuneforge.api.app import SERVER_PRINCIPAL
from tuneforge.db.engine import make_engine, make_session_factory
from tuneforge.db.migrate import migrate, upgrade_to_head
from tuneforge.db.models import WebhookDelivery
from tuneforge.events import make
from tuneforge.scheduler.monitor import Monitor
from tuneforge.scheduler.outbox import Outbox
from tuneforge.services import job_events, jobs


@pytest.fixture
def session_factory(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'state.db'}")
    upgrade_to_head(engine)
    yield make_session_factory(engine)
    engine.dispose()


def _job(session_factory, tmp_path: Path, webhooks=None, interval=None) -> str:
    run_dir = tmp_path / "runs" / "job1"
    run_dir.mkdir(parents=True)
    config = {"webhook_config": webhooks, "webhook_reporting_interval": interval}
    with session_factory() as db:
        job = jobs.create(db, job_id="job1", owner=SERVER_PRINCIPAL, env_name=None, config=config,
                          run_dir=str(run_dir), output_dir=str(tmp_path / "out"), num_processes=1)
        jobs.transition(db, job.id, "starting")
        db.commit()
    return "job1"


def _write(run_dir: Path, *events, torn: str = "") -> None:
    with open(run_dir / "events.jsonl", "a") as handle:
        for event in events:
            handle.write(event.to_json() + "\n")
        handle.write(torn)


def _stored(session_factory, job_id):
    with session_factory() as db:
        return job_events.since(db, job_id, 0, 1000)


def _ingest(monitor, session_factory, job_id):
    with session_factory() as db:
        return monitor._ingest(db, jobs.get(db, job_id))


def test_tailing_is_gap_free_and_resumes_after_restart(session_factory, tmp_path):
    job_id = _job(session_factory, tmp_path)
    run_dir = tmp_path / "runs" / job_id
    outbox = Outbox(session_factory, tmp_path, b"k")
    progress = {"step": 1, "total_steps": 4, "epoch": 1, "total_epochs": 1, "loss": 0.5}
    _write(run_dir, make("training.status", data={"status": "running"}),
           make("training.progress", progress=progress), torn='{"type": "training.pro')
    assert _ingest(Monitor(session_factory, tmp_path, outbox), session_factory, job_id) == 2
    with session_factory() as db:
        job = jobs.get(db, job_id)
        assert job.state == "running" and job.progress["step"] == 1
    # a new monitor (a restarted server) picks up at the stored offset: the torn line completes, nothing repeats
    with open(run_dir / "events.jsonl", "a") as handle:
        handle.write('gress", "timestamp": "t", "progress": ' + json.dumps({**progress, "step": 2}) + "}\n")
    _write(run_dir, make("log.message", message="hello"))
    assert _ingest(Monitor(session_factory, tmp_path, outbox), session_factory, job_id) == 2
    events = _stored(session_factory, job_id)
    assert [e["index"] for e in events] == list(range(len(events)))
    assert [e["type"] for e in events][-3:] == ["training.progress", "training.progress", "log.message"]
    assert events[-2]["progress"]["step"] == 2


def test_garbage_lines_are_kept_as_warnings(session_factory, tmp_path):
    job_id = _job(session_factory, tmp_path)
    (tmp_path / "runs" / job_id / "events.jsonl").write_text("this is not an event\n")
    _ingest(Monitor(session_factory, tmp_path, Outbox(session_factory, tmp_path, b"k")), session_factory, job_id)
    last = _stored(session_factory, job_id)[-1]
    assert last["type"] == "log.message" and last["severity"] == "warning"


def test_outbox_retries_signs_throttles_and_redacts(session_factory, tmp_path):
    with Receiver(fail_first=1) as receiver:
        hooks = [{"webhook_type": "raw", "callback_url": receiver.url, "log_level": "info",
                  "auth_token": "sekrit-token"}]
        job_id = _job(session_factory, tmp_path, webhooks=hooks, interval=3600)
        run_dir = tmp_path / "runs" / job_id
        outbox = Outbox(session_factory, tmp_path, b"k")
        progress = {"step": 1, "total_steps": 4, "epoch": 1, "total_epochs": 1}
        _write(run_dir, make("training.progress", progress=progress), make("training.progress", progress=progress),
               make("log.message", message="debug noise", severity="debug"),
               make("training.checkpoint", message="token sekrit-token leaked"))
        _ingest(Monitor(session_factory, tmp_path, outbox), session_factory, job_id)
        with session_factory() as db:
            assert outbox.fan_out(db) == 7, "the server's queued, starting, running and the trainer's four"
            rows = db.query(WebhookDelivery).all()
            assert len(rows) == 5, "second progress throttled, debug filtered"
            assert outbox.fan_out(db) == 0, "the cursor moved past them"
            for row in rows:  # make retries due now
                row.next_attempt_at = row.created_at
            db.commit()
        for _ in range(3):
            asyncio.run(outbox.deliver_due())
            with session_factory() as db:
                for row in db.query(WebhookDelivery).filter_by(status="pending"):
                    row.next_attempt_at = row.created_at
                db.commit()
        accepted = receiver.accepted()
        assert len({d.event_id for d in accepted}) == len(accepted) == 5, "each event accepted exactly once"
        assert any(d.attempt == 2 for d in accepted), "the injected failure was retried"
        assert all(d.signed_with(b"sekrit-token") for d in accepted)
        assert all(d.headers.get("Authorization") == "Bearer sekrit-token" for d in accepted)
        assert "sekrit-token" not in json.dumps(_stored(session_factory, job_id))


def test_unreachable_receiver_backs_off(session_factory, tmp_path):
    hooks = [{"webhook_type": "raw", "callback_url": "http://127.0.0.1:9/nothing-listens", "log_level": "info"}]
    job_id = _job(session_factory, tmp_path, webhooks=hooks)
    outbox = Outbox(session_factory, tmp_path, b"k")
    _write(tmp_path / "runs" / job_id, make("training.checkpoint", message="saved"))
    _ingest(Monitor(session_factory, tmp_path, outbox), session_factory, job_id)
    started = time.monotonic()
    assert asyncio.run(outbox.deliver_due()) == 3, "queued, starting, checkpoint"
    assert time.monotonic() - started < 5
    with session_factory() as db:
        for row in db.query(WebhookDelivery):
            assert row.status == "pending" and row.attempts == 1 and "Connect" in row.last_error
            assert row.next_attempt_at > row.created_at
    assert asyncio.run(outbox.deliver_due()) == 0, "not due again until the backoff passes"


def test_cursor_migration_keeps_old_deliveries_and_events(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'state.db'}")
    migrate(engine, "0002")
    factory = make_session_factory(engine)
    with factory() as db:  # a job of the old schema, its queued event already fanned out
        db.execute(text("INSERT INTO jobs (id, state, owner_name, config, run_dir, output_dir, num_processes, "
                        "events_offset, next_index, startup, created_at) VALUES ('old', 'completed', 'admin', "
                        "'{}', '/r', '/o', 1, 0, 1, '{}', '2026-01-01 00:00:00')"))
        db.execute(text("INSERT INTO job_events (job_id, \"index\", type, severity, payload, created_at) VALUES "
                        "('old', 0, 'training.status', 'info', '{\"index\": 0}', '2026-01-01 00:00:00')"))
        db.execute(text("INSERT INTO webhook_deliveries (job_id, event_index, target, status, attempts, "
                        "next_attempt_at, created_at) VALUES ('old', 0, 0, 'delivered', 1, '2026-01-01', '2026-01-01')"))
        db.commit()
    migrate(engine, "head")
    with factory() as db:
        assert db.scalar(text("SELECT webhook_index FROM jobs")) == 1, "old events are not sent again"
        assert Outbox(factory, tmp_path, b"k").fan_out(db) == 0
    migrate(engine, "0002", down=True)
    with factory() as db:
        assert db.scalar(text("SELECT count(*) FROM job_events")) == 1, "a downgrade keeps the events"
    engine.dispose()


def test_one_job_with_a_broken_webhook_config_holds_up_no_other(session_factory, tmp_path):
    with session_factory() as db:  # an old job whose stored webhook entry no longer validates
        jobs.create(db, job_id="job0", owner=SERVER_PRINCIPAL, env_name=None,
                    config={"webhook_config": [{"callback_url": "ftp://nope"}]}, run_dir=str(tmp_path),
                    output_dir=str(tmp_path / "out0"), num_processes=1)
        jobs.transition(db, "job0", "failed", reason="old")
        db.commit()
    good = [{"webhook_type": "raw", "callback_url": "http://127.0.0.1:9/x", "log_level": "info"}]
    job_id = _job(session_factory, tmp_path, webhooks=good)
    outbox = Outbox(session_factory, tmp_path, b"k")
    with session_factory() as db:
        assert outbox.fan_out(db) == 4, "job0: queued, failed; job1: queued, starting"
        assert {row.job_id for row in db.query(WebhookDelivery)} == {job_id}
        assert outbox.fan_out(db) == 0, "the broken job's cursor moved on too"


def test_warnings_pass_the_progress_throttle(session_factory, tmp_path):
    hooks = [{"webhook_type": "raw", "callback_url": "http://127.0.0.1:9/x", "log_level": "info"}]
    job_id = _job(session_factory, tmp_path, webhooks=hooks, interval=3600)
    progress = {"step": 1, "total_steps": 4, "epoch": 1, "total_epochs": 1}
    _write(tmp_path / "runs" / job_id, make("training.progress", progress=progress),
           make("log.message", message="hook exited with code 1", severity="warning"),
           make("log.message", message="chatter"), make("log.message", message="more chatter"))
    outbox = Outbox(session_factory, tmp_path, b"k")
    _ingest(Monitor(session_factory, tmp_path, outbox), session_factory, job_id)
    with session_factory() as db:
        outbox.fan_out(db)
        sent = [job_events.get(db, job_id, row.event_index) for row in db.query(WebhookDelivery)]
    messages = [event["message"] for event in sent if event["type"] == "log.message"]
    assert messages == ["hook exited with code 1", "chatter"], "warnings always; plain lines once per interval"
