"""Every request is bounded: body sizes before any work (authentication included), JSON depth, and ids."""

from __future__ import annotations

import json

import httpx
import psutil
import pytest

from serverproc import start_server

HUGE_ID = 2**63


def test_a_declared_oversized_body_is_refused_before_authentication(anonymous):
    response = anonymous.post("/api/users", content=b"{" + b" " * (3 * 1024 * 1024) + b"}",
                              headers={"Content-Type": "application/json"})
    assert response.status_code == 413 and "TUNEFORGE_MAX_BODY_BYTES" in response.json()["detail"]
    assert anonymous.post("/api/users", content=b"{}", headers={"Content-Length": "12x",
                                                               "Content-Type": "application/json"}).status_code == 400


def test_a_streamed_body_is_cut_off_as_it_grows_and_memory_stays_flat(tmp_path):
    server = start_server(tmp_path / "workspace")
    try:
        process = psutil.Process(server.process.pid)
        before = process.memory_info().rss

        def chunks():
            for _ in range(300):  # 300 MiB, without a Content-Length
                yield b"A" * (1024 * 1024)

        with httpx.Client(base_url=server.url, timeout=60) as http:
            try:
                response = http.post("/api/cloud/auth/login", content=chunks(),
                                     headers={"Content-Type": "application/json"})
                status = response.status_code
            except httpx.TransportError:  # the server may close before the client has sent it all
                status = 413
            assert status == 413
            assert http.get("/health").status_code == 200
        assert process.memory_info().rss - before < 64 * 1024 * 1024
    finally:
        server.stop()


def test_deeply_nested_json_is_a_400_not_a_500(local_client):
    body = '{"--webhook_config":' + "[" * 100_000 + "]" * 100_000 + "}"
    response = local_client.post("/api/training/validate", content=body.encode(),
                                 headers={"Content-Type": "application/json"})
    assert response.status_code == 400 and "nested too deeply" in response.json()["detail"]


@pytest.mark.parametrize(("method", "path"), [
    ("GET", f"/api/users/{HUGE_ID}"), ("PATCH", f"/api/users/{HUGE_ID}"), ("DELETE", f"/api/users/{HUGE_ID}"),
    ("DELETE", f"/api/cloud/auth/api-keys/{HUGE_ID}"), ("DELETE", f"/api/auth/api-keys/{2**31}"),
])
def test_ids_beyond_any_row_are_404(admin_client, method, path):
    response = admin_client.request(method, path, json={} if method == "PATCH" else None)
    assert response.status_code == 404, response.text
    assert admin_client.get("/health").status_code == 200
    assert json.loads(response.text)["detail"]
