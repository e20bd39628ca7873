"""The real `tuneforge server` as a subprocess on loopback: choosing its port, starting it, stopping it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from rich.markup import escape

from tuneforge.cli.demo.api import DemoError, console

HEALTH_TIMEOUT_S = 90.0


@dataclass
class Server:
    process: subprocess.Popen
    port: int
    workspace: Path
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, lines: int = 30) -> list[str]:
        try:
            return self.log_path.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return []


def free_port(wanted: int | None) -> int:
    """A free loopback port; a busy one is refused up front, or another server there could answer /health."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: a listener is what counts
        try:
            sock.bind(("127.0.0.1", wanted or 0))
        except OSError as exc:
            raise DemoError(f"Port {wanted} is not free ({exc.strerror}): pick another --port or leave it out",
                            code=2) from exc
        return sock.getsockname()[1]


@contextmanager
def running_server(workspace: Path, port: int) -> Iterator[Server]:
    """The real `tuneforge server` on loopback; always stopped on the way out (errors and Ctrl-C included)."""
    server = _spawn(workspace, port)
    try:
        with console.status(f"Starting the server on {server.url} (log: {server.log_path})"):
            _wait_healthy(server)
        console.print(f"[green]✓[/green] Server up at {server.url} (workspace {escape(str(workspace))})")
        yield server
    finally:
        _stop(server)


def _spawn(workspace: Path, port: int) -> Server:
    # The demo's own settings only: a TUNEFORGE_DATABASE_URL or DATASETS_DIR meant for a real server must not
    # make the demo write there.
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUNEFORGE_")}
    env["HF_HUB_OFFLINE"] = "1"
    command = [sys.executable, "-m", "tuneforge", "server", "--host", "127.0.0.1", "--port", str(port),
               "--workspace", str(workspace)]
    log_path = workspace / "server.log"
    with open(log_path, "wb") as log:
        # A session of its own: Ctrl-C reaches only the demo, which then cancels the job before stopping it.
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env,
                                   start_new_session=True)
    return Server(process, port, workspace, log_path)


def _wait_healthy(server: Server) -> None:
    deadline = time.monotonic() + HEALTH_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise DemoError(f"The server exited with code {server.process.returncode} before it was ready "
                            f"(log: {server.log_path})", server.log_tail())
        try:
            if httpx.get(f"{server.url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise DemoError(f"The server did not answer /health within {HEALTH_TIMEOUT_S:.0f} s "
                    f"(log: {server.log_path})", server.log_tail())


def _stop(server: Server) -> None:
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGTERM)
        try:
            server.process.wait(timeout=20)
        except (subprocess.TimeoutExpired, KeyboardInterrupt):
            server.process.kill()
            server.process.wait()
    console.print("[dim]Server stopped.[/dim]")
