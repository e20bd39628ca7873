"""Zip uploads against hostile archives: nothing outside the target, nothing partial, limits before writing."""

from __future__ import annotations

import io
import os
import time
import zipfile
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from datasets_support import (
    client_with,
    encrypt_first_entry,
    leftovers,
    lying_zip,
    make_zip,
    many_entries_zip,
    outside,
    png_bytes,
    tree,
    zeros_zip,
    zip_bomb,
)
from tuneforge.settings import Settings


@pytest.fixture
def root(settings: Settings) -> Path:
    (settings.datasets_root / "set").mkdir()
    return settings.datasets_root


def send(client: TestClient, archive: bytes, target: str = "set"):
    return client.post("/api/datasets/upload/zip", data={"target_path": target},
                       files={"file": ("dataset.zip", archive, "application/zip")})


def refused_quickly(client: TestClient, archive: bytes, root: Path, *phrases: str) -> None:
    """The archive is refused with 413 within seconds, the detail naming each phrase, and nothing is written."""
    started = time.monotonic()
    response = send(client, archive)
    assert response.status_code == 413, response.text
    detail = response.json()["detail"]
    assert all(phrase in detail for phrase in phrases), detail
    assert time.monotonic() - started < 10
    assert tree(root / "set") == set()
    assert leftovers(root) == []


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
    before = outside(workspace)
    hostile = ["../evil.txt", "../../evil.txt", "/tmp/evil.txt", "a/../../evil.txt", "..\\evil.txt",
               "C:/evil.txt", "c:\\evil.txt", "ok/\x01.txt", "x" * 300 + ".txt"]
    report = send(local_client, make_zip({name: b"x" for name in hostile} | {"good.txt": b"ok"})).json()
    assert report["files_uploaded"] == 1 and report["files_skipped"] == len(hostile)
    assert tree(root / "set") == {"good.txt"}
    assert outside(workspace) == before
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
    refused_quickly(local_client, archive, root, "zip bomb", "TUNEFORGE_ZIP_MAX_RATIO")


def test_many_entries_just_under_the_per_entry_floor_are_a_bomb_too(local_client: TestClient, root: Path) -> None:
    # Each entry (1 MiB - 1 zeros) is below the per-entry ratio floor; together 300 MB from a 330 KB zip.
    archive = zeros_zip(300, 1024 * 1024 - 1)
    assert len(archive) < 400 * 1024
    refused_quickly(local_client, archive, root, "The zip expands", "zip bomb", "TUNEFORGE_ZIP_MAX_RATIO")


def test_total_size_limit(workspace: Path) -> None:
    with client_with(workspace, zip_max_uncompressed_bytes=1000) as client:
        (workspace / "datasets" / "set").mkdir()
        refused_quickly(client, make_zip({"a.txt": b"a" * 600, "b.txt": b"b" * 600}), workspace / "datasets",
                        "TUNEFORGE_ZIP_MAX_UNCOMPRESSED_BYTES")


def test_two_hundred_thousand_entries_are_refused_quickly(local_client: TestClient, root: Path) -> None:
    archive = many_entries_zip(200_000)
    assert len(zipfile.ZipFile(io.BytesIO(archive)).namelist()) == 200_000
    refused_quickly(local_client, archive, root, "200000 entries", "TUNEFORGE_ZIP_MAX_ENTRIES")


def test_an_end_record_that_understates_the_entries_is_not_believed(local_client: TestClient, root: Path) -> None:
    # 2 million central-directory records behind a claim of 5: zipfile would parse them all (~700 MB, ~20 s).
    archive = lying_zip(2_000_000, claimed=5)
    refused_quickly(local_client, archive, root, "more than 100000 entries", "TUNEFORGE_ZIP_MAX_ENTRIES")


def test_a_small_lying_zip_is_counted_exactly(workspace: Path) -> None:
    with client_with(workspace, zip_max_entries=3) as client:
        (workspace / "datasets" / "set").mkdir()
        refused_quickly(client, lying_zip(4, claimed=1), workspace / "datasets", "more than 3 entries")
        report = send(client, lying_zip(3, claimed=1)).json()  # at the limit: parsed, same name thrice
        assert [f["status"] for f in report["files"]] == ["written", "unchanged", "unchanged"]


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


