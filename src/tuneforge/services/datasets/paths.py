"""Paths inside the datasets root: form-field paths, uploaded file names and zip entry names.

Two kinds of input:
- a *location* (`parent_path`, `target_path`, `path`): absolute under the root, or relative to it; resolved with
  symlinks followed, so a link that points outside the root is refused like `..` is;
- a *name* (an uploaded file name or a zip entry): a relative path whose every part is checked on its own; it may
  keep sub-folders (`cats/001.png`) but never climbs, never starts at `/` or a drive, never hides.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
from pathlib import Path

from tuneforge.errors import BadRequest, Forbidden, NotFound
from tuneforge.schemas.types import BLANK, CONTROL

MAX_NAME_BYTES = 255  # one path component, as on ext4, xfs, btrfs, NTFS
MAX_NAME_TOTAL_BYTES = 1024  # a whole uploaded name: leaves room for the root and target under PATH_MAX
MAX_PATH_BYTES = 4095  # Linux PATH_MAX (4096) counts the closing NUL
MAX_DEPTH = 32
MAX_LOCATION_CHARS = 4096
MAX_NAME_CHARS = MAX_NAME_BYTES // 4  # any 63 characters fit in 255 UTF-8 bytes: a limit a schema can state
# `form_name_problem` as the API schema states it; tests check that the two agree.
NAME_SCHEMA = {"type": "string", "maxLength": MAX_NAME_CHARS,
               "pattern": rf"^[^.{BLANK}/\\{CONTROL}](?:[^/\\{CONTROL}]*[^{BLANK}/\\{CONTROL}])?$"}
LOCATION_SCHEMA = {"type": "string", "maxLength": MAX_LOCATION_CHARS, "pattern": r"^[^\x00]*$"}
_DRIVE = re.compile(r"^[A-Za-z]:")


class UnsafeName(ValueError):
    """A file or entry name that must not be written; the message is the reason shown to the caller."""


def component_problem(name: str) -> str | None:
    """Why one path component is not acceptable, or None."""
    if name in ("", ".", ".."):
        return f"'{name}' is not a usable name" if name else "empty name"
    if "\x00" in name:
        return "contains a NUL byte"
    if any(ord(char) < 32 or 127 <= ord(char) < 160 for char in name):
        return "contains a control character"
    if "/" in name or "\\" in name:
        return "contains a path separator"
    if len(name.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
        return f"longer than {MAX_NAME_BYTES} bytes"
    if name.startswith("."):
        return "hidden names (starting with '.') are not accepted"
    return None


def form_name_problem(name: str) -> str | None:
    """Why a single name sent in a form field (a new folder's) is not acceptable, or None: a component, short
    enough for the schema to say, without blanks around it."""
    problem = component_problem(name)
    if problem is None and len(name) > MAX_NAME_CHARS:
        problem = f"longer than {MAX_NAME_CHARS} characters"
    if problem is None and name != name.strip():
        problem = "starts or ends with a blank"
    return problem


def split_name(raw: str) -> list[str]:
    """The parts of an uploaded name (`a/b.png` → `["a", "b.png"]`); raises UnsafeName.

    Backslashes count as separators: Windows tools write them into zips, and `..\\x` must not pass as one name.
    """
    if "\x00" in raw:
        raise UnsafeName("contains a NUL byte")
    text = raw.replace("\\", "/")
    if text.startswith("/") or _DRIVE.match(text):
        raise UnsafeName("absolute paths are not accepted")
    parts = [part for part in text.split("/") if part not in ("", ".")]
    if not parts:
        raise UnsafeName("empty name")
    if ".." in parts:
        raise UnsafeName("'..' is not accepted in names")
    if len(parts) > MAX_DEPTH:
        raise UnsafeName(f"more than {MAX_DEPTH} folder levels")
    for part in parts:
        problem = component_problem(part)
        if problem:
            raise UnsafeName(f"'{part}': {problem}")
    if len("/".join(parts).encode("utf-8", "surrogatepass")) > MAX_NAME_TOTAL_BYTES:
        raise UnsafeName(f"longer than {MAX_NAME_TOTAL_BYTES} bytes in all")
    return parts


def real_root(root: Path) -> Path:
    return Path(os.path.realpath(root))


def is_inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def resolve_location(root: Path, raw: str | None, field: str) -> Path:
    """The real path of a form-field location, which must lie inside the datasets root (403 otherwise)."""
    text = (raw or "").strip()
    if "\x00" in text:
        raise BadRequest(f"{field} contains a NUL byte: send a plain path")
    if len(text) > MAX_LOCATION_CHARS:
        raise BadRequest(f"{field} is longer than {MAX_LOCATION_CHARS} characters")
    base = real_root(root)
    text = text.replace("\\", "/")
    # The filesystem answers an over-long name with ENAMETOOLONG: no such folder can exist.
    if any(len(part.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES for part in text.split("/")):
        raise NotFound(f"{field} has a folder name longer than {MAX_NAME_BYTES} bytes: no folder can be named so")
    candidate = Path(text) if text.startswith("/") else base / text
    if _DRIVE.match(text):
        candidate = Path("/nonexistent-drive") / text  # a Windows drive is never inside the root
    resolved = Path(os.path.realpath(candidate))
    if len(os.fsencode(resolved)) > MAX_PATH_BYTES:
        raise NotFound(f"{field} is longer than {MAX_PATH_BYTES} bytes once joined to the datasets root: no folder "
                       "can be there")
    if not is_inside(resolved, base):
        raise Forbidden(
            f"{field} must be inside the datasets root {base}: send a path relative to it "
            f"(e.g. 'my-dataset') or an absolute path under it"
        )
    hidden = [part for part in resolved.relative_to(base).parts if part.startswith(".")]
    if hidden:
        raise Forbidden(f"{field}: hidden folders ('{hidden[0]}') inside the datasets root are not accessible")
    return resolved


def existing_folder(root: Path, raw: str | None, field: str) -> Path:
    """Like `resolve_location`, and the folder must exist (404 otherwise)."""
    folder = resolve_location(root, raw, field)
    if not folder.is_dir():
        raise NotFound(
            f"{field} '{display(folder, root)}' is not an existing folder: create it first with "
            "POST /api/datasets/folders"
        )
    return folder


def display(path: Path, root: Path) -> str:
    """A path as shown to callers: relative to the root when inside it."""
    base = real_root(root)
    try:
        relative = path.relative_to(base)
    except ValueError:
        return str(path)
    return relative.as_posix() if relative.parts else "."


def ensure_subfolder(target: Path, parts: list[str]) -> Path:
    """Create `target/parts...` one level at a time and check that no link leads it out of `target`.

    Raises UnsafeName when a part clashes with a file or escapes through a pre-existing link, and OSError when the
    filesystem refuses (a full disk, a path over PATH_MAX); either way the folders this call made are removed, so
    a refused name leaves no empty folders behind.
    """
    folder = target
    created: list[Path] = []
    try:
        for part in parts:
            folder = folder / part
            try:
                folder.mkdir()
                created.append(folder)
            except FileExistsError:
                if not folder.is_dir():
                    raise UnsafeName(f"'{part}' already exists as a file, not a folder") from None
            if folder.is_symlink() or not is_inside(Path(os.path.realpath(folder)), target):
                raise UnsafeName(f"folder '{part}' is a link; links are not followed")
    except (OSError, UnsafeName):
        for made in reversed(created):
            with contextlib.suppress(OSError):
                made.rmdir()
        raise
    return folder


def is_disk_full(exc: OSError) -> bool:
    """A full disk or quota is the whole request's problem (507), not one file's."""
    return exc.errno in (errno.ENOSPC, errno.EDQUOT)
