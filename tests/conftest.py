"""Shared fixtures: a temporary workspace, the real app on a real SQLite file, and HTTP clients."""

from __future__ import annotations

import os
import uuid

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx2
import pytest
from fastapi import FastAPI
from sqlalchemy import Engine, create_engine, make_url, text
from starlette.testclient import TestClient

from tuneforge.api.app import create_app
from tuneforge.db.engine import make_engine, make_session_factory
from tuneforge.db.migrate import upgrade_to_head
from tuneforge.settings import Settings

ADMIN = {"email": "admin@example.com", "username": "admin", "password": "your-secure-password"}
LOCAL = ("127.0.0.1", 50000)
REMOTE = ("203.0.113.7", 50000)
POSTGRES_URL = os.environ.get("TUNEFORGE_TEST_POSTGRES_URL")  # a server's maintenance database; .ci/postgres sets it


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Tests in modules marked both_databases run once on SQLite and once on PostgreSQL."""
    if "database_kind" in metafunc.fixturenames and metafunc.definition.get_closest_marker("both_databases"):
        metafunc.parametrize("database_kind", ["sqlite", "postgresql"], indirect=True)


@pytest.fixture
def database_kind(request: pytest.FixtureRequest) -> str:
    return getattr(request, "param", "sqlite")


@pytest.fixture
def database_url(database_kind: str, tmp_path: Path) -> Iterator[str | None]:
    """None for SQLite (the settings' default file in the state folder); a new, empty PostgreSQL database otherwise."""
    if database_kind == "sqlite":
        yield None
        return
    if not POSTGRES_URL:
        pytest.skip("no PostgreSQL server: `eval \"$(.ci/postgres start DIR)\"` sets TUNEFORGE_TEST_POSTGRES_URL")
    name = f"tuneforge_test_{uuid.uuid4().hex}"
    server = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with server.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    with server.connect() as connection:
        connection.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    server.dispose()


@pytest.fixture
def bare_engine(database_url: str | None, tmp_path: Path) -> Iterator[Engine]:
    """The test's database, not migrated."""
    engine = make_engine(database_url or f"sqlite:///{tmp_path / 'state.db'}")
    yield engine
    engine.dispose()


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "workspace"
    root.mkdir()
    return root


@pytest.fixture
def settings(workspace: Path, tmp_path_factory, database_url: str | None) -> Settings:
    """The tests' server lets jobs read and write this test session's temporary folders (its tiny models live
    there) and send webhooks to loopback (the test receivers): as an admin who sets TUNEFORGE_READ_ROOTS,
    TUNEFORGE_WRITE_ROOTS and TUNEFORGE_WEBHOOK_ALLOWED_NETWORKS would. The policies' own tests make settings
    with the defaults."""
    temporary = tmp_path_factory.getbasetemp()
    return Settings(workspace=workspace, read_roots=[temporary], write_roots=[temporary],
                    webhook_allowed_networks=["127.0.0.0/8"], database_url=database_url)


@pytest.fixture
def session_factory(bare_engine: Engine):
    """The real database layer, migrated, without the app."""
    upgrade_to_head(bare_engine)
    return make_session_factory(bare_engine)


@pytest.fixture
def app(settings: Settings) -> FastAPI:
    return create_app(settings)


def _client(app: FastAPI, address: tuple[str, int] = LOCAL) -> TestClient:
    return TestClient(app, base_url="http://localhost:8001", client=address, raise_server_exceptions=False)


@pytest.fixture
def local_client(app: FastAPI) -> Iterator[TestClient]:
    """A client on this machine, before any admin exists (acts as the local bootstrap admin).
    It runs the app's lifespan; the other loopback clients share its transport (one app, one event loop)."""
    with _client(app) as client:
        yield client


def _sibling(base: TestClient) -> httpx2.Client:
    """Starlette's TestClient is built on httpx2, so its transport pairs with an httpx2 client."""
    return httpx2.Client(transport=base._transport, base_url=base.base_url, follow_redirects=True)


@pytest.fixture
def remote_client(app: FastAPI) -> Iterator[TestClient]:
    with _client(app, REMOTE) as client:
        yield client


@pytest.fixture
def admin_client(local_client: TestClient) -> Iterator[httpx2.Client]:
    """A client of the first admin (created through the API), authenticating with an API key."""
    with _sibling(local_client) as client:
        assert client.post("/api/cloud/auth/setup/first-admin", json=ADMIN).status_code == 201
        key = client.post("/api/cloud/auth/api-keys", json={"name": "tests"}).json()["key"]
        client.cookies.clear()
        client.headers["X-API-Key"] = key
        yield client


@pytest.fixture
def anonymous(local_client: TestClient, admin_client: httpx2.Client) -> Iterator[httpx2.Client]:
    """A client with no credentials, after setup is complete."""
    with _sibling(local_client) as client:
        yield client


@pytest.fixture
def make_user(local_client: TestClient, admin_client: httpx2.Client) -> Iterator[Callable[[str, str], httpx2.Client]]:
    """Create a user with one level through the API and return a client holding an API key of theirs."""
    opened: list[httpx2.Client] = []

    def make(username: str, level: str) -> httpx2.Client:
        password = f"{username}-pass-123"
        body = {"email": f"{username}@example.com", "username": username, "password": password,
                "level_names": [level]}
        assert admin_client.post("/api/users", json=body).status_code == 201
        client = _sibling(local_client)
        opened.append(client)
        assert client.post("/api/cloud/auth/login", json={"username": username, "password": password}).is_success
        key = client.post("/api/cloud/auth/api-keys", json={"name": "tests"}).json()["key"]
        client.cookies.clear()
        client.headers["X-API-Key"] = key
        return client

    yield make
    for client in opened:
        client.close()


@pytest.fixture(scope="session")
def tiny_pixart(tmp_path_factory) -> Path:
    """A random-weight PixArt Sigma pipeline folder, built once per test session by the product's maker."""
    from tuneforge.models.tiny import make_tiny_model

    return make_tiny_model("pixart_sigma", tmp_path_factory.mktemp("models") / "tiny-pixart")


@pytest.fixture(scope="session")
def tiny_flux(tmp_path_factory) -> Path:
    """A random-weight Flux.1 dev pipeline folder (guidance embedding), built once per test session."""
    from tuneforge.models.tiny import make_tiny_model

    return make_tiny_model("flux", tmp_path_factory.mktemp("models") / "tiny-flux")


@pytest.fixture(scope="session")
def tiny_flux_schnell(tmp_path_factory) -> Path:
    from tuneforge.models.tiny import make_tiny_model

    return make_tiny_model("flux", tmp_path_factory.mktemp("models") / "tiny-flux-schnell", flavour="schnell")


@pytest.fixture(scope="session")
def tiny_kontext(tmp_path_factory) -> Path:
    """A random-weight Flux.1 Kontext pipeline folder (FluxKontextPipeline)."""
    from tuneforge.models.tiny import make_tiny_model

    return make_tiny_model("flux", tmp_path_factory.mktemp("models") / "tiny-kontext", flavour="kontext")
