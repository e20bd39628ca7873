"""A job's files and metrics: final weights, checkpoints (as zips), validation images, the trainer log, and the
loss curve, so that nobody needs a shell on the server to fetch a LoRA or to draw a plot."""

from __future__ import annotations

import mimetypes
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, BinaryIO, Literal
from urllib.parse import quote

from fastapi import APIRouter, Header, Query, Response
from fastapi.responses import StreamingResponse

from tuneforge.api.deps import DbSession, Requires, SettingsDep
from tuneforge.api.errors import responses
from tuneforge.schemas.jobs import JobFileList, JobFilePublic, MetricSeries
from tuneforge.services import job_events, job_files, jobs
from tuneforge.services.job_policy import JobPolicy
from tuneforge.services.permissions import Permission
from tuneforge.services.principal import Principal

router = APIRouter(tags=["training"])

Viewer = Annotated[Principal, Requires(Permission.JOB_VIEW_ALL)]
READ_CHUNK = 1 << 20
INLINE_TYPES = {"image/png", "image/jpeg", "image/webp"}
# A served file is never a page of ours: no script in it runs, whatever it holds.
FILE_HEADERS = {"X-Content-Type-Options": "nosniff", "Content-Security-Policy": "sandbox; default-src 'none'",
                "Cache-Control": "private, no-cache"}  # kept, but asked again (ETag) each time
DOWNLOAD = {**responses(403, 404), 304: {"description": "Not modified (If-None-Match)"},
            200: {"description": "The file, or a folder as a zip",
                  "content": {"application/octet-stream": {}, "application/zip": {}}}}


@router.get("/api/jobs/{job_id}/files", response_model=JobFileList, responses=responses(403, 404))
def list_files(job_id: str, db: DbSession, settings: SettingsDep, _: Viewer,
               kind: Annotated[list[job_files.Kind] | None, Query(description="Only these kinds (repeat for several)")]
               = None,
               order: Literal["asc", "desc"] = "asc", offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
               limit: Annotated[int, Query(ge=1, le=1000)] = 200) -> JobFileList:
    """What a job has to download, a page at a time: `kind=validation&order=desc` pages the gallery, newest first."""
    job = jobs.get(db, job_id)
    job_files.ensure_servable(job, JobPolicy.from_settings(settings))
    found = job_files.listing(job, set(kind) if kind else None, newest_first=order == "desc")
    page = [_public(job_id, entry) for entry in found[offset:offset + limit]]
    return JobFileList(job_id=job_id, files=page, total=len(found), offset=offset)


@router.get("/api/jobs/{job_id}/files/{path:path}", response_class=StreamingResponse, responses=DOWNLOAD)
def download(job_id: str, path: str, db: DbSession, settings: SettingsDep, _: Viewer,
             if_none_match: Annotated[str | None, Header(max_length=200)] = None) -> Response:
    """One file as it is, or a whole checkpoint or other top-level folder of the output as a zip."""
    job = jobs.get(db, job_id)
    job_files.ensure_servable(job, JobPolicy.from_settings(settings))
    entry, real = job_files.locate(job, path)
    name = Path(entry.path).name
    if entry.is_folder:
        headers = {**FILE_HEADERS, "Content-Disposition": _disposition("attachment", f"{name}.zip")}
        return StreamingResponse(job_files.zip_stream(real, name), media_type="application/zip", headers=headers)
    handle = job_files.open_file(real)
    info = os.fstat(handle.fileno())
    tag = f'"{info.st_size:x}-{info.st_mtime_ns:x}"'
    if if_none_match == tag:  # the gallery's images, seen before
        handle.close()
        return Response(status_code=304, headers={**FILE_HEADERS, "ETag": tag})
    media_type = "text/plain; charset=utf-8" if entry.kind == "log" else (
        mimetypes.guess_type(name)[0] or "application/octet-stream")
    how = "inline" if media_type in INLINE_TYPES or entry.kind == "log" else "attachment"
    headers = {**FILE_HEADERS, "ETag": tag, "Content-Disposition": _disposition(how, name),
               "Content-Length": str(info.st_size)}
    return StreamingResponse(_read(handle, info.st_size), media_type=media_type, headers=headers)


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


def _read(handle: BinaryIO, size: int) -> Iterator[bytes]:
    """At most the `size` bytes announced: a log still being written is sent as it was when asked for."""
    with handle:
        while size > 0 and (chunk := handle.read(min(READ_CHUNK, size))):
            size -= len(chunk)
            yield chunk


def _disposition(how: str, name: str) -> str:
    return f"{how}; filename*=UTF-8''{quote(name)}"
