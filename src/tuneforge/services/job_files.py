"""A job's files over the API: what there is to download, and each file found safely.

Two roots, each named by the first part of a path: `output/…` is the job's output folder (weights, checkpoints,
validation images and their previews) and `run/trainer.log` the trainer's log. Nothing else of the run folder is
served: its spec holds webhook tokens. Paths follow the datasets' one path policy (`paths.split_name`: no `..`,
no absolute or hidden parts), and links are never followed, neither when listing nor when fetching. An output
folder in or around the server's own folders (recorded before the job policy refused such folders) is not served.
"""

from __future__ import annotations

import contextlib
import io
import os
import stat
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO, Literal, get_args

from tuneforge import runfolder
from tuneforge.db.models import Job
from tuneforge.errors import Forbidden, NotFound
from tuneforge.services.datasets.paths import UnsafeName, split_name
from tuneforge.services.job_policy import JobPolicy

Kind = Literal["weights", "file", "folder", "checkpoint", "validation", "preview", "log"]
KINDS: tuple[str, ...] = get_args(Kind)
TOP_LEVEL_KINDS = {"weights", "file", "folder", "checkpoint"}
WEIGHT_SUFFIXES = {".safetensors", ".bin", ".pt", ".ckpt"}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp"}
VALIDATION_DIR, PREVIEW_DIR = runfolder.VALIDATION_DIR, runfolder.PREVIEW_DIR
ZIP_CHUNK = 1 << 20
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(frozen=True)
class JobFile:
    path: str  # as the files route takes it: `output/...` or `run/trainer.log`
    kind: str
    size_bytes: int  # a folder: the sum of its files
    modified_at: datetime
    step: int | None = None

    @property
    def is_folder(self) -> bool:
        return self.kind in ("folder", "checkpoint")


def ensure_servable(job: Job, policy: JobPolicy) -> None:
    if (folder := policy.server_folder_near(Path(job.output_dir))) is not None:
        raise Forbidden(f"job {job.id}'s output folder {job.output_dir} is in or around the server's own folder "
                        f"{folder}: its files are not served")


def listing(job: Job, kinds: set[str] | None = None, newest_first: bool = False) -> list[JobFile]:
    """What is downloadable, in a stable order (kind, then step, then name); `kinds` keeps those kinds, and only the
    folders that hold them are read (a gallery page stats no checkpoint, the file list no image)."""
    wanted = set(kinds or KINDS)
    found = list(_output_entries(Path(job.output_dir), wanted))
    if "log" in wanted:
        found.extend(_log_entry(Path(job.run_dir)))
    found = [entry for entry in found if entry.kind in wanted]
    found.sort(key=lambda entry: (KINDS.index(entry.kind), entry.step or 0, entry.path), reverse=newest_first)
    return found


def locate(job: Job, path: str) -> tuple[JobFile, Path]:
    """The entry at `path` and where it is on disk (404 when there is none, 403 for a path that tries to leave its
    root). Both are built from the checked parts, so what is opened is what was checked."""
    try:
        parts = split_name(path)
    except UnsafeName as exc:
        raise Forbidden(f"path '{path[:200]}': {exc}; use a path from GET /api/jobs/{job.id}/files") from None
    root, rest = parts[0], parts[1:]
    if root == "run" and rest == [runfolder.LOG_FILE]:
        base = Path(job.run_dir)
    elif root == "output" and rest:
        base = Path(job.output_dir)
    else:
        raise NotFound(f"no file '{path[:200]}' in job {job.id}: paths start with 'output/' or are 'run/trainer.log'")
    clean, target = "/".join(parts), base.joinpath(*rest)
    info = _lstat_inside(base, rest, path, job.id)
    if stat.S_ISDIR(info.st_mode):
        if root != "output" or len(rest) != 1 or rest[0] == VALIDATION_DIR:
            raise NotFound(f"'{path[:200]}' is a folder that is not served whole: fetch its files")
        return JobFile(clean, "folder", _folder_size(target), _mtime(info)), target
    return JobFile(clean, _kind_of(rest) if root == "output" else "log", info.st_size, _mtime(info)), target


def open_file(path: Path) -> BinaryIO:
    """Opened without following a link in its last part (one swapped in since it was looked up is refused); closed
    when dropped, also if the response never reads it."""
    try:
        return open(os.open(path, _OPEN_FLAGS), "rb")
    except FileNotFoundError:
        raise NotFound(f"'{path.name}' is gone") from None
    except OSError:
        raise Forbidden(f"'{path.name}' cannot be served") from None


def zip_stream(folder: Path, name: str) -> Iterator[bytes]:
    """`folder` as a zip under `name/`, produced while it is sent (stored, not compressed: weights do not shrink).
    A file that vanishes meanwhile (a checkpoint rotated away) or that became a link is left out."""
    sink = _Sink()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for path in _files_under(folder):
            try:
                source = open(os.open(path, _OPEN_FLAGS), "rb")
            except OSError:
                continue
            with source:
                info = os.fstat(source.fileno())
                member = zipfile.ZipInfo(f"{name}/{path.relative_to(folder).as_posix()}", _zip_time(info.st_mtime))
                member.external_attr = (info.st_mode & 0xFFFF) << 16
                with archive.open(member, "w", force_zip64=True) as target:
                    while chunk := source.read(ZIP_CHUNK):
                        target.write(chunk)
                        yield sink.take()
            yield sink.take()
    yield sink.take()


