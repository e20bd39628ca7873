"""Zip uploads against hostile archives: nothing outside the target, nothing partial, limits before writing."""

from __future__ import annotations

import os
import time
import zipfile
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from datasets_support import leftovers, make_zip, many_entries_zip, png_bytes, tree, zip_bomb
from tuneforge.settings import Settings


@pytest.fixture
def root(settings: Settings) -> Path:
    (settings.datasets_root / "set").mkdir()
    return settings.datasets_root


def send(client: TestClient, archive: bytes, target: str = "set"):
    return client.post("/api/datasets/upload/zip", data={"target_path": target},
                       files={"file": ("dataset.zip", archive, "application/zip")})


def clean_outside(workspace: Path) -> set[str]:
    return {p for p in tree(workspace.parent) if not p.startswith("workspace/datasets") and ".tuneforge" not in p}


def test_structure_is_kept_and_types_checked(local_client: TestClient, root: Path) -> None:
    archive = make_zip({"cats/001.png": png_bytes(), "cats/001.txt": b"a cat", "meta.jsonl": b"{}\n",
                        "dogs/fake.png": b"GIF89a but not really", "tool.exe": b"MZ", "__MACOSX/._001.png": b"x",
                        "empty/": b""})
    response = send(local_client, archive)
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["files_uploaded"] == 3 and report["files_skipped"] == 3
    assert tree(root / "set") == {"cats", "cats/001.png", "cats/001.txt", "meta.jsonl", "dogs"}
    reasons = {f["name"]: f["reason"] for f in report["files"]}
    assert reasons["dogs/fake.png"] == "not a decodable image"
    assert "macOS metadata" in reasons["__MACOSX/._001.png"]
    assert leftovers(root) == []


def test_escaping_entries_are_skipped(local_client: TestClient, root: Path, workspace: Path) -> None:
    before = clean_outside(workspace)
    hostile = ["../evil.txt", "../../evil.txt", "/tmp/evil.txt", "a/../../evil.txt", "..\\evil.txt",
               "C:/evil.txt", "c:\\evil.txt", "ok/\x01.txt", "x" * 300 + ".txt"]
    report = send(local_client, make_zip({name: b"x" for name in hostile} | {"good.txt": b"ok"})).json()
    assert report["files_uploaded"] == 1 and report["files_skipped"] == len(hostile)
    assert tree(root / "set") == {"good.txt"}
    assert clean_outside(workspace) == before
    assert not Path("/tmp/evil.txt").exists()


def test_symlink_entries_are_never_extracted(local_client: TestClient, root: Path, workspace: Path) -> None:
    archive = make_zip({"link/passwd.txt": b"written through the link?"},
                       symlinks={"link": "/etc", "passwd.txt": "/etc/passwd"})
    report = send(local_client, archive).json()
    skipped = {f["name"]: f["reason"] for f in report["files"] if f["status"] == "skipped"}
    assert skipped == {"link": "symbolic links are not extracted", "passwd.txt": "symbolic links are not extracted"}
    assert (root / "set" / "link").is_dir() and not (root / "set" / "link").is_symlink()
    assert not any(p.is_symlink() for p in (root / "set").rglob("*"))


def test_a_zip_bomb_is_refused_before_writing(local_client: TestClient, root: Path) -> None:
    archive = zip_bomb(2 * 1024**3)
    assert len(archive) < 3 * 1024 * 1024
    started = time.monotonic()
    response = send(local_client, archive)
    assert response.status_code == 413
    assert "zip bomb" in response.json()["detail"] and "TUNEFORGE_ZIP_MAX_RATIO" in response.json()["detail"]
    assert time.monotonic() - started < 10
    assert tree(root / "set") == set()
    assert leftovers(root) == []


def test_total_size_limit(workspace: Path) -> None:
    from tuneforge.api.app import create_app

    app = create_app(Settings(workspace=workspace, zip_max_uncompressed_bytes=1000))
    (workspace / "datasets" / "set").mkdir(parents=True)
    with TestClient(app, base_url="http://localhost:8001", client=("127.0.0.1", 1)) as client:
        response = send(client, make_zip({"a.txt": b"a" * 600, "b.txt": b"b" * 600}))
    assert response.status_code == 413 and "TUNEFORGE_ZIP_MAX_UNCOMPRESSED_BYTES" in response.json()["detail"]
    assert tree(workspace / "datasets" / "set") == set()


def test_two_hundred_thousand_entries_are_refused_quickly(local_client: TestClient, root: Path) -> None:
    archive = many_entries_zip(200_000)
    assert len(zipfile.ZipFile(__import__("io").BytesIO(archive)).namelist()) == 200_000
    started = time.monotonic()
    response = send(local_client, archive)
    assert response.status_code == 413
    assert "200000 entries" in response.json()["detail"] and "TUNEFORGE_ZIP_MAX_ENTRIES" in response.json()["detail"]
    assert time.monotonic() - started < 10
    assert tree(root / "set") == set()
    assert leftovers(root) == []


@pytest.mark.parametrize("archive", [b"not a zip at all", b"PK\x03\x04" + b"\x00" * 100,
                                     make_zip({"a.txt": b"x"})[:-30]])
def test_corrupt_zips_are_400(local_client: TestClient, root: Path, archive: bytes) -> None:
    response = send(local_client, archive)
    assert response.status_code == 400
    assert "zip" in response.json()["detail"]
    assert tree(root / "set") == set()
    assert leftovers(root) == []


def test_a_corrupt_entry_is_skipped_and_the_rest_extracted(local_client: TestClient, root: Path) -> None:
    archive = bytearray(make_zip({"bad.txt": os.urandom(4000), "good.txt": b"fine"}))
    start = archive.index(b"bad.txt") + len("bad.txt")
    archive[start + 100:start + 140] = b"\xff" * 40  # damage the compressed data of the first entry
    report = send(local_client, bytes(archive)).json()
    result = {f["name"]: (f["status"], f["reason"]) for f in report["files"]}
    assert result["good.txt"] == ("written", None)
    assert result["bad.txt"][0] == "skipped" and "corrupt entry" in result["bad.txt"][1]
    assert tree(root / "set") == {"good.txt"}
    assert leftovers(root) == []


def test_zip_name_clashes_are_reported(local_client: TestClient, root: Path) -> None:
    (root / "set" / "a.txt").write_bytes(b"mine")
    report = send(local_client, make_zip({"a.txt": b"theirs"})).json()
    assert report["files"][0]["status"] == "renamed" and report["files"][0]["path"] == "set/a (1).txt"
    assert (root / "set" / "a.txt").read_bytes() == b"mine"


def test_zip_target_outside_root_and_missing_file(local_client: TestClient, root: Path) -> None:
    assert send(local_client, make_zip({"a.txt": b"x"}), target="/tmp").status_code == 403
    assert send(local_client, make_zip({"a.txt": b"x"}), target="../..").status_code == 403
    missing = local_client.post("/api/datasets/upload/zip", data={"target_path": "set"})
    assert missing.status_code == 400
    assert leftovers(root) == []
