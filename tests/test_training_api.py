"""Training routes without a running trainer: bad input, permissions, and empty states."""

from __future__ import annotations

import pytest

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
