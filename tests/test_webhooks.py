"""Webhooks through the outbox, to real receivers: retried, signed with a timestamp (Standard Webhooks), throttled,
isolated per receiver, and sent only where the outbound policy allows."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from starlette.testclient import TestClient
from tests.webhook_receiver import Receiver

from configs_support import validate_fields
from scheduler_support import LOOPBACK, add_job, deliver, ingest, stored_events, write_events
from tuneforge.api.app import create_app
from tuneforge.db.models import WebhookDelivery
from tuneforge.events import make
from tuneforge.options.registry import WebhookTarget
from tuneforge.scheduler import webhook_http
from tuneforge.scheduler.monitor import Monitor
from tuneforge.scheduler.outbox import Outbox
from tuneforge.services import job_events, jobs
from tuneforge.services.outbound import OutboundPolicy
from tuneforge.services.principal import LOCAL_ADMIN
from tuneforge.settings import Settings

pytestmark = pytest.mark.both_databases


def test_outbox_retries_signs_throttles_and_redacts(session_factory, tmp_path):
    with Receiver(fail_first=1) as receiver:
        hooks = [{"webhook_type": "raw", "callback_url": receiver.url, "log_level": "info",
                  "auth_token": "sekrit-token"}]
        job_id = add_job(session_factory, tmp_path, webhooks=hooks, interval=3600)
        run_dir = tmp_path / "runs" / job_id
        outbox = Outbox(session_factory, b"k", LOOPBACK)
        progress = {"step": 1, "total_steps": 4, "epoch": 1, "total_epochs": 1}
        write_events(run_dir, make("training.progress", progress=progress),
                     make("training.progress", progress=progress),
                     make("log.message", message="debug noise", severity="debug"),
                     make("training.checkpoint", message="token sekrit-token leaked"))
        ingest(Monitor(session_factory, tmp_path, outbox), session_factory, job_id)
        with session_factory() as db:
            assert outbox.fan_out(db) == 7, "the server's queued, starting, running and the trainer's four"
            rows = db.query(WebhookDelivery).all()
            assert len(rows) == 5, "second progress throttled, debug filtered"
            assert outbox.fan_out(db) == 0, "the cursor moved past them"
            for row in rows:  # make retries due now
                row.next_attempt_at = row.created_at
            db.commit()
        for _ in range(3):
            deliver(outbox)
            with session_factory() as db:
                for row in db.query(WebhookDelivery).filter_by(status="pending"):
                    row.next_attempt_at = row.created_at
                db.commit()
        accepted = receiver.accepted()
        assert len({d.event_id for d in accepted}) == len(accepted) == 5, "each event accepted exactly once"
        assert any(d.attempt == 2 for d in accepted), "the injected failure was retried"
        assert all(d.signed_with(b"sekrit-token") for d in accepted)
        assert all(d.headers.get("Authorization") == "Bearer sekrit-token" for d in accepted)
        assert "sekrit-token" not in json.dumps(stored_events(session_factory, job_id))


def test_unreachable_receiver_backs_off(session_factory, tmp_path):
    hooks = [{"webhook_type": "raw", "callback_url": "http://127.0.0.1:9/nothing-listens", "log_level": "info"}]
    job_id = add_job(session_factory, tmp_path, webhooks=hooks)
    outbox = Outbox(session_factory, b"k", LOOPBACK)
    write_events(tmp_path / "runs" / job_id, make("training.checkpoint", message="saved"))
    ingest(Monitor(session_factory, tmp_path, outbox), session_factory, job_id)
    assert deliver(outbox) == 3, "queued, starting, checkpoint"
    with session_factory() as db:
        first, *rest = db.query(WebhookDelivery).order_by(WebhookDelivery.id)
        assert first.status == "pending" and first.attempts == 1 and "Connect" in first.last_error
        assert first.next_attempt_at > first.created_at
        assert all(row.attempts == 0 and row.next_attempt_at == first.next_attempt_at for row in rest), \
            "a dead receiver gets one attempt per backoff, not one per event"
    assert deliver(outbox) == 0, "not due again until the backoff passes"


def test_one_job_with_a_broken_webhook_config_holds_up_no_other(session_factory, tmp_path):
    with session_factory() as db:  # an old job whose stored webhook entry no longer validates
        jobs.create(db, job_id="job0", owner=LOCAL_ADMIN, env_name=None,
                    config={"webhook_config": [{"callback_url": "ftp://nope"}]}, run_dir=str(tmp_path),
                    output_dir=str(tmp_path / "out0"), num_processes=1)
        jobs.transition(db, "job0", "failed", reason="old")
        db.commit()
    good = [{"webhook_type": "raw", "callback_url": "http://127.0.0.1:9/x", "log_level": "info"}]
    job_id = add_job(session_factory, tmp_path, webhooks=good)
    outbox = Outbox(session_factory, b"k", LOOPBACK)
    with session_factory() as db:
        assert outbox.fan_out(db) == 4, "job0: queued, failed; job1: queued, starting"
        assert {row.job_id for row in db.query(WebhookDelivery)} == {job_id}
        assert outbox.fan_out(db) == 0, "the broken job's cursor moved on too"


def test_warnings_pass_the_progress_throttle(session_factory, tmp_path):
    hooks = [{"webhook_type": "raw", "callback_url": "http://127.0.0.1:9/x", "log_level": "info"}]
    job_id = add_job(session_factory, tmp_path, webhooks=hooks, interval=3600)
    progress = {"step": 1, "total_steps": 4, "epoch": 1, "total_epochs": 1}
    write_events(tmp_path / "runs" / job_id, make("training.progress", progress=progress),
           make("log.message", message="hook exited with code 1", severity="warning"),
           make("log.message", message="chatter"), make("log.message", message="more chatter"))
    outbox = Outbox(session_factory, b"k", LOOPBACK)
    ingest(Monitor(session_factory, tmp_path, outbox), session_factory, job_id)
    with session_factory() as db:
        outbox.fan_out(db)
        sent = [job_events.get(db, job_id, row.event_index) for row in db.query(WebhookDelivery)]
    messages = [event["message"] for event in sent if event["type"] == "log.message"]
    assert messages == ["hook exited with code 1", "chatter"], "warnings always; plain lines once per interval"


def test_a_job_without_webhooks_moves_its_cursor_in_one_pass(session_factory, tmp_path):
    job_id = add_job(session_factory, tmp_path)
    write_events(tmp_path / "runs" / job_id, *[make("log.message", message=f"line {n}") for n in range(1200)])
    ingest(Monitor(session_factory, tmp_path, Outbox(session_factory, b"k", LOOPBACK)), session_factory, job_id)
    with session_factory() as db:
        assert Outbox(session_factory, b"k", LOOPBACK).fan_out(db) == 1202, "queued, starting and 1200 lines"
        job = jobs.get(db, job_id)
        assert job.webhook_index == job.next_index == 1202


def test_urls_httpx_refuses_are_failed_attempts_not_a_failed_pass(session_factory, tmp_path):
    with Receiver() as receiver:
        hooks = [{"webhook_type": "raw", "callback_url": url, "log_level": "info"}
                 for url in ("http://[::1/x", "http://127.0.0.1:99999/x", receiver.url)]
        job_id = add_job(session_factory, tmp_path, webhooks=hooks)
        outbox = Outbox(session_factory, b"k", LOOPBACK)
        assert deliver(outbox) == 6, "queued and starting, to three targets"
        assert len(receiver.accepted()) == 2
    with session_factory() as db:
        tried = db.query(WebhookDelivery).filter(WebhookDelivery.target < 2, WebhookDelivery.attempts == 1).all()
        assert len(tried) == 2 and all(row.status == "pending" and row.job_id == job_id for row in tried)
        assert {row.last_error.split(":")[0] for row in tried} == {"InvalidURL", "OverflowError"}, \
            [row.last_error for row in tried]


def test_a_slow_receiver_delays_only_its_own_deliveries(session_factory, tmp_path):
    release = threading.Event()
    with Receiver(hold=release) as slow, Receiver() as healthy:
        hooks = [{"callback_url": slow.url}, {"callback_url": healthy.url}]
        job_id = add_job(session_factory, tmp_path, webhooks=hooks)
        checkpoints = [make("training.checkpoint", message=f"saved {n}") for n in range(30)]
        write_events(tmp_path / "runs" / job_id, *checkpoints)
        outbox = Outbox(session_factory, b"k", LOOPBACK)
        ingest(Monitor(session_factory, tmp_path, outbox), session_factory, job_id)

        async def scenario() -> tuple[int, int]:
            await outbox.deliver_due()
            for _ in range(400):  # the healthy receiver gets everything while the slow one still holds its first
                if len(healthy.accepted()) == 32:
                    break
                await asyncio.sleep(0.025)
            seen = len(healthy.accepted()), len(slow.deliveries)
            release.set()
            await outbox.settle()
            return seen

        assert asyncio.run(scenario()) == (32, 0), "queued, starting and 30 checkpoints, none held up"
        assert len(slow.accepted()) == 32, "and the slow one gets all of its own, in order, once it answers"
        assert [d.event["index"] for d in slow.accepted()] == list(range(32))


def test_a_delivery_is_signed_with_its_time_so_a_captured_one_cannot_be_replayed_later(session_factory, tmp_path):
    with Receiver() as receiver:
        job_id = add_job(session_factory, tmp_path, webhooks=[{"callback_url": receiver.url}])
        deliver(Outbox(session_factory, b"server-key", LOOPBACK))
        delivery = receiver.accepted()[0]
    assert delivery.signed_with(b"server-key") and not delivery.signed_with(b"another-key")
    assert delivery.headers["webhook-id"] == f"{job_id}:0"
    later = str(int(delivery.headers["webhook-timestamp"]) + 600)
    assert not delivery.signed_with(b"server-key", {**delivery.headers, "webhook-timestamp": later}), \
        "the timestamp is signed: it cannot be moved forward"
    event = json.loads(delivery.body)
    target = WebhookTarget(callback_url=receiver.url)
    body, headers = webhook_http.render(target, event, b"server-key", 1, now=datetime.now(UTC) - timedelta(minutes=6))
    assert body == delivery.body and not delivery.signed_with(b"server-key", headers), "too old to be accepted"


def test_a_name_that_resolves_to_a_private_address_is_refused_at_delivery(session_factory, tmp_path):
    with Receiver() as receiver:  # `localhost` is a name: validation leaves it to the sender, which resolves it
        add_job(session_factory, tmp_path, webhooks=[{"callback_url": f"http://localhost:{receiver.port}/hook"}])
        assert deliver(Outbox(session_factory, b"k")) == 2
        assert receiver.deliveries == []
    with session_factory() as db:
        rows = db.query(WebhookDelivery).order_by(WebhookDelivery.id).all()
    assert rows[0].status == "failed" and rows[0].attempts == 1, "a refusal is not retried"
    assert "loopback" in rows[0].last_error and "TUNEFORGE_WEBHOOK_ALLOWED_NETWORKS" in rows[0].last_error


def test_an_allowed_name_is_delivered_to_the_address_that_was_checked(session_factory, tmp_path):
    loopback_both = OutboundPolicy((ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128")))
    with Receiver() as receiver:
        add_job(session_factory, tmp_path, webhooks=[{"callback_url": f"http://localhost:{receiver.port}/hook"}])
        deliver(Outbox(session_factory, b"k", loopback_both))
        assert len(receiver.accepted()) == 2
        assert receiver.accepted()[0].headers["Host"] == f"localhost:{receiver.port}"


def test_redirects_are_not_followed(session_factory, tmp_path):
    with Receiver() as elsewhere, Receiver(redirect_to=elsewhere.url) as receiver:
        add_job(session_factory, tmp_path, webhooks=[{"callback_url": receiver.url}])
        deliver(Outbox(session_factory, b"k", LOOPBACK))
        assert elsewhere.deliveries == [] and len(receiver.deliveries) == 1
    with session_factory() as db:
        first = db.query(WebhookDelivery).order_by(WebhookDelivery.id).first()
    assert first.status == "pending" and "redirects are not followed" in first.last_error


@pytest.fixture
def default_policy_client(workspace: Path, tmp_path_factory):
    temporary = tmp_path_factory.getbasetemp()
    settings = Settings(workspace=workspace, read_roots=[temporary], write_roots=[temporary])
    with TestClient(create_app(settings), base_url="http://localhost:8001", client=("127.0.0.1", 5000)) as client:
        yield client


@pytest.mark.parametrize(("url", "kind"), [
    ("http://127.0.0.1:8001/api/training/stop", "loopback"), ("http://localhost/x", "loopback"),
    ("http://[::1]/x", "loopback"), ("http://169.254.169.254/latest/meta-data/", "link-local"),
    ("http://10.0.0.7/hook", "private"), ("http://[::ffff:192.168.1.1]/hook", "private"),
    ("http://0.0.0.0:8001/", "unspecified"),
])
def test_webhooks_aimed_at_the_server_or_its_network_are_refused_at_validate(default_policy_client, workspace,
                                                                            tiny_pixart, url, kind):
    hooks = json.dumps([{"webhook_type": "raw", "callback_url": "https://hooks.example.com/x"},
                        {"webhook_type": "raw", "callback_url": url}])
    response = default_policy_client.post("/api/training/validate",
                                          data=validate_fields(workspace, tiny_pixart, **{"--webhook_config": hooks}))
    assert response.status_code == 422, response.text
    problems = {e["field"]: e["message"] for e in response.json()["errors"]}
    assert list(problems) == ["--webhook_config[1].callback_url"]
    assert kind in problems["--webhook_config[1].callback_url"]
