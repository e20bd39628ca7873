"""One upload request, from multipart parts to stored files and a report.

`UploadSession` is the `FormHandler` that `FormStream` feeds. File bytes go to a temporary file in the target
folder as they arrive (or in the root's hidden staging folder when a client sends the files before
`target_path`); nothing gets its final name until the whole body has arrived and `finish()` runs, so an interrupted
request leaves no file under a final name, and `cleanup()` removes every temporary it made.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import Any

from tuneforge.errors import BadRequest, FieldError, Invalid, TooLarge
from tuneforge.services.datasets import kinds
from tuneforge.services.datasets.files import (
    CONFLICT_POLICIES,
    TEMP_PREFIX,
    TEMP_SUFFIX,
    PendingFile,
    Publisher,
    refusal,
    store,
)
from tuneforge.services.datasets.multipart import Sink
from tuneforge.services.datasets.paths import UnsafeName, ensure_subfolder, existing_folder, real_root, split_name
from tuneforge.services.datasets.report import UploadReport
from tuneforge.services.datasets.zipfiles import ZipLimits, extract

STAGING_DIR = ".tf-staging"
FILE_FIELDS = ("files", "files[]", "file")


class UploadSession:
    """Receives the parts of one upload (`zip_mode`: one archive as `file`; otherwise any number of files)."""

    def __init__(self, root: Path, limits: ZipLimits, *, zip_mode: bool) -> None:
        self.root = real_root(root)
        self.limits = limits
        self.zip_mode = zip_mode
        self.target: Path | None = None
        self.on_conflict = "rename"
        self.report = UploadReport(self.root)
        self._received: list[tuple[str, list[str], PendingFile]] = []
        self._archive: PendingFile | None = None
        self._current: PendingFile | None = None
        self._parts = 0

    # FormHandler ----------------------------------------------------------------------------------------------

    def field(self, name: str, value: str) -> None:
        if name == "target_path":
            if self.target is not None:
                raise BadRequest("target_path was sent twice: send it once")
            self.target = existing_folder(self.root, value, "target_path")
        elif name == "on_conflict":
            if value not in CONFLICT_POLICIES:
                raise Invalid(
                    f"on_conflict must be one of {', '.join(CONFLICT_POLICIES)}",
                    [FieldError("on_conflict", f"'{value}' is not one of {', '.join(CONFLICT_POLICIES)}")],
                )
            self.on_conflict = value
        # other fields are ignored, as HTML forms send extras (submit buttons, tokens)

    def file_begin(self, field: str, filename: str) -> Sink | None:
        self._parts += 1
        if self._parts > self.limits.max_entries:
            raise TooLarge(
                f"More than {self.limits.max_entries} files in one request (setting TUNEFORGE_ZIP_MAX_ENTRIES): "
                "send them in several requests"
            )
        if self.zip_mode:
            return self._begin_archive(field, filename)
        if field not in FILE_FIELDS:
            self.report.skipped(filename, f"unexpected file field '{field}': send files as 'files' or 'files[]'")
            return None
        try:
            reason = "macOS metadata, not a dataset file" if kinds.is_macos_junk(filename) else None
            parts = split_name(filename) if reason is None else []
            reason = reason or kinds.rejection(parts[-1])
        except UnsafeName as exc:
            reason = str(exc)
        if reason:
            self.report.skipped(filename, reason)
            return None
        self._current = PendingFile(self.target or self._staging())
        self._received.append((filename, parts, self._current))
        return self._current.write

    def file_end(self) -> None:
        if self._current is not None:
            self._current.close()  # keeps open descriptors to one, however many files a request holds
            self._current = None

    # after the body -------------------------------------------------------------------------------------------

    def finish(self) -> dict[str, Any]:
        """Store everything received and return the report (the response body)."""
        if self.target is None:
            raise BadRequest("target_path is required: the dataset folder to upload into")
        self.report.target = self.target
        publisher = Publisher(self.on_conflict)
        if self.zip_mode:
            if self._archive is None:
                raise BadRequest("No zip received: send the archive as the 'file' field")
            extract(self._archive.path, self.target, self.limits, publisher, self.report)
        elif not self._received and not self.report.results:
            raise BadRequest("No files received: send them as 'files' or 'files[]' (curl -F files[]=@image.png)")
        for shown, parts, pending in self._received:
            self._store(shown, parts, pending, publisher)
        return self.report.as_dict()

    def cleanup(self) -> None:
        """Remove every temporary this request made (all of them after a failure)."""
        for _, _, pending in self._received:
            pending.discard()
        if self._archive is not None:
            self._archive.discard()

    # helpers --------------------------------------------------------------------------------------------------

    def _begin_archive(self, field: str, filename: str) -> Sink | None:
        if field != "file":
            self.report.skipped(filename, f"unexpected file field '{field}': send the zip as 'file'")
            return None
        if self._archive is not None:
            raise BadRequest("Send one zip per request, as the 'file' field")
        self._archive = self._current = PendingFile(self._staging())
        return self._archive.write

    def _store(self, shown: str, parts: list[str], pending: PendingFile, publisher: Publisher) -> None:
        assert self.target is not None
        try:
            folder = ensure_subfolder(self.target, parts[:-1])
            if pending.path.parent != folder:
                pending.move_to(folder)
        except (UnsafeName, OSError) as exc:
            pending.discard()
            self.report.skipped(shown, refusal(exc))
            return
        store(pending, folder, parts[-1], shown, publisher, self.report)

    def _staging(self) -> Path:
        """A hidden folder in the root (same filesystem, so moving out of it is a rename)."""
        folder = self.root / STAGING_DIR
        with contextlib.suppress(FileExistsError):
            folder.mkdir(mode=0o700)
        if folder.is_symlink() or not folder.is_dir():  # a link would put uploads (and the chmod) elsewhere
            raise BadRequest(f"{folder} must be a plain folder, not a link or a file: remove it")
        os.chmod(folder, 0o700)
        return folder


def sweep_partial_files(root: Path, before: float) -> int:
    """Half-received files a dead server left beside their targets (`.tf-upload-*.part`, last written before
    `before`, so uploads in progress are safe); links are not followed. Returns how many were removed."""
    removed = 0
    for folder, _, names in os.walk(root):
        for name in names:
            if not (name.startswith(TEMP_PREFIX) and name.endswith(TEMP_SUFFIX)):
                continue
            path = Path(folder) / name
            with contextlib.suppress(OSError):
                if path.lstat().st_mtime < before:
                    path.unlink()
                    removed += 1
    return removed


def discard_staging(root: Path) -> None:
    """At start-up: uploads that a dead server left half-received in the staging folder are dropped."""
    folder = root / STAGING_DIR
    if folder.is_dir() and not folder.is_symlink():
        shutil.rmtree(folder, ignore_errors=True)