class _Sink(io.RawIOBase):
    """Where the zip writer writes: collects bytes until the response takes them (not seekable, so zipfile
    writes data descriptors instead of seeking back)."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []
        self._written = 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:  # type: ignore[override]
        self._chunks.append(bytes(data))
        self._written += len(data)
        return len(data)

    def tell(self) -> int:
        return self._written

    def take(self) -> bytes:
        data = b"".join(self._chunks)
        self._chunks.clear()
        return data


def _zip_time(timestamp: float) -> tuple[int, int, int, int, int, int]:
    """A zip entry's time: zip counts from 1980 to 2107, a time outside that becomes the nearest end."""
    moment = datetime.fromtimestamp(min(max(timestamp, 315532800), 4354819199), UTC)
    return moment.year, moment.month, moment.day, moment.hour, moment.minute, moment.second


# --- listing --------------------------------------------------------------------------------------------------------

def _output_entries(output: Path, wanted: set[str]) -> Iterator[JobFile]:
    top_level = bool(wanted & TOP_LEVEL_KINDS)
    for entry in _visible(output):
        if entry.name == VALIDATION_DIR and entry.is_dir(follow_symlinks=False):
            if wanted & {"validation", "preview"}:
                yield from _validation_entries(Path(entry.path), with_previews="preview" in wanted)
        elif not top_level:
            continue
        elif entry.is_file(follow_symlinks=False):
            yield _entry(f"output/{entry.name}", _kind_of([entry.name]), entry.stat(follow_symlinks=False))
        elif entry.is_dir(follow_symlinks=False):
            folder = Path(entry.path)
            step = runfolder.checkpoint_step(entry.name)
            is_checkpoint = step is not None and (folder / runfolder.CHECKPOINT_STATE_FILE).is_file()
            yield JobFile(f"output/{entry.name}", "checkpoint" if is_checkpoint else "folder", _folder_size(folder),
                          _mtime(entry.stat(follow_symlinks=False)), step)


def _validation_entries(folder: Path, with_previews: bool) -> Iterator[JobFile]:
    for step_dir in _visible(folder):
        step = runfolder.validation_step(step_dir.name)
        if step is None or not step_dir.is_dir(follow_symlinks=False):
            continue
        base = f"output/{VALIDATION_DIR}/{step_dir.name}"
        for image in _visible(Path(step_dir.path)):
            if _is_image(image):
                yield _entry(f"{base}/{image.name}", "validation", image.stat(follow_symlinks=False), step)
            elif with_previews and image.name == PREVIEW_DIR and image.is_dir(follow_symlinks=False):
                for preview in _visible(Path(image.path)):
                    if _is_image(preview):
                        yield _entry(f"{base}/{PREVIEW_DIR}/{preview.name}", "preview",
                                     preview.stat(follow_symlinks=False), step)


def _log_entry(run_dir: Path) -> Iterator[JobFile]:
    try:
        info = os.lstat(run_dir / runfolder.LOG_FILE)
    except OSError:
        return
    if stat.S_ISREG(info.st_mode):
        yield _entry(f"run/{runfolder.LOG_FILE}", "log", info)


def _visible(folder: Path) -> list[os.DirEntry]:
    """Entries that are neither hidden (unfinished checkpoints are) nor links."""
    try:
        with os.scandir(folder) as entries:
            return sorted((e for e in entries if not e.name.startswith(".") and not e.is_symlink()),
                          key=lambda e: e.name)
    except OSError:
        return []


def _is_image(entry: os.DirEntry) -> bool:
    return entry.is_file(follow_symlinks=False) and Path(entry.name).suffix.lower() in IMAGE_SUFFIXES


def _entry(path: str, kind: str, info: os.stat_result, step: int | None = None) -> JobFile:
    return JobFile(path, kind, info.st_size, _mtime(info), step)


def _kind_of(parts: list[str]) -> str:
    if parts[0] == VALIDATION_DIR and Path(parts[-1]).suffix.lower() in IMAGE_SUFFIXES:
        return "preview" if PREVIEW_DIR in parts[:-1] else "validation"
    if len(parts) == 1 and Path(parts[0]).suffix.lower() in WEIGHT_SUFFIXES:
        return "weights"
    return "file"


def _mtime(info: os.stat_result) -> datetime:
    return datetime.fromtimestamp(info.st_mtime, UTC)


# --- fetching -------------------------------------------------------------------------------------------------------

def _lstat_inside(base: Path, parts: list[str], path: str, job_id: str) -> os.stat_result:
    """Walk `parts` down from `base` one part at a time, refusing any link on the way: what is served is what the
    name says, never where a link points."""
    current = base
    info = None
    for part in parts:
        current = current / part
        try:
            info = os.lstat(current)
        except OSError:
            raise NotFound(f"no file '{path[:200]}' in job {job_id}") from None
        if stat.S_ISLNK(info.st_mode):
            raise Forbidden(f"'{path[:200]}' is a link; links in a job's folders are not followed")
    assert info is not None
    if not (stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode)):
        raise NotFound(f"no file '{path[:200]}' in job {job_id}")
    return info


def _files_under(folder: Path) -> Iterator[Path]:
    """Regular files, neither hidden nor reached through a link (os.walk does not follow links into folders)."""
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and not os.path.islink(os.path.join(root, d)))
        for name in sorted(files):
            path = Path(root) / name
            if not name.startswith(".") and not path.is_symlink() and path.is_file():
                yield path


def _folder_size(folder: Path) -> int:
    total = 0
    for path in _files_under(folder):
        with contextlib.suppress(OSError):  # rotated away meanwhile
            total += path.stat().st_size
    return total
