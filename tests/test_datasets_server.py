"""Uploads against a real uvicorn server: other requests are served meanwhile, an interrupted upload leaves
nothing under a final name, and the CLI uploads folders and zips."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from datasets_support import leftovers, make_zip, multipart, png_bytes, tree
from serverproc import served_in_thread
from tuneforge.api.app import create_app
from tuneforge.cli.main import app as cli
from tuneforge.settings import Settings

pytestmark = pytest.mark.e2e


@pytest.fixture
def server(settings: Settings) -> Iterator[str]:
    with served_in_thread(create_app(settings), host="localhost") as url:
        yield url


def _open_upload(url: str, body: bytes, content_type: str) -> socket.socket:
    """Start a raw HTTP upload announcing the whole body, and send only its headers."""
    host, port = url.removeprefix("http://").split(":")
    connection = socket.create_connection(("127.0.0.1", int(port)))
    head = (f"POST /api/datasets/upload HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n")
    connection.sendall(head.encode())
    return connection


def _wait_for(condition, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_other_requests_are_served_during_an_upload(server: str, settings: Settings) -> None:
    root = settings.datasets_root
    (root / "set").mkdir()
    body, content_type = multipart([("target_path", None, b"set"), ("files[]", "big.csv", b"x" * (8 * 1024 * 1024))])
    connection = _open_upload(server, body, content_type)
    try:
        connection.sendall(body[: 3 * 1024 * 1024])
        _wait_for(lambda: leftovers(root) != [])  # the file is streaming into the target folder
        started = time.monotonic()
        listing = httpx.get(f"{server}/api/datasets/browse", timeout=5)
        assert listing.status_code == 200 and time.monotonic() - started < 2
        assert not (root / "set" / "big.csv").exists()
        connection.sendall(body[3 * 1024 * 1024:])
        reply = connection.recv(65536).decode()
        assert reply.startswith("HTTP/1.1 200"), reply
    finally:
        connection.close()
    assert (root / "set" / "big.csv").stat().st_size == 8 * 1024 * 1024
    assert leftovers(root) == []


def test_an_interrupted_upload_leaves_no_file(server: str, settings: Settings) -> None:
    root = settings.datasets_root
    (root / "set").mkdir()
    body, content_type = multipart([("target_path", None, b"set"), ("files[]", "cut.csv", b"y" * (4 * 1024 * 1024))])
    connection = _open_upload(server, body, content_type)
    connection.sendall(body[: 2 * 1024 * 1024])
    _wait_for(lambda: leftovers(root) != [])
    connection.close()  # the client goes away mid-file
    _wait_for(lambda: leftovers(root) == [])
    assert tree(root / "set") == set()
    assert httpx.get(f"{server}/health").status_code == 200


@pytest.fixture
def cli_client(server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI pointed at the test server, with no stored key (loopback callers act as admin before setup)."""
    monkeypatch.setenv("TUNEFORGE_URL", server)
    monkeypatch.setenv("TUNEFORGE_CLIENT_CONFIG", str(tmp_path / "client.json"))
    monkeypatch.delenv("TUNEFORGE_API_KEY", raising=False)


@pytest.mark.usefixtures("cli_client")
def test_cli_uploads_a_folder_and_a_zip(settings: Settings, tmp_path: Path) -> None:
    source = tmp_path / "local-dataset"
    (source / "cats").mkdir(parents=True)
    (source / "cats" / "001.png").write_bytes(png_bytes())
    (source / "cats" / "001.txt").write_text("a cat")
    (source / "notes.docx").write_bytes(b"not sent")
    runner = CliRunner()
    result = runner.invoke(cli, ["datasets", "upload", str(source), "--to", "my-set"])
    assert result.exit_code == 0, result.output
    assert "Uploaded 2 files" in result.output
    root = settings.datasets_root
    assert tree(root / "my-set") == {"cats", "cats/001.png", "cats/001.txt"}
    again = runner.invoke(cli, ["datasets", "upload", str(source), "--to", "my-set"])
    assert again.exit_code == 0 and "2 were already there unchanged" in again.output, again.output
    archive = tmp_path / "set.zip"
    archive.write_bytes(make_zip({"dogs/002.png": png_bytes(color="blue"), "dogs/002.txt": b"a dog"}))
    zipped = runner.invoke(cli, ["datasets", "upload", str(archive), "--to", "my-set"])
    assert zipped.exit_code == 0, zipped.output
    assert {"dogs/002.png", "dogs/002.txt"} <= tree(root / "my-set")
    assert leftovers(root) == []


def test_partial_files_a_dead_server_left_are_swept_at_start(tmp_path: Path) -> None:
    settings = Settings(workspace=tmp_path / "ws")
    deep = settings.datasets_root / "set" / "cats"
    deep.mkdir(parents=True)
    stale, kept = deep / ".tf-upload-abc.part", deep / "001.png"
    stale.write_bytes(b"half a file")
    kept.write_bytes(png_bytes())
    old = time.time() - 60
    os.utime(stale, (old, old))
    create_app(settings)  # the server's start-up sweeps beside it, in a thread
    _wait_for(lambda: leftovers(settings.datasets_root) == [])
    assert tree(settings.datasets_root / "set") == {"cats", "cats/001.png"}


def test_the_sweep_spares_uploads_in_progress(tmp_path: Path) -> None:
    from tuneforge.services.datasets.uploads import sweep_partial_files

    (tmp_path / "set").mkdir()
    (tmp_path / "set" / ".tf-upload-new.part").write_bytes(b"arriving")
    assert sweep_partial_files(tmp_path, before=time.time() - 60) == 0
    assert leftovers(tmp_path) == ["set/.tf-upload-new.part"]


@pytest.mark.usefixtures("cli_client")
def test_cli_lists_links_creates_parents_and_refuses_a_file_target(settings: Settings, tmp_path: Path) -> None:
    secret = tmp_path / "private"
    secret.mkdir()
    (secret / "key.txt").write_text("not for the server")
    source = tmp_path / "local-dataset"
    source.mkdir()
    (source / "001.png").write_bytes(png_bytes())
    os.symlink(secret / "key.txt", source / "linked.txt")
    os.symlink(secret, source / "linked-folder")
    runner = CliRunner()
    result = runner.invoke(cli, ["datasets", "upload", str(source), "--to", "a/b/c"])
    assert result.exit_code == 0, result.output
    assert "Not sent (2 links, which are not followed): linked-folder, linked.txt" in result.output
    root = settings.datasets_root
    assert tree(root) == {"a", "a/b", "a/b/c", "a/b/c/001.png"}
    (root / "plain.txt").write_text("a file, not a folder")
    for target in ("plain.txt", "plain.txt/sub"):
        refused = runner.invoke(cli, ["datasets", "upload", str(source), "--to", target])
        assert refused.exit_code == 1
        assert "'plain.txt' exists on the server but is not a folder" in refused.output, refused.output
    assert (root / "plain.txt").read_text() == "a file, not a folder"
