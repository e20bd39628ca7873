"""Path and name rules of the datasets root, tested directly on real folders."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tuneforge.errors import BadRequest, Forbidden, NotFound
from tuneforge.services.datasets.paths import (
    NAME_SCHEMA,
    UnsafeName,
    existing_folder,
    form_name_problem,
    resolve_location,
    split_name,
)


@pytest.mark.parametrize(
    ("raw", "parts"),
    [("a.png", ["a.png"]), ("cats/001.png", ["cats", "001.png"]), ("./a//b.txt", ["a", "b.txt"]),
     ("dir\\img.png", ["dir", "img.png"])],
)
def test_safe_names_keep_their_folders(raw: str, parts: list[str]) -> None:
    assert split_name(raw) == parts


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("../evil.png", "'..'"),
        ("a/../../evil.png", "'..'"),
        ("..\\..\\evil.png", "'..'"),
        ("/etc/passwd.txt", "absolute"),
        ("\\\\server\\share\\x.txt", "absolute"),
        ("C:\\Windows\\x.txt", "absolute"),
        ("c:x.txt", "absolute"),
        ("a\x00b.png", "NUL"),
        ("bad\nname.txt", "control character"),
        ("x" * 256 + ".png", "255 bytes"),
        (".hidden.txt", "hidden"),
        ("", "empty"),
        ("/".join(["d"] * 40) + "/x.txt", "folder levels"),
        ("/".join(["d" * 250] * 5) + "/x.txt", "1024 bytes in all"),
    ],
)
def test_unsafe_names_are_refused_with_a_reason(raw: str, reason: str) -> None:
    with pytest.raises(UnsafeName, match=reason):
        split_name(raw)


def test_locations_resolve_inside_the_root(tmp_path: Path) -> None:
    root = tmp_path / "datasets"
    (root / "set").mkdir(parents=True)
    assert resolve_location(root, str(root / "set"), "target_path") == root / "set"
    assert resolve_location(root, "set", "target_path") == root / "set"
    assert resolve_location(root, "", "target_path") == root
    assert resolve_location(root, "set/../set", "target_path") == root / "set"


@pytest.mark.parametrize("raw", ["..", "../x", "/etc", "set/../../x", "..\\x", "C:\\data", "/"])
def test_locations_outside_the_root_are_forbidden(tmp_path: Path, raw: str) -> None:
    root = tmp_path / "datasets"
    (root / "set").mkdir(parents=True)
    with pytest.raises(Forbidden, match="target_path must be inside the datasets root"):
        resolve_location(root, raw, "target_path")


def test_a_prefix_sibling_is_not_inside(tmp_path: Path) -> None:
    root = tmp_path / "datasets"
    root.mkdir()
    (tmp_path / "datasets-evil").mkdir()
    with pytest.raises(Forbidden):
        resolve_location(root, str(tmp_path / "datasets-evil"), "target_path")


def test_symlinks_out_of_the_root_are_forbidden(tmp_path: Path) -> None:
    root = tmp_path / "datasets"
    root.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, root / "link")
    with pytest.raises(Forbidden):
        resolve_location(root, "link", "target_path")
    with pytest.raises(Forbidden):
        resolve_location(root, str(root / "link" / "deeper"), "target_path")


def test_nul_bytes_hidden_folders_and_missing_folders(tmp_path: Path) -> None:
    root = tmp_path / "datasets"
    (root / ".tf-staging").mkdir(parents=True)
    with pytest.raises(BadRequest, match="NUL"):
        resolve_location(root, "a\x00b", "target_path")
    with pytest.raises(Forbidden, match="hidden"):
        resolve_location(root, ".tf-staging", "target_path")
    with pytest.raises(NotFound, match="POST /api/datasets/folders"):
        existing_folder(root, "missing", "target_path")


@pytest.mark.parametrize("raw", ["set/" + "x" * 256, "/".join(["y" * 250] * 16) + "/" + "z" * 40])
def test_overlong_locations_are_refused_before_touching_the_disk(tmp_path: Path, raw: str) -> None:
    root = tmp_path / "datasets"
    (root / "set").mkdir(parents=True)
    with pytest.raises(NotFound, match="^parent_path .*no folder can"):
        existing_folder(root, raw, "parent_path")


@pytest.mark.parametrize("name", ["a", "set-1", "日本語", "a b", "a.b", "-", "x" * 63, "x" * 64, "", " a", "a ", "\ta",
                                  ".x", ".", "..", "a/b", "a\\b", "a\x00b", "a\x7fb", "a\nb", "\u00a0a", "a\u2003",
                                  "é" * 63, "\U0001f600" * 63, "\U0001f600" * 64])
def test_the_schema_of_folder_names_says_what_the_server_accepts(name: str) -> None:
    by_schema = len(name) <= NAME_SCHEMA["maxLength"] and re.fullmatch(NAME_SCHEMA["pattern"], name) is not None
    assert by_schema == (form_name_problem(name) is None), (name, form_name_problem(name))
