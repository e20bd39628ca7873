"""Login, sessions, throttling and API keys."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import inspect, text, update
from starlette.testclient import TestClient
from tests.conftest import ADMIN

from tuneforge.api.app import create_app
from tuneforge.db.models import ApiKey
from tuneforge.settings import Settings

pytestmark = pytest.mark.both_databases


def login(client, username=ADMIN["username"], password=ADMIN["password"], **extra):
    return client.post("/api/cloud/auth/login", json={"username": username, "password": password, **extra})


def test_login_sets_secure_session_cookie(admin_client, anonymous):
    response = login(anonymous)
    assert response.status_code == 200
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie
    assert "password" not in response.text
    assert anonymous.get("/api/cloud/auth/me").json()["user"]["username"] == "admin"


def test_login_by_email_and_bad_credentials(admin_client, anonymous):
    assert anonymous.post("/api/auth/login", json={"email": ADMIN["email"], "password": ADMIN["password"]}).is_success
    anonymous.cookies.clear()
    assert login(anonymous, password="wrong-password").status_code == 401
    assert login(anonymous, username="nobody").status_code == 401
    missing = anonymous.post("/api/auth/login", json={"password": "x", "username": " "})
    assert missing.status_code == 422 and "username" in missing.json()["detail"]


def test_logout_ends_the_session(admin_client, anonymous):
    login(anonymous)
    token = anonymous.cookies.get("tuneforge_session")
    assert anonymous.post("/api/cloud/auth/logout").status_code == 200
    anonymous.cookies.set("tuneforge_session", token, domain="localhost.local")
    assert anonymous.get("/api/cloud/auth/me").status_code == 401


def test_forged_and_tampered_session_tokens_are_refused(app, admin_client, anonymous):
    login(anonymous)
    token = anonymous.cookies.get("tuneforge_session")
    user_id, epoch, expires, nonce, mac = token.split(".")
    later = str(int(expires) + 10**6)
    forged = [f"{user_id}.{epoch}.{later}.{nonce}.{mac}", f"{int(user_id) + 1}.{epoch}.{expires}.{nonce}.{mac}",
              f"{user_id}.{epoch}.{expires}.{nonce}.", "not-a-token", "1.0.99999999999.x." + "A" * 43, token + "x"]
    for value in forged:
        anonymous.cookies.clear()
        anonymous.cookies.set("tuneforge_session", value, domain="localhost.local")
        assert anonymous.get("/api/cloud/auth/me").status_code == 401, value
    anonymous.cookies.set("tuneforge_session", token, domain="localhost.local")
    assert anonymous.get("/api/cloud/auth/me").status_code == 200


def test_password_change_ends_sessions(admin_client, anonymous):
    login(anonymous)
    token = anonymous.cookies.get("tuneforge_session")
    body = {"current_password": ADMIN["password"], "new_password": "a-brand-new-secret"}
    assert anonymous.post("/api/auth/me/password", json=body).status_code == 200
    anonymous.cookies.set("tuneforge_session", token, domain="localhost.local")
    assert anonymous.get("/api/cloud/auth/me").status_code == 401
    assert login(anonymous, password="a-brand-new-secret").status_code == 200


def test_login_throttled_per_account(app, admin_client, anonymous):
    limit = app.state.settings.login_max_failures_per_account
    for _ in range(limit):
        assert login(anonymous, password="wrong-password").status_code == 401
    response = login(anonymous)  # even the right password waits
    assert response.status_code == 429
    assert int(response.headers["Retry-After"]) > 0


def test_login_throttled_per_client_across_accounts(workspace):
    app = create_app(Settings(workspace=workspace, login_max_failures_per_client=3))
    with TestClient(app, base_url="http://localhost", client=("198.51.100.9", 1)) as client:
        for n in range(3):
            assert login(client, username=f"guess{n}", password="wrong-password").status_code == 401
        assert login(client, username="guess-other", password="wrong-password").status_code == 429


def test_forwarded_for_only_from_trusted_proxy(workspace):
    app = create_app(Settings(workspace=workspace, login_max_failures_per_client=2, trusted_proxies=["10.0.0.1"]))
    spoof = {"X-Forwarded-For": "192.0.2.50"}
    with TestClient(app, base_url="http://localhost", client=("198.51.100.9", 1)) as direct:
        for n in range(2):
            direct.post("/api/auth/login", json={"username": f"u{n}", "password": "wrong-password"}, headers=spoof)
        # the untrusted peer's own address was counted, whatever it claimed
        assert direct.post("/api/auth/login", json={"username": "z", "password": "wrong-password"},
                           headers={"X-Forwarded-For": "192.0.2.51"}).status_code == 429
    with TestClient(app, base_url="http://localhost", client=("10.0.0.1", 1)) as proxy:
        for n in range(2):
            proxy.post("/api/auth/login", json={"username": f"p{n}", "password": "wrong-password"},
                       headers={"X-Forwarded-For": "192.0.2.60"})
        blocked = proxy.post("/api/auth/login", json={"username": "q", "password": "wrong-password"},
                             headers={"X-Forwarded-For": "192.0.2.60"})
        other = proxy.post("/api/auth/login", json={"username": "q", "password": "wrong-password"},
                           headers={"X-Forwarded-For": "192.0.2.61"})
    assert blocked.status_code == 429 and other.status_code == 401


def test_api_key_shown_once_and_usable(admin_client, anonymous):
    login(anonymous)
    created = anonymous.post("/api/cloud/auth/api-keys", json={"name": "automation-key"}).json()
    key = created["key"]
    assert re.fullmatch(r"st_[A-Za-z0-9]{32}", key)
    assert created["key_info"]["key_prefix"] == key[:7]
    listed = anonymous.get("/api/cloud/auth/api-keys").json()
    assert key not in str(listed) and listed["count"] == 2
    anonymous.cookies.clear()
    assert anonymous.get("/api/cloud/auth/me", headers={"X-API-Key": key}).status_code == 200
    assert anonymous.get("/api/cloud/auth/me", headers={"Authorization": f"Bearer {key}"}).status_code == 200
    used = [k for k in admin_client.get("/api/auth/api-keys").json()["keys"] if k["name"] == "automation-key"]
    assert used[0]["last_used_at"] is not None


def test_key_use_is_stamped_at_most_once_a_minute(app, admin_client):
    def stamps():
        with app.state.engine.connect() as conn:
            return conn.execute(text("SELECT last_used_at FROM api_keys")).scalars().all()

    admin_client.get("/api/cloud/auth/me")
    first = stamps()
    admin_client.get("/api/cloud/auth/me")
    assert stamps() == first and first[0] is not None
    with app.state.engine.begin() as conn:
        conn.execute(update(ApiKey).values(last_used_at=datetime.now(UTC) - timedelta(minutes=2)))
    admin_client.get("/api/cloud/auth/me")
    assert stamps() != first


def test_keys_not_recoverable_from_database(app, admin_client):
    key = admin_client.headers["X-API-Key"]
    with app.state.engine.connect() as connection:
        for table in inspect(connection).get_table_names():
            for row in connection.execute(text(f'SELECT * FROM "{table}"')):
                dump = " ".join(str(value) for value in row)
                assert key not in dump and key[3:] not in dump, table
                assert ADMIN["password"] not in dump, table


def test_revoked_key_is_refused(admin_client):
    created = admin_client.post("/api/cloud/auth/api-keys", json={"name": "temp"}).json()
    key, key_id = created["key"], created["key_info"]["id"]
    assert admin_client.delete(f"/api/cloud/auth/api-keys/{key_id}").status_code == 200
    response = admin_client.get("/api/cloud/auth/me", headers={"X-API-Key": key})
    assert response.status_code == 401 and "revoked" in response.json()["detail"]
    assert admin_client.delete(f"/api/cloud/auth/api-keys/{key_id}").status_code == 404


def test_expired_key_is_refused(app, admin_client):
    created = admin_client.post("/api/cloud/auth/api-keys", json={"name": "short", "expires_days": 1}).json()
    assert created["key_info"]["expires_at"] is not None
    with app.state.session_factory() as db:
        past = datetime.now(UTC) - timedelta(seconds=1)
        db.execute(update(ApiKey).where(ApiKey.id == created["key_info"]["id"]).values(expires_at=past))
        db.commit()
    assert admin_client.get("/api/cloud/auth/me", headers={"X-API-Key": created["key"]}).status_code == 401


def test_garbage_credentials(admin_client, anonymous):
    wrong = ({"X-API-Key": "st_short"}, {"X-API-Key": "x" * 5000}, {"Authorization": "Bearer " + "st_" + "a" * 32})
    for headers in wrong:
        response = anonymous.get("/api/cloud/auth/me", headers=headers)
        assert response.status_code == 401, headers
    key = {"X-API-Key": admin_client.headers["X-API-Key"]}
    bad = anonymous.post("/api/cloud/auth/api-keys", json={"name": ""}, headers=key)
    assert bad.status_code == 422
    long_name = anonymous.post("/api/cloud/auth/api-keys", json={"name": "n" * 101},
                               headers={"X-API-Key": admin_client.headers["X-API-Key"]})
    assert long_name.status_code == 422 and long_name.json()["errors"][0]["field"] == "name"


def test_local_bootstrap_cannot_make_keys(local_client):
    response = local_client.post("/api/cloud/auth/api-keys", json={"name": "k"})
    assert response.status_code == 400 and "first admin" in response.json()["detail"]


def test_registration_off_by_default_and_admin_switch(admin_client, anonymous, make_user):
    body = {"email": "new@example.com", "username": "newbie", "password": "newbie-password"}
    assert anonymous.post("/api/auth/register", json=body).status_code == 403
    researcher = make_user("res1", "researcher")
    assert researcher.put("/api/auth/registration", json={"enabled": True}).status_code == 403
    assert admin_client.put("/api/auth/registration", json={"enabled": True}).json() == {"enabled": True}
    created = anonymous.post("/api/auth/register", json=body)
    assert created.status_code == 201 and created.json()["user"]["level_names"] == ["viewer"]
    assert anonymous.get("/api/auth/setup/status").json()["registration_enabled"] is True


def test_migration_0005_ends_old_sessions_and_keeps_users_and_keys(bare_engine):
    from tuneforge.db.migrate import migrate

    engine = bare_engine
    migrate(engine, "0004")
    now = datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO users (id, username, email, password_hash, levels, is_active, created_at, "
                          "updated_at) VALUES (1, 'ann', 'ann@example.com', 'x', '[]', true, :t, :t)"), {"t": now})
        conn.execute(text("INSERT INTO api_keys (user_id, name, key_prefix, key_hash, created_at) "
                          "VALUES (1, 'k', 'st_abcd', 'h', :t)"), {"t": now})
        conn.execute(text("INSERT INTO auth_sessions (token_hash, user_id, created_at, expires_at) "
                          "VALUES ('old', 1, :t, :t)"), {"t": now + timedelta(days=1)})
    migrate(engine, "head")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT session_epoch FROM users")).scalars().all() == [0]
        assert conn.execute(text("SELECT count(*) FROM revoked_sessions")).scalar() == 0
    migrate(engine, "0004", down=True)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM api_keys")).scalar() == 1, "a downgrade keeps the keys"
