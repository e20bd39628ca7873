"""The real `tuneforge server` as a subprocess on loopback: choosing its port, starting it, stopping it.

The end-to-end tests start their servers with the same code (tests/serverproc.py), so the demo runs the server
exactly as they do.
"""

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
from typing import Any

import httpx
from rich.markup import escape

from tuneforge.cli.client import CliError
from tuneforge.cli.demo.api import console

HEALTH_TIMEOUT_S = 90.0


class ServerStartError(RuntimeError):
    """The server exited, or did not answer /health in time."""


@dataclass
class ServerProcess:
    workspace: Path
    port: int
    process: subprocess.Popen
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, **{"timeout": 30, **kwargs})

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_tail(self, lines: int = 30) -> list[str]:
        try:
            return self.log().splitlines()[-lines:]
        except OSError:
            return []

    def wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerStartError(f"The server exited with code {self.process.returncode} before it was ready "
                                       f"(log: {self.log_path})")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise ServerStartError(f"The server did not answer /health within {timeout:.0f} s (log: {self.log_path})")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        """Send `sig` and wait for the exit code; killed when it has not exited within `timeout`."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()
        except KeyboardInterrupt:  # a second Ctrl-C: stop waiting, but leave no server behind
            self.process.kill()
            raise


def free_port(wanted: int | None = None) -> int:
    """A free loopback port (`wanted`, or any when it is None or 0); OSError when `wanted` is taken."""
    with socket.socket() as sock:
        # As uvicorn binds: only a listener makes the port busy, not connections still closing on it.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", wanted or 0))
        return sock.getsockname()[1]


def spawn(workspace: Path, port: int, *args: str, env: dict[str, str], log_path: Path,
          own_session: bool = False) -> ServerProcess:
    """`tuneforge server` on 127.0.0.1:`port`, its output in `log_path`; `env` is its whole environment."""
    command = [sys.executable, "-m", "tuneforge", "server", "--host", "127.0.0.1", "--port", str(port),
               "--workspace", str(workspace), *args]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env,
                                   start_new_session=own_session)
    return ServerProcess(workspace, port, process, log_path)


@contextmanager
def running_server(workspace: Path, port: int) -> Iterator[ServerProcess]:
    """The demo's server; always stopped on the way out (errors and Ctrl-C included)."""
    # The demo's own settings only: a TUNEFORGE_DATABASE_URL or DATASETS_DIR meant for a real server must not
    # make the demo write there.
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUNEFORGE_")} | {"HF_HUB_OFFLINE": "1"}
    # A session of its own: Ctrl-C reaches only the demo, which then cancels the job before stopping the server.
    server = spawn(workspace, port, env=env, log_path=workspace / "server.log", own_session=True)
    try:
        with console.status(f"Starting the server on {server.url} (log: {server.log_path})"):
            try:
                server.wait_healthy(HEALTH_TIMEOUT_S)
            except ServerStartError as exc:
                raise CliError(str(exc), server.log_tail()) from None
        console.print(f"[green]✓[/green] Server up at {server.url} (workspace {escape(str(workspace))})")
        yield server
    finally:
        server.stop()
        console.print("[dim]Server stopped.[/dim]")
