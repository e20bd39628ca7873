"""User management: CRUD, levels, deactivation, last-admin guard, bad input leaves the database as it was."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.both_databases

RESEARCHER = {"email": "researcher@example.com", "username": "researcher", "password": "their-password",
              "level_names": ["researcher"]}


def user_count(client) -> int:
    return client.get("/api/users").json()["count"]


def test_tutorial_create_user_with_admin_session(admin_client, anonymous):
    anonymous.post("/api/cloud/auth/login", json={"username": "admin", "password": "your-secure-password"})
    response = anonymous.post("/api/users", json=RESEARCHER)
    assert response.status_code == 201
    user = response.json()["user"]
    assert user["level_names"] == ["researcher"] and "job.submit" in user["permissions"]
    assert "password" not in response.text and "hash" not in response.text


def test_crud_round_trip(admin_client):
    user_id = admin_client.post("/api/users", json=RESEARCHER).json()["user"]["id"]
    assert admin_client.get(f"/api/users/{user_id}").json()["user"]["username"] == "researcher"
    patched = admin_client.patch(f"/api/users/{user_id}", json={"level_names": ["lead"], "email": "r2@example.com"})
    assert patched.json()["user"]["level_names"] == ["lead"]
    assert patched.json()["user"]["email"] == "r2@example.com"
    assert admin_client.delete(f"/api/users/{user_id}").status_code == 200
    assert admin_client.get(f"/api/users/{user_id}").status_code == 404


def test_bad_input_leaves_database_unchanged(admin_client):
    admin_client.post("/api/users", json=RESEARCHER)
    before = user_count(admin_client)
    cases = [
        (RESEARCHER, 409),
        ({**RESEARCHER, "username": "RESEARCHER", "email": "other@example.com"}, 409),
        ({**RESEARCHER, "username": "other", "email": "Researcher@Example.com"}, 409),
        ({**RESEARCHER, "username": "other", "level_names": ["superuser"]}, 422),
        ({**RESEARCHER, "username": "other", "level_names": "researcher"}, 422),
        ({**RESEARCHER, "username": "o" * 200}, 422),
        ({**RESEARCHER, "username": "other", "email": "x" * 300 + "@example.com"}, 422),
        ({**RESEARCHER, "username": "other", "password": 12345678}, 422),
        ({**RESEARCHER, "username": "../etc"}, 422),
    ]
    for body, status in cases:
        response = admin_client.post("/api/users", json=body)
        assert response.status_code == status, (body, response.text)
        assert isinstance(response.json()["detail"], str)
    assert admin_client.patch("/api/users/9999", json={"is_active": False}).status_code == 404
    assert admin_client.get("/api/users/not-a-number").status_code == 422
    assert user_count(admin_client) == before


def test_deactivation_ends_sessions_and_keys(admin_client, make_user):
    client = make_user("worker", "researcher")
    user_id = client.get("/api/auth/me").json()["user"]["id"]
    assert admin_client.patch(f"/api/users/{user_id}", json={"is_active": False}).status_code == 200
    assert client.get("/api/auth/me").status_code == 401
    client.headers.pop("X-API-Key")
    assert client.post("/api/auth/login", json={"username": "worker", "password": "worker-pass-123"}).status_code == 401


def test_last_admin_is_protected(admin_client):
    admin_id = admin_client.get("/api/auth/me").json()["user"]["id"]
    assert admin_client.delete(f"/api/users/{admin_id}").status_code == 409
    assert admin_client.patch(f"/api/users/{admin_id}", json={"is_active": False}).status_code == 409
    assert admin_client.patch(f"/api/users/{admin_id}", json={"level_names": ["viewer"]}).status_code == 409
    assert admin_client.get("/api/auth/me").status_code == 200


def test_levels_gate_user_management(make_user):
    for level in ("viewer", "researcher", "lead"):
        client = make_user(f"{level}x", level)
        response = client.post("/api/users", json={**RESEARCHER, "username": f"by{level}", "email": f"{level}@e.com"})
        assert response.status_code == 403 and "admin.users" in response.json()["detail"]
        assert client.get("/api/users").status_code == 403
