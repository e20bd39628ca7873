"""Writing one file safely: a hidden temporary name in its folder, checks, then a rename that never replaces.

An interrupted upload therefore leaves at most a `.tf-upload-*.part` file, never a partial file under the final
name, and no existing file is ever overwritten: a clash is resolved by `on_conflict` and reported.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import stat
import tempfile
import warnings
from pathlib import Path, PurePosixPath

from PIL import Image

from tuneforge.services.datasets.kinds import is_image
from tuneforge.services.datasets.paths import UnsafeName, is_disk_full
from tuneforge.services.datasets.report import RENAMED, SKIPPED, UNCHANGED, WRITTEN, UploadReport

TEMP_PREFIX = ".tf-upload-"
TEMP_SUFFIX = ".part"
CHUNK = 1024 * 1024
FILE_MODE = 0o644
CONFLICT_POLICIES = ("rename", "skip")
# Filesystems without hard links (some FUSE and SMB mounts) answer with one of these.
_NO_HARDLINKS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK, errno.ENOSYS}


class PendingFile:
    """A file being received: written under a temporary name and hashed as it streams."""

    def __init__(self, folder: Path) -> None:
        fd, name = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=TEMP_SUFFIX, dir=folder)
        self.path = Path(name)
        self._file = os.fdopen(fd, "wb")
        self._hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        self._file.write(data)
        self._hash.update(data)
        self.size += len(data)

    def close(self) -> None:
        if not self._file.closed:
            os.fchmod(self._file.fileno(), FILE_MODE)
            self._file.close()

    def discard(self) -> None:
        self.close()
        self.path.unlink(missing_ok=True)

    @property
    def digest(self) -> bytes:
        return self._hash.digest()

    def move_to(self, folder: Path) -> None:
        """Move into another folder, still under a temporary name (for files sent before `target_path`)."""
        self.close()
        fd, name = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=TEMP_SUFFIX, dir=folder)
        os.close(fd)
        shutil.move(self.path, name)  # a rename on one filesystem, a copy across two
        self.path = Path(name)


def image_problem(path: Path) -> str | None:
    """Why the file is not a decodable image, or None.

    `verify` checks the structure but decodes no pixels, so a JPEG cut short passes it: the image is then opened
    again and decoded (`verify` leaves the first one unusable). Both steps run under the decompression-bomb guard.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                image.verify()
            with Image.open(path) as image:
                image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        return "image has too many pixels to decode safely"
    except Exception:  # Pillow raises many kinds (OSError, SyntaxError, ValueError, ...) for bad data
        return "not a decodable image"
    return None


CLASH_SKIPPED = "a different file with this name already exists (on_conflict=skip)"


class Publisher:
    """Gives each finished file its final name, never replacing an existing file.

    A clash with an identical file (under the name or any of its `name (n).ext` copies) keeps the one there, so
    re-running an upload is harmless; a clash with a different file stores the new one as the next free
    `name (n).ext` ("rename") or skips it ("skip").
    """

    def __init__(self, on_conflict: str = "rename") -> None:
        self.on_conflict = on_conflict
        self._copies: dict[Path, _Copies] = {}

    def publish(self, pending: PendingFile, folder: Path, name: str) -> tuple[str, Path | None]:
        """(status, path): WRITTEN or RENAMED with the new file, UNCHANGED with the identical one already there,
        SKIPPED (on_conflict=skip) with None. Always drops the temp; OSError propagates."""
        pending.close()
        try:
            return self._place(pending, folder / name)
        finally:
            pending.discard()

    def _place(self, pending: PendingFile, wanted: Path) -> tuple[str, Path | None]:
        if _link_new(pending.path, wanted):
            return WRITTEN, wanted
        copies = self._copies.get(wanted)
        if copies is None:
            copies = self._copies[wanted] = _Copies(wanted)
        same = copies.find(pending)
        if same is not None:
            return UNCHANGED, same
        if self.on_conflict == "skip":
            return SKIPPED, None
        while True:
            candidate = copies.next_name()
            if _link_new(pending.path, candidate):
                copies.add(candidate, pending)
                return RENAMED, candidate
            if _same_content(candidate, pending):  # written by another request meanwhile
                return UNCHANGED, candidate