def test_an_existing_link_in_the_target_is_never_followed(local_client: TestClient, root: Path,
                                                          workspace: Path) -> None:
    elsewhere = workspace.parent / "elsewhere"
    elsewhere.mkdir()
    os.symlink(elsewhere, root / "set" / "out")
    os.symlink(elsewhere / "victim.txt", root / "set" / "victim.txt")
    before = outside(workspace)
    report = send(local_client, make_zip({"out/x.txt": b"through the link?", "victim.txt": b"through it?"})).json()
    result = {f["name"]: (f["status"], f["reason"], f["path"]) for f in report["files"]}
    assert result["out/x.txt"] == ("skipped", "folder 'out' is a link; links are not followed", None)
    assert result["victim.txt"] == ("renamed", "a different file named 'victim.txt' already exists",
                                    "set/victim (1).txt")
    assert outside(workspace) == before and list(elsewhere.iterdir()) == []
    assert send(local_client, make_zip({"x.txt": b"x"}), target="set/out").status_code == 403


def test_a_link_entry_before_the_files_under_it(local_client: TestClient, root: Path, workspace: Path) -> None:
    before = outside(workspace)
    archive = make_zip({"link/passwd.txt": b"through the link?"}, symlinks={"link": str(workspace.parent)},
                       links_first=True)
    assert zipfile.ZipFile(io.BytesIO(archive)).namelist() == ["link", "link/passwd.txt"]
    report = send(local_client, archive).json()
    assert [(f["name"], f["status"], f["reason"]) for f in report["files"]] == [
        ("link", "skipped", "symbolic links are not extracted"), ("link/passwd.txt", "written", None)]
    assert not (root / "set" / "link").is_symlink()
    assert (root / "set" / "link" / "passwd.txt").read_bytes() == b"through the link?"
    assert outside(workspace) == before


def test_encrypted_entries_are_skipped(local_client: TestClient, root: Path) -> None:
    archive = encrypt_first_entry(make_zip({"secret.txt": b"x", "plain.txt": b"y"}))
    response = send(local_client, archive)
    assert response.status_code == 200, response.text
    result = {f["name"]: (f["status"], f["reason"]) for f in response.json()["files"]}
    assert result == {"secret.txt": ("skipped", "encrypted entries are not supported: zip without a password"),
                      "plain.txt": ("written", None)}
    assert tree(root / "set") == {"plain.txt"}


def test_names_over_the_total_length_cap_are_skipped(local_client: TestClient, root: Path) -> None:
    long_name = "/".join(["d" * 250] * 4) + "/x.txt"  # every part fine, 1010 bytes in all
    too_long = "/".join(["d" * 250] * 5) + "/x.txt"
    report = send(local_client, make_zip({too_long: b"x", long_name: b"y"})).json()
    result = {f["name"]: (f["status"], f["reason"]) for f in report["files"]}
    assert result[too_long] == ("skipped", "longer than 1024 bytes in all")
    assert result[long_name][0] == "written"
    assert (root / "set" / long_name).read_bytes() == b"y"


def test_a_name_over_path_max_skips_that_entry_only(local_client: TestClient, root: Path) -> None:
    deep = Path("set", *["t" * 250] * 14)  # a real folder near PATH_MAX (4096 bytes with the root)
    (root / deep).mkdir(parents=True)
    name = "/".join(["n" * 200] * 3) + "/x.txt"  # under the 1024-byte cap, but the full path is over 4096
    assert len(str(root / deep / name).encode()) > 4096
    response = send(local_client, make_zip({name: b"x", "ok.txt": b"y"}), target=str(deep))
    assert response.status_code == 200, response.text
    result = {f["name"]: (f["status"], f["reason"]) for f in response.json()["files"]}
    assert result[name] == ("skipped", "could not be stored: File name too long")
    assert result["ok.txt"] == ("written", None)
    assert tree(root / deep) == {"ok.txt"}  # no empty folders left from the refused name
    assert leftovers(root) == []
