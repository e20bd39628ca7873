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
from tuneforge.services.datasets.report import UploadReport

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
    """Why the file is not a decodable image, or None. `verify` reads the structure without decoding pixels."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                image.verify()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        return "image has too many pixels to decode safely"
    except Exception:  # Pillow raises many kinds (OSError, SyntaxError, ValueError, ...) for bad data
        return "not a decodable image"
    return None


IDENTICAL = "identical"


class Publisher:
    """Gives each finished file its final name, never replacing an existing file.

    A clash with an identical file keeps the one there (re-running an upload is harmless); a clash with a
    different file stores the new one as `name (1).ext` ("rename") or skips it ("skip").
    """

    def __init__(self, on_conflict: str = "rename") -> None:
        self.on_conflict = on_conflict
        self._next_suffix: dict[Path, int] = {}  # keeps many clashes on one name linear, not quadratic

    def publish(self, pending: PendingFile, folder: Path, name: str) -> tuple[Path | None, bool, str | None]:
        """(final path, renamed, None) when stored, (existing path, False, IDENTICAL) when the same file is there,
        (None, False, reason) when skipped. Always drops the temp."""
        pending.close()
        try:
            return self._place(pending, folder / name)
        except OSError as exc:
            return None, False, f"could not be stored: {exc.strerror or exc}"
        finally:
            pending.discard()

    def _place(self, pending: PendingFile, wanted: Path) -> tuple[Path | None, bool, str | None]:
        if _link_new(pending.path, wanted):
            return wanted, False, None
        if _same_content(wanted, pending):
            return wanted, False, IDENTICAL
        if self.on_conflict == "skip":
            return None, False, "a different file with this name already exists (on_conflict=skip)"
        stem, ext = PurePosixPath(wanted.name).stem, PurePosixPath(wanted.name).suffix
        number = self._next_suffix.get(wanted, 1)
        while True:
            candidate = wanted.with_name(f"{stem} ({number}){ext}")
            number += 1
            if _link_new(pending.path, candidate):
                self._next_suffix[wanted] = number
                return candidate, True, None


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
        if not stat.S_ISREG(info.st_mode) or info.st_size != pending.size:
            return False
        digest = hashlib.sha256()
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        with os.fdopen(fd, "rb") as handle:
            while block := handle.read(CHUNK):
                digest.update(block)
        return digest.digest() == pending.digest
    except OSError:
        return False


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
    size = pending.size
    final, renamed, reason = publisher.publish(pending, folder, leaf)
    if final is None:
        report.skipped(shown, reason or "not stored")
    elif reason == IDENTICAL:
        report.unchanged(shown, final)
    else:
        report.stored(shown, final, size, renamed)