class _Copies:
    """A name and its numbered copies (`a.txt`, `a (1).txt`, ...) in one folder, listed once per request.

    Files are hashed only when one of the same size arrives, and each at most once, so a request with many
    clashes on one name (a zip may repeat a name 100,000 times) stays linear instead of rereading every copy.
    """

    def __init__(self, wanted: Path) -> None:
        self._stem, self._ext = PurePosixPath(wanted.name).stem, PurePosixPath(wanted.name).suffix
        self._folder = wanted.parent
        self._unhashed: dict[int, list[Path]] = {}  # by size
        self._hashed: dict[tuple[int, bytes], Path] = {}  # by (size, sha256)
        self._number = 1
        self._note(wanted)
        while self._note(self._numbered(self._number)):
            self._number += 1

    def find(self, pending: PendingFile) -> Path | None:
        for path in self._unhashed.pop(pending.size, []):
            digest = _digest(path)
            if digest is not None:
                self._hashed.setdefault((pending.size, digest), path)
        return self._hashed.get((pending.size, pending.digest))

    def next_name(self) -> Path:
        self._number += 1
        return self._numbered(self._number - 1)

    def add(self, path: Path, pending: PendingFile) -> None:
        self._hashed.setdefault((pending.size, pending.digest), path)

    def _numbered(self, number: int) -> Path:
        return self._folder / f"{self._stem} ({number}){self._ext}"

    def _note(self, path: Path) -> bool:
        """Index a file already there (links and folders are never identical); False when the name is free."""
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            return False
        if stat.S_ISREG(info.st_mode):
            self._unhashed.setdefault(info.st_size, []).append(path)
        return True


def _link_new(source: Path, destination: Path) -> bool:
    """Give `source` the name `destination` unless that name exists (a link never replaces anything)."""
    try:
        os.link(source, destination)
        return True
    except FileExistsError:
        return False
    except OSError as exc:
        if exc.errno not in _NO_HARDLINKS:
            raise
    if os.path.lexists(destination):
        return False
    os.rename(source, destination)
    return True


def _same_content(path: Path, pending: PendingFile) -> bool:
    try:
        info = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISREG(info.st_mode) and info.st_size == pending.size and _digest(path) == pending.digest


def _digest(path: Path) -> bytes | None:
    """SHA-256 of a regular file, never through a link; None when it cannot be read."""
    digest = hashlib.sha256()
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        with os.fdopen(fd, "rb") as handle:
            while block := handle.read(CHUNK):
                digest.update(block)
    except OSError:
        return None
    return digest.digest()


def store(
    pending: PendingFile, folder: Path, leaf: str, shown: str, publisher: Publisher, report: UploadReport
) -> None:
    """Check a received file and give it its final name in `folder`; report either way."""
    pending.close()
    problem = image_problem(pending.path) if is_image(leaf) else None
    if problem:
        pending.discard()
        report.skipped(shown, problem)
        return
    try:
        status, path = publisher.publish(pending, folder, leaf)
    except OSError as exc:
        report.skipped(shown, refusal(exc))
        return
    if path is None:
        report.skipped(shown, CLASH_SKIPPED)
    else:
        report.placed(shown, status, path, pending.size)


def refusal(exc: UnsafeName | OSError) -> str:
    """Why one file was not stored: its name, or the filesystem's answer (a path over PATH_MAX, a permission).

    A full disk is every file's problem, not this one's: it is raised again, to end the whole request.
    """
    if isinstance(exc, OSError):
        if is_disk_full(exc):
            raise exc
        return f"could not be stored: {exc.strerror or exc}"
    return str(exc)
