"""Who is calling and from where: forwarding headers count only from TUNEFORGE_TRUSTED_PROXIES (uvicorn's own
handling included), setup-time "local" follows the one client address, and ambient credentials (a session cookie,
being on this machine before setup) carry no change made from another site's page."""

from __future__ import annotations

import httpx
import pytest
from starlette.testclient import TestClient
from tests.conftest import ADMIN
from tests.serverproc import start_server

from tuneforge.api.app import create_app
from tuneforge.settings import Settings

WRONG = {"password": "wrong-password"}
STREAM = "ws://localhost:8001/api/training/events/stream"
FOREIGN = {"Origin": "http://localhost:9999"}  # another port of the same host is the same *site*: cookies go along


def test_uvicorn_takes_no_forwarded_for_from_an_untrusted_loopback_peer(tmp_path):
    """Through the real server: each failed login claims another client address; all are counted as one."""
    server = start_server(tmp_path / "workspace", env={"TUNEFORGE_LOGIN_MAX_FAILURES_PER_CLIENT": "2"})
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            codes = [client.post("/api/auth/login", json={"username": f"guess{n}", **WRONG},
                                 headers={"X-Forwarded-For": f"198.51.100.{n}"}).status_code for n in range(3)]
    finally:
        server.stop()
    assert codes == [401, 401, 429]


@pytest.fixture
def behind_local_proxy(workspace):
    """The real app behind a reverse proxy on this machine that the admin trusts."""
    settings = Settings(workspace=workspace, trusted_proxies=["127.0.0.1"])
    with TestClient(create_app(settings), base_url="http://localhost:8001", client=("127.0.0.1", 1)) as client:
        yield client


@pytest.mark.parametrize("headers", [{"X-Real-IP": "203.0.113.9"}, {"Forwarded": "for=203.0.113.9"}, {},
                                     {"X-Forwarded-For": "203.0.113.9"}, {"X-Forwarded-For": "203.0.113.9, 127.0.0.1"}])
def test_a_remote_client_relayed_by_a_trusted_proxy_is_never_the_local_admin(behind_local_proxy, headers):
    assert behind_local_proxy.get("/api/users", headers=headers).status_code == 401


def test_a_trusted_proxy_relaying_this_machine_keeps_it_local(behind_local_proxy):
    assert behind_local_proxy.get("/api/users", headers={"X-Forwarded-For": "127.0.0.1"}).status_code == 200


def test_the_session_cookie_is_secure_only_when_a_trusted_proxy_says_https(workspace):
    app = create_app(Settings(workspace=workspace, trusted_proxies=["10.0.0.1"]))
    login = {"username": ADMIN["username"], "password": ADMIN["password"]}
    with TestClient(app, base_url="http://localhost:8001", client=("127.0.0.1", 1)) as local:
        assert local.post("/api/cloud/auth/setup/first-admin", json=ADMIN).status_code == 201
    cookies = {}
    for peer in ("10.0.0.1", "198.51.100.3"):
        with TestClient(app, base_url="http://localhost:8001", client=(peer, 1)) as client:
            response = client.post("/api/auth/login", json=login, headers={"X-Forwarded-Proto": "https"})
            cookies[peer] = response.headers["set-cookie"].lower()
    assert "secure" in cookies["10.0.0.1"] and "secure" not in cookies["198.51.100.3"]


def test_a_session_changes_nothing_from_another_sites_page(admin_client, anonymous):
    key = admin_client.headers["X-API-Key"]
    assert anonymous.post("/api/auth/login", json={"username": ADMIN["username"],
                                                   "password": ADMIN["password"]}).status_code == 200
    make_key = {"name": "from-a-page"}
    refused = anonymous.post("/api/auth/api-keys", json=make_key, headers=FOREIGN)
    assert refused.status_code == 403 and "Cross-origin" in refused.json()["detail"]
    assert anonymous.post("/api/auth/api-keys", json=make_key, headers={"Origin": "null"}).status_code == 403
    assert anonymous.post("/api/auth/api-keys", json=make_key,
                          headers={"Sec-Fetch-Site": "cross-site"}).status_code == 403
    assert anonymous.get("/api/auth/api-keys", headers=FOREIGN).status_code == 200, "reads stay readable"
    assert anonymous.post("/api/auth/api-keys", json=make_key,
                          headers={"Origin": "http://localhost:8001"}).status_code == 201, "its own pages"
    assert anonymous.post("/api/auth/api-keys", json=make_key).status_code == 201, "scripts send no Origin"
    anonymous.cookies.clear()
    assert anonymous.post("/api/auth/api-keys", json=make_key,
                          headers={**FOREIGN, "X-API-Key": key}).status_code == 201, "API keys are not ambient"


def test_this_machine_before_setup_changes_nothing_from_another_sites_page(local_client):
    assert local_client.put("/api/cloud/auth/registration", json={"enabled": True},
                            headers=FOREIGN).status_code == 403
    assert local_client.put("/api/cloud/auth/registration", json={"enabled": True}).status_code == 200


def test_a_session_websocket_from_another_sites_page_is_refused(local_client, admin_client):
    from starlette.websockets import WebSocketDisconnect

    assert local_client.post("/api/auth/login", json={"username": ADMIN["username"],
                                                      "password": ADMIN["password"]}).status_code == 200
    cookie = {"Cookie": f"tuneforge_session={local_client.cookies['tuneforge_session']}"}
    with pytest.raises(WebSocketDisconnect) as refused, \
            local_client.websocket_connect(STREAM, headers={**cookie, **FOREIGN}):
        pass
    assert refused.value.code == 1008 and refused.value.reason.startswith("Cross-origin")
    with local_client.websocket_connect(STREAM,
                                        headers={**cookie, "Origin": "http://localhost:8001"}) as socket:
        socket.close()
