"""A job's files and metrics: final weights, checkpoints (as zips), validation images, the trainer log, and the
loss curve, so that nobody needs a shell on the server to fetch a LoRA or to draw a plot."""

from __future__ import annotations

import mimetypes
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import quote

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from tuneforge.api.deps import DbSession, Requires
from tuneforge.api.errors import responses
from tuneforge.errors import Forbidden, NotFound
from tuneforge.schemas.jobs import JobFileList, JobFilePublic, MetricSeries
from tuneforge.services import job_events, job_files, jobs
from tuneforge.services.permissions import Permission
from tuneforge.services.principal import Principal

router = APIRouter(tags=["training"])

Viewer = Annotated[Principal, Requires(Permission.JOB_VIEW_ALL)]
FileKind = Literal["weights", "file", "folder", "checkpoint", "validation", "preview", "log"]
READ_CHUNK = 1 << 20
INLINE_TYPES = {"image/png", "image/jpeg", "image/webp"}
# A served file is never a page of ours: no script in it runs, whatever it holds.
FILE_HEADERS = {"X-Content-Type-Options": "nosniff", "Content-Security-Policy": "sandbox; default-src 'none'",
                "Cache-Control": "private, no-cache"}
DOWNLOAD = {**responses(403, 404), 200: {"description": "The file, or a folder as a zip",
                                         "content": {"application/octet-stream": {}, "application/zip": {}}}}


@router.get("/api/jobs/{job_id}/files", response_model=JobFileList, responses=responses(404))
def list_files(job_id: str, db: DbSession, _: Viewer, kind: FileKind | None = None,
               order: Literal["asc", "desc"] = "asc", offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
               limit: Annotated[int, Query(ge=1, le=1000)] = 200) -> JobFileList:
    """What a job has to download, a page at a time: `kind=validation&order=desc` pages the gallery, newest first."""
    job = jobs.get(db, job_id)
    found = job_files.listing(job, kind, newest_first=order == "desc")
    page = [_public(job_id, entry) for entry in found[offset:offset + limit]]
    return JobFileList(job_id=job_id, files=page, total=len(found), offset=offset)


@router.get("/api/jobs/{job_id}/files/{path:path}", response_class=StreamingResponse, responses=DOWNLOAD)
def download(job_id: str, path: str, db: DbSession, _: Viewer) -> StreamingResponse:
    """One file as it is, or a whole checkpoint or other top-level folder of the output as a zip."""
    job = jobs.get(db, job_id)
    entry = job_files.locate(job, path)
    real = job_files.real_path(job, entry)
    name = Path(entry.path).name
    if entry.is_folder:
        headers = {**FILE_HEADERS, "Content-Disposition": _disposition("attachment", f"{name}.zip")}
        return StreamingResponse(job_files.zip_stream(real, name), media_type="application/zip", headers=headers)
    handle = _open_file(real, path)
    media_type = "text/plain; charset=utf-8" if entry.kind == "log" else (
        mimetypes.guess_type(name)[0] or "application/octet-stream")
    how = "inline" if media_type in INLINE_TYPES or entry.kind == "log" else "attachment"
    headers = {**FILE_HEADERS, "Content-Disposition": _disposition(how, name),
               "Content-Length": str(os.fstat(handle).st_size)}
    return StreamingResponse(_read(handle), media_type=media_type, headers=headers)


@router.get("/api/jobs/{job_id}/metrics", response_model=MetricSeries, responses=responses(404))
def metrics(job_id: str, db: DbSession, _: Viewer,
            max_points: Annotated[int, Query(ge=10, le=20000)] = 2000) -> MetricSeries:
    """Loss and learning rate so far, for a plot: then follow the event stream from `next_index`."""
    job = jobs.get(db, job_id)
    end = job.next_index  # read first: what is appended meanwhile comes through the stream, once
    return MetricSeries(job_id=job_id, next_index=end, **job_events.series(db, job_id, end, max_points))


def _public(job_id: str, entry: job_files.JobFile) -> JobFilePublic:
    return JobFilePublic(path=entry.path, kind=entry.kind, size_bytes=entry.size_bytes,
                         modified_at=entry.modified_at, step=entry.step, is_folder=entry.is_folder,
                         url=f"/api/jobs/{job_id}/files/{quote(entry.path)}")


def _open_file(real: Path, path: str) -> int:
    """Opened without following a link in its last part (one swapped in since it was looked up is refused)."""
    try:
        handle = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        raise NotFound(f"no file '{path[:200]}'") from None
    except OSError:
        raise Forbidden(f"'{path[:200]}' cannot be served") from None
    return handle


def _read(handle: int) -> Iterator[bytes]:
    try:
        while chunk := os.read(handle, READ_CHUNK):
            yield chunk
    finally:
        os.close(handle)


def _disposition(how: str, name: str) -> str:
    return f"{how}; filename*=UTF-8''{quote(name)}"
