"""The real `tuneforge server` process: start-up, the tutorial's auth flow, secrets kept out of logs, shutdown."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys

import pytest
from tests.serverproc import free_port, start_server

from tuneforge.settings import Settings

pytestmark = pytest.mark.e2e


def test_tutorial_auth_flow_against_real_server(workspace):
    server = start_server(workspace)
    try:
        with server.client() as http:
            assert http.get("/api/cloud/auth/setup/status").json()["needs_setup"] is True
            admin = {"email": "admin@example.com", "username": "admin", "password": "your-secure-password"}
            assert http.post("/api/cloud/auth/setup/first-admin", json=admin).status_code == 201
        with server.client() as http:  # a fresh cookie jar, like curl -c cookies.txt
            login = {"username": "admin", "password": admin["password"]}
            assert http.post("/api/cloud/auth/login", json=login).is_success
            key = http.post("/api/cloud/auth/api-keys", json={"name": "automation-key"}).json()["key"]
            researcher = {"email": "researcher@example.com", "username": "researcher", "password": "their-password",
                          "level_names": ["researcher"]}
            assert http.post("/api/users", json=researcher).status_code == 201
        with server.client() as http:
            assert http.get("/api/cloud/auth/me").status_code == 401
            assert http.get("/api/cloud/auth/me", headers={"X-API-Key": key}).status_code == 200
            assert http.get("/docs").status_code == 200
        assert server.stop(signal.SIGTERM) in (0, -signal.SIGTERM)
        log = server.log()
        assert "Application shutdown complete" in log  # graceful: lifespan shutdown ran
        assert "Setup token" in log or "setup token" in log
        for secret in (key, key[3:], admin["password"], "their-password"):
            assert secret not in log
    finally:
        server.stop(signal.SIGKILL)


def test_storage_layout_and_wal(workspace):
    server = start_server(workspace)
    try:
        assert server.stop(signal.SIGINT) in (0, 128 + signal.SIGINT, -signal.SIGINT)
        assert "Application shutdown complete" in server.log()
    finally:
        server.stop(signal.SIGKILL)
    for folder in ("config", "datasets", "output", ".tuneforge"):
        assert (workspace / folder).is_dir()
    with sqlite3.connect(workspace / ".tuneforge" / "state.db") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("SELECT version_num FROM alembic_version").fetchone()[0]
    assert oct((workspace / ".tuneforge").stat().st_mode & 0o777) == "0o700"
    assert oct((workspace / ".tuneforge" / "setup_token").stat().st_mode & 0o777) == "0o600"


def test_server_never_imports_torch(tmp_path):
    code = (
        "import sys; from tuneforge.api.app import create_app; from tuneforge.cli.main import app; "
        "from tuneforge.settings import Settings; "
        f"create_app(Settings(workspace={str(tmp_path)!r})); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'diffusers', 'transformers')))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_host_and_port_from_environment(monkeypatch):
    monkeypatch.setenv("SIMPLETUNER_PORT", "9100")
    monkeypatch.setenv("SIMPLETUNER_HOST", "127.0.0.1")
    assert (Settings().host, Settings().port) == ("127.0.0.1", 9100)
    monkeypatch.setenv("TUNEFORGE_PORT", "9200")
    assert Settings().port == 9200
    monkeypatch.delenv("SIMPLETUNER_PORT")
    monkeypatch.delenv("TUNEFORGE_PORT")
    assert Settings().port == 8001 and Settings(port=8100).port == 8100


def test_simpletuner_alias_installed():
    result = subprocess.run(["simpletuner", "--help"], capture_output=True, text=True,
                            env={"PATH": f"{sys.prefix}/bin"})
    assert result.returncode == 0 and "server" in result.stdout


def test_cli_auth_setup_stores_a_key(workspace, tmp_path):
    server = start_server(workspace)
    env = {"PATH": f"{sys.prefix}/bin", "HOME": str(tmp_path), "TUNEFORGE_URL": server.url}
    try:
        setup = subprocess.run(
            ["tuneforge", "auth", "setup", "--username", "admin", "--email", "admin@example.com",
             "--password", "your-secure-password"], capture_output=True, text=True, env=env)
        assert setup.returncode == 0, setup.stderr
        config = tmp_path / ".config" / "tuneforge" / "client.json"
        assert oct(config.stat().st_mode & 0o777) == "0o600"
        whoami = subprocess.run(["tuneforge", "auth", "whoami"], capture_output=True, text=True, env=env)
        assert whoami.returncode == 0 and "admin" in whoami.stdout
        again = subprocess.run(
            ["tuneforge", "auth", "setup", "--username", "other", "--email", "o@example.com",
             "--password", "your-secure-password"], capture_output=True, text=True, env=env)
        assert again.returncode == 1 and "409" in again.stderr
        bad_key = subprocess.run(["tuneforge", "auth", "whoami"], capture_output=True, text=True,
                                 env={**env, "TUNEFORGE_API_KEY": "st_" + "x" * 32})
        assert bad_key.returncode == 1 and "401" in bad_key.stderr
    finally:
        server.stop(signal.SIGKILL)


def test_server_refuses_a_workspace_that_is_or_is_under_a_file(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("")
    env = {"PATH": f"{sys.prefix}/bin", "HOME": str(tmp_path), "COLUMNS": "300"}
    for workspace, says in ((afile, "is a file"), (afile / "sub", "Cannot prepare the workspace")):
        result = subprocess.run(["tuneforge", "server", "--host", "127.0.0.1", "--port", str(free_port()),
                                 "--workspace", str(workspace)], capture_output=True, text=True, env=env, timeout=60)
        assert result.returncode == 2, result.stderr
        assert says in result.stderr and "Traceback" not in result.stderr, result.stderr
