"""Folders, file uploads and browsing over HTTP, on the real app, real SQLite and real files."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from datasets_support import bomb_png, client_with, leftovers, make_zip, multipart, outside, png_bytes, tree
from tuneforge.settings import Settings


@pytest.fixture
def root(settings: Settings) -> Path:
    return settings.datasets_root


def upload(client: TestClient, target: str, files: list[tuple[str, bytes]], field: str = "files[]") -> dict:
    response = client.post("/api/datasets/upload", data={"target_path": target},
                           files=[(field, (name, data, "application/octet-stream")) for name, data in files])
    assert response.status_code == 200, response.text
    return response.json()


def statuses(report: dict) -> dict[str, tuple[str, str | None]]:
    return {f["name"]: (f["status"], f["reason"]) for f in report["files"]}


def test_tutorial_flow_with_absolute_paths(local_client: TestClient, root: Path) -> None:
    form = {"parent_path": str(root), "folder_name": "pixart-upload"}
    created = local_client.post("/api/datasets/folders", data=form)
    assert created.status_code == 201
    assert created.json() == {"path": str(root / "pixart-upload"), "name": "pixart-upload"}
    report = upload(local_client, str(root / "pixart-upload"),
                    [("image001.png", png_bytes()), ("image001.txt", b"a red square")])
    assert report["files_uploaded"] == 2 and report["files_skipped"] == 0 and report["errors"] == []
    assert report["target_path"] == str(root / "pixart-upload")
    assert (root / "pixart-upload" / "image001.txt").read_bytes() == b"a red square"
    assert (root / "pixart-upload" / "image001.png").read_bytes() == png_bytes()


def test_files_field_and_relative_target_and_metadata(local_client: TestClient, root: Path) -> None:
    (root / "set").mkdir()
    names = ["meta.json", "meta.jsonl", "meta.csv", "meta.parquet", "sub/a.jpg"]
    jpeg = png_bytes(color="green", format="JPEG")
    report = upload(local_client, "set", [(n, jpeg if n.endswith(".jpg") else b"{}") for n in names], field="files")
    assert report["files_uploaded"] == 5
    assert (root / "set" / "sub" / "a.jpg").is_file()


def test_existing_folder_is_a_conflict(local_client: TestClient, root: Path) -> None:
    (root / "taken").mkdir()
    response = local_client.post("/api/datasets/folders", json={"parent_path": "", "folder_name": "taken"})
    assert response.status_code == 409
    assert "already exists" in response.json()["detail"]


@pytest.mark.parametrize("name", ["../escape", "..", "a/b", "/abs", ".hidden", "nul\x00name", "x" * 300])
def test_bad_folder_names(local_client: TestClient, workspace: Path, name: str) -> None:
    before = outside(workspace)
    response = local_client.post("/api/datasets/folders", data={"parent_path": "", "folder_name": name})
    assert response.status_code == 400, response.text
    assert "folder_name" in response.json()["detail"]
    assert outside(workspace) == before


@pytest.mark.parametrize("parent", ["..", "../..", "/etc", "/tmp", "../workspace/config", "..\\.."])
def test_parent_outside_the_root_is_forbidden(local_client: TestClient, workspace: Path, parent: str) -> None:
    before = outside(workspace)
    response = local_client.post("/api/datasets/folders", data={"parent_path": parent, "folder_name": "x"})
    assert response.status_code == 403
    assert "inside the datasets root" in response.json()["detail"]
    assert outside(workspace) == before


@pytest.mark.parametrize("target", ["..", "/etc", "/tmp", "../config", "pixart/../../.."])
def test_upload_target_outside_the_root_is_forbidden(local_client: TestClient, workspace: Path, target: str) -> None:
    before = outside(workspace)
    response = local_client.post("/api/datasets/upload", data={"target_path": target},
                                 files=[("files[]", ("a.txt", b"x", "text/plain"))])
    assert response.status_code == 403
    assert outside(workspace) == before
    assert leftovers(workspace) == []


def test_hostile_file_names_are_skipped_with_reasons(local_client: TestClient, workspace: Path, root: Path) -> None:
    (root / "set").mkdir()
    before = outside(workspace)
    hostile = ["../escape.txt", "../../escape.txt", "/etc/escape.txt", "..\\escape.txt", "sub/../../escape.txt",
               "a\\..\\..\\escape.txt", ".bashrc.txt", "sub/.ssh/key.txt"]
    # An old browser's full Windows path is cut to its last part by the multipart parser: harmless.
    fine = [("fine.txt", b"ok"), ("C:\\Users\\me\\win.txt", b"ok")]
    report = upload(local_client, "set", [(name, b"x") for name in hostile] + fine)
    assert report["files_uploaded"] == 2 and report["files_skipped"] == len(hostile)
    assert len(report["errors"]) == len(hostile)
    assert outside(workspace) == before
    assert tree(root / "set") == {"fine.txt", "win.txt"}
    assert leftovers(workspace) == []


def test_non_images_with_image_extensions_and_other_types(local_client: TestClient, root: Path) -> None:
    (root / "set").mkdir()
    report = upload(local_client, "set", [("fake.png", b"<html>not an image</html>"), ("run.sh", b"rm -rf /"),
                                          ("noext", b"?"), ("real.png", png_bytes())])
    result = statuses(report)
    assert result["fake.png"] == ("skipped", "not a decodable image")
    assert "'.sh' files are not accepted" in result["run.sh"][1]
    assert "without an extension" in result["noext"][1]
    assert result["real.png"][0] == "written"
    assert tree(root / "set") == {"real.png"}
    assert leftovers(root) == []


def test_name_clashes_never_overwrite(local_client: TestClient, root: Path) -> None:
    (root / "set").mkdir()
    upload(local_client, "set", [("a.txt", b"first")])
    again = upload(local_client, "set", [("a.txt", b"first"), ("a.txt", b"second"), ("a.txt", b"third")])["files"]
    assert [(f["status"], f["path"]) for f in again] == [
        ("unchanged", "set/a.txt"), ("renamed", "set/a (1).txt"), ("renamed", "set/a (2).txt")]
    files = upload(local_client, "set", [("b.txt", b"one")])["files"]
    assert files[0]["status"] == "written"
    report = upload(local_client, "set", [("a.txt", b"first"), ("a.txt", b"fourth")])
    assert [f["status"] for f in report["files"]] == ["unchanged", "renamed"]
    assert report["errors"] == [] and report["files_unchanged"] == 1 and report["files_uploaded"] == 1
    assert report["files"][0]["reason"] == "an identical file already exists"
    assert (root / "set" / "a.txt").read_bytes() == b"first"
    contents = sorted((root / "set" / name).read_bytes() for name in tree(root / "set") if name.startswith("a"))
    assert contents == [b"first", b"fourth", b"second", b"third"]
    skip = local_client.post("/api/datasets/upload", data={"target_path": "set", "on_conflict": "skip"},
                             files=[("files[]", ("a.txt", b"fifth", "text/plain"))]).json()
    assert skip["files"][0]["status"] == "skipped" and "on_conflict=skip" in skip["files"][0]["reason"]


def test_files_sent_before_target_path_are_still_stored(local_client: TestClient, root: Path) -> None:
    (root / "set").mkdir()
    body, content_type = multipart([("files[]", "late.txt", b"caption"), ("target_path", None, b"set")])
    response = local_client.post("/api/datasets/upload", content=body, headers={"content-type": content_type})
    assert response.status_code == 200, response.text
    assert (root / "set" / "late.txt").read_bytes() == b"caption"
    assert leftovers(root) == []


def test_missing_target_and_missing_files(local_client: TestClient, root: Path) -> None:
    body, content_type = multipart([("files[]", "a.txt", b"x")])
    response = local_client.post("/api/datasets/upload", content=body, headers={"content-type": content_type})
    assert response.status_code == 400 and "target_path is required" in response.json()["detail"]
    assert leftovers(root) == []
    response = local_client.post("/api/datasets/upload", data={"target_path": ""}, files=[])
    assert response.status_code == 400
    missing = local_client.post("/api/datasets/upload", data={"target_path": "nope"},
                                files=[("files[]", ("a.txt", b"x", "text/plain"))])
    assert missing.status_code == 404 and "POST /api/datasets/folders" in missing.json()["detail"]


def test_truncated_body_stores_nothing(local_client: TestClient, root: Path) -> None:
    (root / "set").mkdir()
    body, content_type = multipart([("target_path", None, b"set"), ("files[]", "a.txt", b"x" * 10000)])
    response = local_client.post("/api/datasets/upload", content=body[:5000], headers={"content-type": content_type})
    assert response.status_code == 400 and "cut short" in response.json()["detail"]
    assert tree(root / "set") == set()
    assert leftovers(root) == []


def test_body_limit_is_413_with_and_without_content_length(workspace: Path) -> None:
    body, content_type = multipart([("target_path", None, b"set"), ("files[]", "a.txt", b"x" * 10000)])
    with client_with(workspace, max_upload_bytes=4096) as client:
        (workspace / "datasets" / "set").mkdir()
        declared = client.post("/api/datasets/upload", content=body, headers={"content-type": content_type})
        streamed = client.post("/api/datasets/upload", content=iter([body[:3000], body[3000:]]),
                               headers={"content-type": content_type})
    for response in (declared, streamed):
        assert response.status_code == 413
        assert "TUNEFORGE_MAX_UPLOAD_BYTES" in response.json()["detail"]
    assert tree(workspace / "datasets" / "set") == set()
    assert leftovers(workspace) == []


def test_not_multipart_is_400(local_client: TestClient) -> None:
    response = local_client.post("/api/datasets/upload", json={"target_path": "x"})
    assert response.status_code == 400 and "multipart/form-data" in response.json()["detail"]


def test_browse_counts_images_and_captions(local_client: TestClient, root: Path) -> None:
    (root / "set" / "sub").mkdir(parents=True)
    upload(local_client, "set", [("a.png", png_bytes()), ("a.txt", b"cap"), ("b.png", png_bytes(color="blue"))])
    listing = local_client.get("/api/datasets/browse").json()
    assert listing["relative_path"] == "." and listing["parent"] is None
    assert listing["folders"] == [{"name": "set", "path": str(root / "set"), "relative_path": "set",
                                   "image_count": 2, "caption_count": 1, "folder_count": 1}]
    inner = local_client.get("/api/datasets/browse", params={"path": str(root / "set")}).json()
    assert inner["image_count"] == 2 and inner["parent"] == str(root)
    assert local_client.get("/api/datasets/browse", params={"path": "../"}).status_code == 403


def test_anonymous_callers_are_refused(anonymous: TestClient, root: Path, workspace: Path) -> None:
    (root / "set").mkdir()
    before = tree(root)
    assert anonymous.post("/api/datasets/folders", data={"parent_path": "", "folder_name": "x"}).status_code == 401
    files = [("files[]", ("a.txt", b"x", "text/plain"))]
    assert anonymous.post("/api/datasets/upload", data={"target_path": "set"}, files=files).status_code == 401
    zipped = [("file", ("a.zip", b"PK", "application/zip"))]
    assert anonymous.post("/api/datasets/upload/zip", data={"target_path": "set"}, files=zipped).status_code == 401
    assert anonymous.get("/api/datasets/browse").status_code == 401
    assert tree(root) == before


def test_viewers_browse_but_cannot_upload(make_user: Callable[[str, str], TestClient], root: Path) -> None:
    (root / "set").mkdir()
    viewer = make_user("viewer1", "viewer")
    assert viewer.get("/api/datasets/browse").status_code == 200
    response = viewer.post("/api/datasets/upload", data={"target_path": "set"},
                           files=[("files[]", ("a.txt", b"x", "text/plain"))])
    assert response.status_code == 403 and "dataset.upload" in response.json()["detail"]
    assert viewer.post("/api/datasets/folders", data={"folder_name": "x"}).status_code == 403
    assert tree(root) == {"set"}
    researcher = make_user("researcher1", "researcher")
    assert upload(researcher, "set", [("a.txt", b"x")])["files_uploaded"] == 1


def test_routes_are_documented_under_the_datasets_tag(local_client: TestClient) -> None:
    paths = local_client.get("/openapi.json").json()["paths"]
    for path, method in [("/api/datasets/folders", "post"), ("/api/datasets/upload", "post"),
                         ("/api/datasets/upload/zip", "post"), ("/api/datasets/browse", "get")]:
        assert paths[path][method]["tags"] == ["datasets"]
    assert "files[]" in str(paths["/api/datasets/upload"]["post"]["requestBody"])


def test_staging_left_by_a_dead_server_is_dropped_at_start(settings: Settings) -> None:
    from tuneforge.api.app import create_app

    staging = settings.datasets_root / ".tf-staging"
    staging.mkdir(parents=True)
    (staging / "half.part").write_bytes(b"x" * 10)
    create_app(settings)
    assert not staging.exists()


LONG_PART = "set/" + "x" * 300
LONG_PATH = "/".join(["y" * 250] * 16) + "/" + "z" * 40  # parts fine, 4056 characters: over PATH_MAX with the root


@pytest.mark.parametrize("location", [LONG_PART, LONG_PATH])
def test_overlong_locations_are_404_naming_the_field(local_client: TestClient, root: Path, location: str) -> None:
    (root / "set").mkdir()
    files = [("files[]", ("a.txt", b"x", "text/plain"))]
    archive = [("file", ("a.zip", make_zip({"a.txt": b"x"}), "application/zip"))]
    answers = [
        ("target_path", local_client.post("/api/datasets/upload", data={"target_path": location}, files=files)),
        ("target_path", local_client.post("/api/datasets/upload/zip", data={"target_path": location}, files=archive)),
        ("path", local_client.get("/api/datasets/browse", params={"path": location})),
        ("parent_path", local_client.post("/api/datasets/folders", data={"parent_path": location, "folder_name": "a"})),
    ]
    for field, response in answers:  # no folder can be there: a location that does not exist
        assert response.status_code == 404, (field, response.text)
        assert response.json()["detail"].startswith(f"{field} "), response.text
    assert tree(root) == {"set"}


def test_names_too_long_for_the_filesystem_skip_only_themselves(local_client: TestClient, root: Path) -> None:
    deep = Path("set", *["t" * 250] * 14)  # a real folder near PATH_MAX (4096 bytes with the root)
    (root / deep).mkdir(parents=True)
    over_path_max = "/".join(["n" * 200] * 3) + "/x.txt"  # under the 1024-byte cap; the full path is not
    over_cap = "/".join(["d" * 250] * 5) + "/x.txt"
    report = upload(local_client, str(deep), [(over_path_max, b"a"), (over_cap, b"b"), ("ok.txt", b"c")])
    assert statuses(report) == {over_path_max: ("skipped", "could not be stored: File name too long"),
                                over_cap: ("skipped", "longer than 1024 bytes in all"), "ok.txt": ("written", None)}
    assert tree(root / deep) == {"ok.txt"}  # no empty folders left from the refused names
    assert leftovers(root) == []


def test_reuploading_a_file_that_was_renamed_changes_nothing(local_client: TestClient, root: Path) -> None:
    (root / "set").mkdir()
    upload(local_client, "set", [("a.txt", b"first")])
    assert upload(local_client, "set", [("a.txt", b"second")])["files"][0]["path"] == "set/a (1).txt"
    again = upload(local_client, "set", [("a.txt", b"second"), ("a.txt", b"first"), ("a.txt", b"second")])
    assert [(f["status"], f["path"]) for f in again["files"]] == [
        ("unchanged", "set/a (1).txt"), ("unchanged", "set/a.txt"), ("unchanged", "set/a (1).txt")]
    skip = local_client.post("/api/datasets/upload", data={"target_path": "set", "on_conflict": "skip"},
                             files=[("files[]", ("a.txt", b"second", "text/plain"))]).json()
    assert skip["files"][0]["status"] == "unchanged" and skip["files"][0]["path"] == "set/a (1).txt"
    assert tree(root / "set") == {"a.txt", "a (1).txt"}


def test_a_truncated_jpeg_is_not_stored(local_client: TestClient, root: Path) -> None:
    (root / "set").mkdir()
    jpeg = png_bytes((256, 256), color="noise", format="JPEG")
    report = upload(local_client, "set", [("cut.jpg", jpeg[: len(jpeg) // 3]), ("whole.jpg", jpeg)])
    assert statuses(report) == {"cut.jpg": ("skipped", "not a decodable image"), "whole.jpg": ("written", None)}
    assert tree(root / "set") == {"whole.jpg"}


def test_a_decompression_bomb_image_is_not_stored(local_client: TestClient, root: Path) -> None:
    (root / "set").mkdir()
    report = upload(local_client, "set", [("huge.png", bomb_png()), ("fine.png", png_bytes())])
    assert statuses(report)["huge.png"] == ("skipped", "image has too many pixels to decode safely")
    assert tree(root / "set") == {"fine.png"}


def test_an_existing_link_in_the_target_is_never_followed(local_client: TestClient, root: Path,
                                                          workspace: Path) -> None:
    (root / "set").mkdir()
    elsewhere = workspace.parent / "elsewhere"
    elsewhere.mkdir()
    os.symlink(elsewhere, root / "set" / "out")
    os.symlink(elsewhere / "victim.txt", root / "set" / "victim.txt")
    before = outside(workspace)
    report = upload(local_client, "set", [("out/x.txt", b"through the link?"), ("victim.txt", b"through it?")])
    assert statuses(report)["out/x.txt"] == ("skipped", "folder 'out' is a link; links are not followed")
    assert [f["path"] for f in report["files"]] == [None, "set/victim (1).txt"]
    assert outside(workspace) == before and list(elsewhere.iterdir()) == []


def test_files_per_request_limit(workspace: Path) -> None:
    with client_with(workspace, zip_max_entries=3) as client:
        (workspace / "datasets" / "set").mkdir()
        files = [("files[]", (f"{n}.txt", b"x", "text/plain")) for n in range(4)]
        response = client.post("/api/datasets/upload", data={"target_path": "set"}, files=files)
        assert response.status_code == 413 and "More than 3 files" in response.json()["detail"]
        assert upload(client, "set", [(f"{n}.txt", b"x") for n in range(3)])["files_uploaded"] == 3
    assert leftovers(workspace) == []


def test_a_linked_staging_folder_is_refused(local_client: TestClient, root: Path, workspace: Path) -> None:
    (root / "set").mkdir()
    elsewhere = workspace.parent / "elsewhere"
    elsewhere.mkdir(mode=0o755)
    os.symlink(elsewhere, root / ".tf-staging")
    zipped = local_client.post("/api/datasets/upload/zip", data={"target_path": "set"},
                               files=[("file", ("a.zip", make_zip({"a.txt": b"x"}), "application/zip"))])
    body, content_type = multipart([("files[]", "early.txt", b"x"), ("target_path", None, b"set")])
    early = local_client.post("/api/datasets/upload", content=body, headers={"content-type": content_type})
    for response in (zipped, early):
        assert response.status_code == 400 and "must be a plain folder" in response.json()["detail"]
    assert list(elsewhere.iterdir()) == [] and stat.S_IMODE(elsewhere.stat().st_mode) == 0o755
    assert tree(root / "set") == set()


def test_form_fields_over_64_kib_are_refused(local_client: TestClient, root: Path) -> None:
    (root / "set").mkdir()
    body, content_type = multipart([("target_path", None, b"set"), ("note", None, b"n" * (64 * 1024 + 1)),
                                    ("files[]", "a.txt", b"x")])
    response = local_client.post("/api/datasets/upload", content=body, headers={"content-type": content_type})
    assert response.status_code == 400 and "longer than 65536 bytes" in response.json()["detail"]
    assert tree(root / "set") == set() and leftovers(root) == []


@pytest.mark.parametrize("value", [5, ["a"], {"a": 1}])
def test_folder_fields_must_be_text(local_client: TestClient, root: Path, value: object) -> None:
    response = local_client.post("/api/datasets/folders", json={"parent_path": "", "folder_name": value})
    assert response.status_code == 400 and "folder_name must be a string" in response.json()["detail"]
    assert tree(root) == set()


def test_the_folder_form_takes_no_files(local_client: TestClient, root: Path) -> None:
    response = local_client.post("/api/datasets/folders", data={"folder_name": "x"},
                                 files=[("file", ("a.txt", b"x", "text/plain"))])
    assert response.status_code == 400
    assert tree(root) == set()
