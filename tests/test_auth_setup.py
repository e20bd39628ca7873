"""First-run setup: local bootstrap admin, remote setup token, exactly one first admin."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from starlette.testclient import TestClient
from tests.conftest import ADMIN, LOCAL
from tests.serverproc import start_server

from tuneforge.services import setup

pytestmark = pytest.mark.both_databases


def test_setup_status_before_and_after(local_client):
    assert local_client.get("/api/cloud/auth/setup/status").json() == {
        "needs_setup": True, "has_admin": False, "user_count": 0, "registration_enabled": False,
    }
    response = local_client.post("/api/cloud/auth/setup/first-admin", json=ADMIN)
    assert response.status_code == 201
    assert response.json()["user"]["level_names"] == ["admin"]
    assert "tuneforge_session" in response.cookies
    assert local_client.get("/api/auth/setup/status").json()["needs_setup"] is False


def test_loopback_acts_as_admin_only_before_setup(local_client):
    me = local_client.get("/api/cloud/auth/me").json()
    assert me["auth_method"] == "local-bootstrap" and "admin.users" in me["permissions"]
    local_client.post("/api/cloud/auth/setup/first-admin", json=ADMIN)
    local_client.cookies.clear()
    assert local_client.get("/api/cloud/auth/me").status_code == 401
    assert local_client.get("/api/users").status_code == 401


def test_remote_before_setup_gets_401(remote_client):
    assert remote_client.get("/api/users").status_code == 401
    assert remote_client.get("/api/cloud/auth/me").status_code == 401
    response = remote_client.post("/api/cloud/auth/setup/first-admin", json=ADMIN)
    assert response.status_code == 401
    assert "setup token" in response.json()["detail"]
    assert remote_client.get("/api/cloud/auth/setup/status").json()["user_count"] == 0


def test_remote_setup_with_token(app, settings, remote_client):
    token = setup.ensure_setup_token(settings.state_dir)
    wrong = remote_client.post("/api/cloud/auth/setup/first-admin", json={**ADMIN, "setup_token": "nope"})
    assert wrong.status_code == 401
    response = remote_client.post("/api/cloud/auth/setup/first-admin", json={**ADMIN, "setup_token": token})
    assert response.status_code == 201
    assert not (settings.state_dir / setup.SETUP_TOKEN_FILE).exists(), "the token is one-time"


def test_relayed_loopback_is_not_local(app):
    """A reverse proxy on the same machine must not turn every remote visitor into the bootstrap admin."""
    with TestClient(app, base_url="http://training.example.com", client=LOCAL) as proxied_host:
        assert proxied_host.get("/api/users").status_code == 401
    with TestClient(app, base_url="http://localhost:8001", client=LOCAL) as client:
        assert client.get("/api/users", headers={"X-Forwarded-For": "198.51.100.4"}).status_code == 401
        assert client.get("/api/users").status_code == 200


def test_second_first_admin_conflicts(local_client):
    assert local_client.post("/api/cloud/auth/setup/first-admin", json=ADMIN).status_code == 201
    other = {"email": "b@example.com", "username": "second", "password": "another-good-pass"}
    response = local_client.post("/api/cloud/auth/setup/first-admin", json=other)
    assert response.status_code == 409
    assert local_client.get("/api/cloud/auth/setup/status").json()["user_count"] == 1


def test_concurrent_first_admin_creates_exactly_one(workspace):
    server = start_server(workspace)

    def attempt(n: int) -> int:
        body = {"email": f"a{n}@example.com", "username": f"admin{n}", "password": "your-secure-password"}
        with server.client() as client:
            return client.post("/api/cloud/auth/setup/first-admin", json=body).status_code

    try:
        with ThreadPoolExecutor(8) as pool:
            codes = list(pool.map(attempt, range(8)))
        assert codes.count(201) == 1 and codes.count(409) == 7, codes
        with server.client() as client:
            assert client.get("/api/auth/setup/status").json()["user_count"] == 1
    finally:
        server.stop()


def test_weak_and_malformed_setup_bodies(local_client):
    cases = [
        ({**ADMIN, "password": "short"}, 422),
        ({**ADMIN, "password": "password123"}, 422),
        ({**ADMIN, "username": "no spaces allowed"}, 422),
        ({**ADMIN, "username": "x" * 51}, 422),
        ({**ADMIN, "email": "not-an-email"}, 422),
        ({**ADMIN, "unexpected": 1}, 422),
        ({"username": "admin"}, 422),
    ]
    for body, status in cases:
        response = local_client.post("/api/cloud/auth/setup/first-admin", json=body)
        assert response.status_code == status, (body, response.text)
        assert response.json()["detail"] and "Traceback" not in response.text
    bad_json = local_client.post(
        "/api/cloud/auth/setup/first-admin", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert bad_json.status_code == 400 and "JSON" in bad_json.json()["detail"]
    assert local_client.get("/api/cloud/auth/setup/status").json()["user_count"] == 0

