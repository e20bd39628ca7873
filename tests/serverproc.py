"""Start the real `tuneforge server` command on a free port, for end-to-end tests.

The process handling is the product's own (`tuneforge demo` uses it); this only adds the tests' defaults.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import uvicorn

from tuneforge.cli.demo.server import ServerProcess, ServerStartError, free_port, spawn

__all__ = ["ServerProcess", "free_port", "start_server"]


def _session_temp(workspace: Path) -> Path:
    """pytest's base temporary folder (`.../pytest-N`), which holds every test's tmp_path and the tiny models."""
    for parent in workspace.resolve().parents:
        if parent.name.startswith("pytest-") and parent.parent.name.startswith("pytest-of-"):
            return parent
    return workspace.resolve().parent


def start_server(workspace: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 60) -> ServerProcess:
    """The server on a free port, healthy; its log beside the workspace; `env` is added to this process's env."""
    port = free_port()
    # Jobs may touch this test session's temporary folders (the tiny models, outputs beside the workspace) and
    # send webhooks to the test receivers on loopback.
    temporary = str(_session_temp(workspace))
    roots = {"TUNEFORGE_READ_ROOTS": temporary, "TUNEFORGE_WRITE_ROOTS": temporary,
             "TUNEFORGE_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8"}
    server = spawn(workspace, port, *args, env={**os.environ, "HF_HUB_OFFLINE": "1", **roots, **(env or {})},
                   log_path=workspace.parent / f"server-{port}.log")
    try:
        server.wait_healthy(timeout)
    except ServerStartError as exc:
        server.stop(signal.SIGKILL)
        raise RuntimeError(f"{exc}:\n{server.log()}") from None
    return server


@contextlib.contextmanager
def served_in_thread(app, host: str = "127.0.0.1") -> Iterator[str]:
    """The in-process app behind a real uvicorn on a free loopback port, in a thread; yields its URL."""
    port = free_port()
    instance = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=instance.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not instance.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.05)
    try:
        yield f"http://{host}:{port}"
    finally:
        instance.should_exit = True
        thread.join(10)
