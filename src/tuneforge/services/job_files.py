"""A job's files over the API: what there is to download, and each file found safely.

Two roots, each named by the first part of a path: `output/…` is the job's output folder (weights, checkpoints,
validation images and their previews) and `run/trainer.log` the trainer's log. Nothing else of the run folder is
served: its spec holds webhook tokens. Paths follow the datasets' one path policy (`paths.split_name`: no `..`,
no absolute or hidden parts), and links are never followed, neither when listing nor when fetching.
"""

from __future__ import annotations

import io
import os
import stat
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from tuneforge import runfolder
from tuneforge.db.models import Job
from tuneforge.errors import Forbidden, NotFound
from tuneforge.services.datasets.paths import UnsafeName, split_name

KINDS = ("weights", "file", "folder", "checkpoint", "validation", "preview", "log")
WEIGHT_SUFFIXES = {".safetensors", ".bin", ".pt", ".ckpt"}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp"}
VALIDATION_DIR, PREVIEW_DIR = runfolder.VALIDATION_DIR, runfolder.PREVIEW_DIR
ZIP_CHUNK = 1 << 20


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


def listing(job: Job, kind: str | None = None, newest_first: bool = False) -> list[JobFile]:
    """Everything downloadable, in a stable order (kind, then step, then name); `kind` keeps one kind."""
    found = [*_output_entries(Path(job.output_dir)), *_log_entry(Path(job.run_dir))]
    if kind:
        found = [entry for entry in found if entry.kind == kind]
    found.sort(key=lambda entry: (KINDS.index(entry.kind), entry.step or 0, entry.path), reverse=newest_first)
    return found


def locate(job: Job, path: str) -> JobFile:
    """The entry at `path` (404 when there is none, 403 for a path that tries to leave its root)."""
    try:
        parts = split_name(path)
    except UnsafeName as exc:
        raise Forbidden(f"path '{path[:200]}': {exc}; use a path from GET /api/jobs/{job.id}/files") from None
    root, rest = parts[0], parts[1:]
    if root == "run" and rest == [runfolder.LOG_FILE]:
        target, base = Path(job.run_dir) / runfolder.LOG_FILE, Path(job.run_dir)
    elif root == "output" and rest:
        target, base = Path(job.output_dir).joinpath(*rest), Path(job.output_dir)
    else:
        raise NotFound(f"no file '{path[:200]}' in job {job.id}: paths start with 'output/' or are 'run/trainer.log'")
    info = _lstat_inside(base, rest if root == "output" else [runfolder.LOG_FILE], path, job.id)
    if stat.S_ISDIR(info.st_mode):
        if not _is_zippable(Path(job.output_dir), rest):
            raise NotFound(f"'{path[:200]}' is a folder that is not served whole: fetch its files")
        return JobFile(path, "folder", _folder_size(target), _mtime(info))
    return JobFile(path, _kind_of(rest) if root == "output" else "log", info.st_size, _mtime(info))


def real_path(job: Job, entry: JobFile) -> Path:
    root, *rest = entry.path.split("/")
    return Path(job.run_dir).joinpath(*rest) if root == "run" else Path(job.output_dir).joinpath(*rest)


def zip_stream(folder: Path, name: str) -> Iterator[bytes]:
    """`folder` as a zip under `name/`, produced while it is sent (stored, not compressed: weights do not shrink)."""
    sink = _Sink()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for path in _files_under(folder):
            member = zipfile.ZipInfo.from_file(path, f"{name}/{path.relative_to(folder).as_posix()}")
            with open(path, "rb") as source, archive.open(member, "w", force_zip64=True) as target:
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


# --- listing --------------------------------------------------------------------------------------------------------

def _output_entries(output: Path) -> Iterator[JobFile]:
    for entry in _visible(output):
        if entry.is_file(follow_symlinks=False):
            yield _entry(f"output/{entry.name}", _kind_of([entry.name]), entry.stat(follow_symlinks=False))
        elif entry.name == VALIDATION_DIR:
            yield from _validation_entries(Path(entry.path))
        else:
            folder = Path(entry.path)
            step = runfolder.checkpoint_step(entry.name)
            is_checkpoint = step is not None and (folder / runfolder.CHECKPOINT_STATE_FILE).is_file()
            kind = "checkpoint" if is_checkpoint else "folder"
            yield JobFile(f"output/{entry.name}", kind, _folder_size(folder),
                          _mtime(entry.stat(follow_symlinks=False)), step)


def _validation_entries(folder: Path) -> Iterator[JobFile]:
    for step_dir in _visible(folder):
        step = runfolder.validation_step(step_dir.name)
        if step is None or not step_dir.is_dir(follow_symlinks=False):
            continue
        base = f"output/{VALIDATION_DIR}/{step_dir.name}"
        for image in _visible(Path(step_dir.path)):
            if _is_image(image):
                yield _entry(f"{base}/{image.name}", "validation", image.stat(follow_symlinks=False), step)
            elif image.name == PREVIEW_DIR and image.is_dir(follow_symlinks=False):
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


def _is_zippable(output: Path, rest: list[str]) -> bool:
    """Top-level folders of the output other than the validation images (served one by one)."""
    return len(rest) == 1 and rest[0] != VALIDATION_DIR and (output / rest[0]).is_dir()


def _files_under(folder: Path) -> Iterator[Path]:
    for root, dirs, files in os.walk(folder):  # os.walk does not follow links into folders
        dirs[:] = sorted(d for d in dirs if not os.path.islink(os.path.join(root, d)))
        for name in sorted(files):
            path = Path(root) / name
            if not path.is_symlink() and path.is_file():
                yield path


def _folder_size(folder: Path) -> int:
    return sum(path.stat().st_size for path in _files_under(folder))
