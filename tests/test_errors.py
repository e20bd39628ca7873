"""Errors without side effects: an unexpected error is a 500 in the API's error shape, logged once, and the
client's next request on the same keep-alive connection is answered normally (through a real uvicorn)."""

from __future__ import annotations

import logging
import threading

import httpx
import pytest
import uvicorn
from tests.serverproc import free_port

from tuneforge.api.app import create_app
from tuneforge.api.deps import public


@pytest.fixture
def failing_app(settings):
    app = create_app(settings)

    @public
    def boom() -> None:
        raise RuntimeError("a bug")

    app.add_api_route("/boom", boom, methods=["GET"])
    return app


def test_an_unexpected_error_is_a_500_that_closes_its_connection_and_is_logged_once(failing_app, caplog):
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(failing_app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            for _ in range(200):
                if server.started:
                    break
                threading.Event().wait(0.05)
            with caplog.at_level(logging.ERROR):
                failed = client.get("/boom")
            assert failed.status_code == 500 and failed.json() == {"detail": "Internal server error"}
            assert failed.headers["connection"] == "close"
            assert [client.get("/health").status_code for _ in range(3)] == [200, 200, 200]
    finally:
        server.should_exit = True
        thread.join(10)
    logged = [r for r in caplog.records if r.levelno >= logging.ERROR and "a bug" in str(r.exc_info)]
    assert len(logged) == 1, [r.getMessage() for r in caplog.records]
