"""Fuzz the real server's HTTP API with schemathesis: every operation of its OpenAPI schema, all checks (no 5xx,
statuses, content types, headers and bodies as documented, schema-valid data accepted, invalid data refused), a
bounded number of examples each (`.ci/schemathesis.toml`).

The server runs in a fresh workspace. A first run covers every operation but those that could take its admin away
(deactivating or deleting users, revoking keys); a second run covers those, on an admin of their own. Exit code:
0 when both pass.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from tuneforge.cli.demo.server import ServerStartError, free_port, spawn

HERE = Path(__file__).resolve().parent
ADMIN = {"email": "fuzz@example.com", "username": "fuzz-admin", "password": "a-long-fuzzing-password"}
SECOND_ADMIN = {"email": "fuzz2@example.com", "username": "fuzz-admin-2", "password": "another-fuzzing-password",
                "level_names": ["admin"]}
DESTRUCTIVE = ["PATCH /api/users/{user_id}", "DELETE /api/users/{user_id}", "DELETE /api/auth/api-keys/{key_id}",
               "DELETE /api/cloud/auth/api-keys/{key_id}"]


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="tuneforge-fuzz-") as temporary:
        root = Path(temporary)
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        server = spawn(root / "workspace", free_port(), env=env, log_path=root / "server.log")
        try:
            server.wait_healthy(90)
            first, second = _admin_keys(server)
            code = _fuzz(server.url, first, root, _each("--exclude-name", DESTRUCTIVE))
            code = code or _fuzz(server.url, second, root, _each("--include-name", DESTRUCTIVE))
        except ServerStartError as exc:
            print(exc, file=sys.stderr)
            code = 1
        finally:
            server.stop()
        if code != 0:
            print("--- server log (tail) ---", *server.log_tail(60), sep="\n", file=sys.stderr)
        return code


def _admin_keys(server) -> tuple[str, str]:
    """An API key of the first admin, and one of a second admin."""
    with server.client() as client:
        client.post("/api/cloud/auth/setup/first-admin", json=ADMIN).raise_for_status()
        first = client.post("/api/cloud/auth/api-keys", json={"name": "fuzz"}).json()["key"]
        client.cookies.clear()
        headers = {"X-API-Key": first}
        client.post("/api/users", json=SECOND_ADMIN, headers=headers).raise_for_status()
        login = {"username": SECOND_ADMIN["username"], "password": SECOND_ADMIN["password"]}
        client.post("/api/cloud/auth/login", json=login).raise_for_status()
        second = client.post("/api/cloud/auth/api-keys", json={"name": "fuzz-destructive"}).json()["key"]
    return first, second


def _each(flag: str, values: list[str]) -> list[str]:
    return [arg for value in values for arg in (flag, value)]


def _fuzz(url: str, key: str, cwd: Path, filters: list[str]) -> int:
    command = [str(Path(sys.executable).with_name("schemathesis")), "--config-file", str(HERE / "schemathesis.toml"),
               "run", f"{url}/openapi.json", "--checks", "all", "--header", f"X-API-Key: {key}", *filters,
               *sys.argv[1:]]
    return subprocess.run(command, cwd=cwd).returncode


if __name__ == "__main__":
    sys.exit(main())
