"""Every route in the OpenAPI schema refuses anonymous callers once an admin exists (walks the schema,
so routes added later are covered without touching this test)."""

from __future__ import annotations

import re

import pytest
from starlette.routing import WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

pytestmark = pytest.mark.both_databases

PUBLIC = {
    ("get", "/health"),
    ("get", "/api/cloud/auth/setup/status"),
    ("get", "/api/auth/setup/status"),
    ("post", "/api/cloud/auth/setup/first-admin"),
    ("post", "/api/auth/setup/first-admin"),
    ("post", "/api/cloud/auth/login"),
    ("post", "/api/auth/login"),
    ("post", "/api/cloud/auth/register"),
    ("post", "/api/auth/register"),
}


def _operations(client: TestClient) -> list[tuple[str, str]]:
    schema = client.get("/openapi.json").json()
    return [(method, path) for path, item in schema["paths"].items() for method in item]


def test_every_route_needs_credentials_after_setup(app, admin_client, anonymous):
    reachable = set()
    for method, path in _operations(anonymous):
        concrete = re.sub(r"\{[^}]+\}", "1", path)
        response = anonymous.request(method.upper(), concrete)
        if response.status_code != 401:
            reachable.add((method, path))
    assert reachable == PUBLIC


def test_every_route_is_tagged(anonymous):
    schema = anonymous.get("/openapi.json").json()
    allowed = {"auth", "users", "configurations", "training", "datasets", "queue", "system"}
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            assert set(operation.get("tags", [])) & allowed, (method, path)


def test_websockets_need_credentials_after_setup(app, admin_client, anonymous):
    for route in app.routes:
        if isinstance(route, WebSocketRoute) or type(route).__name__ == "APIWebSocketRoute":
            path = re.sub(r"\{[^}]+\}", "1", route.path)
            try:
                with anonymous.websocket_connect(path) as socket:
                    socket.receive_json()
                raise AssertionError(f"{path} accepted an anonymous websocket")
            except WebSocketDisconnect:
                pass


def test_docs_are_served(anonymous):
    assert anonymous.get("/docs").status_code == 200
    assert anonymous.get("/redoc").status_code == 200
    info = anonymous.get("/openapi.json").json()["info"]
    assert info["title"] == "tuneforge"


def test_the_page_and_its_files_are_public_hold_no_data_and_run_only_their_own_scripts(anonymous):
    page = anonymous.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert "admin" not in page.text.lower(), "the page is the same for everyone: data comes from the API"
    assert anonymous.get("/ui/assets/js/app.js").status_code == 200
    assert anonymous.get("/ui/vendor/swagger-ui-bundle.js").status_code == 200
    for escape in ("/ui/assets/%2e%2e/__init__.py", "/ui/assets/../__init__.py", "/ui/vendor/%2e%2e/core.py"):
        assert anonymous.get(escape).status_code == 404, escape
