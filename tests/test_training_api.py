"""Training routes without a running trainer: bad input, permissions, and empty states."""

from __future__ import annotations

import logging
import os
import sys

import pytest
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from e2e_support import as_multipart, prepare_workspace, run_fields
from tuneforge.api.app import create_app
from tuneforge.scheduler import launcher
from tuneforge.services import jobs
from tuneforge.services.principal import LOCAL_ADMIN

pytestmark = pytest.mark.both_databases

TOO_BIG = 2**31  # one past the largest event index the database holds (INTEGER on PostgreSQL)
STREAMS = ["/api/training/events/stream", "/api/training/stream"]
CONTROL_ROUTES = ["/api/training/stop", "/api/training/validation/run", "/api/training/checkpoint/run",
                  "/api/training/cancel"]


def test_idle_status_and_events(admin_client):
    status = admin_client.get("/api/training/status").json()
    assert status["status"] == "idle" and status["job_id"] is None
    page = admin_client.get("/api/training/events", params={"since_index": 0}).json()
    assert page == {"events": [], "job_id": None, "next_index": 0}
    assert admin_client.get("/api/training/checkpoints").json()["total"] == 0
    assert admin_client.post("/api/training/checkpoints").json()["total"] == 0


@pytest.mark.parametrize("route", CONTROL_ROUTES)
def test_control_without_active_job_is_400(admin_client, route):
    response = admin_client.post(route)
    assert response.status_code == 400
    assert response.json()["detail"] == "No active training job"


def test_unknown_job_ids_are_404(admin_client):
    for method, path in [("get", "/api/jobs/nope"), ("get", "/api/jobs/nope/events"),
                         ("post", "/api/jobs/nope/stop"), ("post", "/api/jobs/nope/cancel"),
                         ("post", "/api/jobs/nope/checkpoint"), ("post", "/api/jobs/nope/validation"),
                         ("get", "/api/training/events?job_id=nope")]:
        assert admin_client.request(method.upper(), path).status_code == 404, path
    assert admin_client.post("/api/training/cancel", data={"job_id": "nope"}).status_code == 404


def test_invalid_start_is_422_and_records_nothing(admin_client, workspace):
    response = admin_client.post("/api/training/start", files={
        "__active_tab__": (None, "model"), "--model_family": (None, "pixart_sigma"),
        "--learning_rate": (None, "fast"), "--max_train_steps": (None, "10"),
    })
    assert response.status_code == 422
    assert response.json()["valid"] is False and response.json()["message"] == "Validation Failed"
    fields = {e["field"] for e in response.json()["errors"]}
    assert "--learning_rate" in fields
    assert admin_client.get("/api/jobs").json()["count"] == 0
    assert not any((workspace / ".tuneforge" / "runs").iterdir())


def test_start_body_must_be_a_form_or_object(admin_client):
    assert admin_client.post("/api/training/start", content=b"[1,2]",
                             headers={"Content-Type": "application/json"}).status_code == 400
    assert admin_client.post("/api/training/start", content=b"{oops",
                             headers={"Content-Type": "application/json"}).status_code == 400
    assert admin_client.post("/api/training/start", content=b"x=1",
                             headers={"Content-Type": "text/plain"}).status_code == 400
    upload = admin_client.post("/api/training/start", files={"--output_dir": ("a.txt", b"data")})
    assert upload.status_code == 400


def test_viewer_cannot_start_or_steer(make_user):
    viewer = make_user("watcher", "viewer")
    assert viewer.post("/api/training/start", data={"--max_train_steps": "1"}).status_code == 403
    for route in CONTROL_ROUTES:
        assert viewer.post(route).status_code == 403, route
    assert viewer.get("/api/training/status").status_code == 200
    assert viewer.get("/api/jobs").status_code == 200


def test_webhook_secrets_are_masked_in_job_views():
    from tuneforge.services.steering import masked_webhook

    discord = {"webhook_type": "discord", "callback_url": "https://discord.com/api/webhooks/123/s3cret-token"}
    assert masked_webhook(discord)["callback_url"] == "https://discord.com/api/webhooks/***"
    raw = {"webhook_type": "raw", "callback_url": "https://example.com/hook", "auth_token": "t0ken"}
    assert masked_webhook(raw) == {**raw, "auth_token": "***"}


def _record_job(app, tmp_path, state: str, pid: int | None = None) -> str:
    """A job row as the scheduler leaves it, without a trainer (`pid`: a process that stands for one)."""
    with app.state.session_factory() as db:
        job = jobs.create(db, job_id=jobs.new_id(), owner=LOCAL_ADMIN, env_name=None, config={},
                          run_dir=str(tmp_path / "run"), output_dir=str(tmp_path / "out"), num_processes=1)
        if state != "queued":
            jobs.transition(db, job.id, "starting")
        if state in jobs.FINAL:
            jobs.transition(db, job.id, state, reason="over")
        if pid is not None:
            job.pid, job.pid_started_at = pid, launcher.started_at(pid)
        db.commit()
        return job.id


def test_event_indexes_beyond_the_database_range_are_422(app, admin_client, local_client, tmp_path):
    job_id = _record_job(app, tmp_path, "failed")
    for path in ["/api/training/events", f"/api/jobs/{job_id}/events", *STREAMS]:
        response = admin_client.get(path, params={"since_index": TOO_BIG, "job_id": job_id})
        assert response.status_code == 422, (path, response.text)
    key = {"X-API-Key": admin_client.headers["X-API-Key"]}
    with pytest.raises(WebSocketDisconnect) as refused:
        with local_client.websocket_connect(f"/api/training/events/stream?since_index={TOO_BIG}", headers=key):
            pass
    assert refused.value.code == 1008
    # A resuming client's Last-Event-ID is clamped, not refused: the stream of the finished job just ends.
    response = admin_client.get(STREAMS[0], params={"job_id": job_id}, headers={"Last-Event-ID": "9" * 20})
    assert response.status_code == 200 and response.text.endswith("event: end\ndata: {}\n\n"), response.text


def test_streams_of_an_unknown_job_are_refused_before_they_start(admin_client, local_client):
    for path in STREAMS:
        response = admin_client.get(path, params={"job_id": "nope"})
        assert response.status_code == 404 and response.json()["detail"] == "Job nope not found", path
    key = {"X-API-Key": admin_client.headers["X-API-Key"]}
    with pytest.raises(WebSocketDisconnect) as refused:
        with local_client.websocket_connect("/api/training/events/stream?job_id=nope", headers=key):
            pass
    assert (refused.value.code, refused.value.reason) == (1008, "Job nope not found")


def test_jobs_filter_by_known_states_only(app, admin_client, tmp_path):
    job_id = _record_job(app, tmp_path, "failed")
    assert admin_client.get("/api/jobs", params={"state": "bogus"}).status_code == 422
    assert [j["job_id"] for j in admin_client.get("/api/jobs", params={"state": "failed"}).json()["jobs"]] == [job_id]
    assert admin_client.get("/api/jobs", params={"state": "running"}).json()["count"] == 0


def test_start_says_so_when_the_trainer_could_not_be_launched(admin_client, workspace, tiny_pixart, tmp_path,
                                                              monkeypatch):
    prepare_workspace(workspace)
    monkeypatch.setattr(sys, "executable", str(tmp_path / "no-python-here"))  # the spawn itself fails
    response = admin_client.post("/api/training/start", files=as_multipart(run_fields(tiny_pixart, tmp_path / "out")))
    assert response.status_code == 202, response.text
    body = response.json()
    assert (body["status"], body["state"]) == ("failed", "failed"), body
    assert "could not start the trainer" in body["message"]


def test_server_env_that_cannot_start_keeps_serving_beside_a_readopted_trainer(settings, tmp_path, caplog):
    app = create_app(settings, start_env="tiny")
    running = _record_job(app, tmp_path, "running", pid=os.getpid())  # this test process stands for the trainer
    with caplog.at_level(logging.WARNING, logger="tuneforge"), TestClient(app, base_url="http://localhost:8001",
                                                                         client=("127.0.0.1", 50000)) as client:
        assert client.get("/health").status_code == 200
        assert [j["job_id"] for j in client.get("/api/jobs").json()["jobs"]] == [running]
    assert any("environment 'tiny' was not started" in r.getMessage() for r in caplog.records), caplog.text
