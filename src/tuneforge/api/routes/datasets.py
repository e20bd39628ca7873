"""Dataset folders and uploads (the tutorial's "upload datasets over the API"), confined to the datasets root.

Upload bodies are parsed here as they stream in, not by Starlette's form parser: file bytes go straight to a
temporary file in the target folder (no spooled copy), the size limit holds even without a Content-Length, and
every blocking step runs in the threadpool so the server keeps answering other requests meanwhile.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Query, Request
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from tuneforge.api.deps import Requires, SettingsDep
from tuneforge.api.errors import responses
from tuneforge.api.forms import FormFields
from tuneforge.errors import BadRequest, StorageFull, TooLarge
from tuneforge.services import datasets
from tuneforge.services.datasets.multipart import FormStream
from tuneforge.services.datasets.paths import LOCATION_SCHEMA, NAME_SCHEMA, is_disk_full
from tuneforge.services.permissions import Permission
from tuneforge.services.principal import Principal
from tuneforge.settings import Settings

router = APIRouter(prefix="/api/datasets", tags=["datasets"])

Uploader = Annotated[Principal, Requires(Permission.DATASET_UPLOAD)]
Viewer = Annotated[Principal, Requires(Permission.DATASET_VIEW)]

FEED_BYTES = 1024 * 1024  # hand the parser ~1 MiB at a time: few thread hops, little memory


class FolderCreated(BaseModel):
    path: str
    name: str


class FileDetail(BaseModel):
    name: str
    status: str  # written | renamed | unchanged | skipped
    reason: str | None
    path: str | None  # relative to the datasets root
    size: int


class UploadResult(BaseModel):
    success: bool
    files_uploaded: int
    files_unchanged: int = 0  # identical files already there: not errors
    files_skipped: int
    errors: list[str]
    target_path: str | None
    files: list[FileDetail]


class FolderSummary(BaseModel):
    name: str
    path: str
    relative_path: str
    image_count: int
    caption_count: int
    folder_count: int


class BrowseResult(BaseModel):
    path: str
    relative_path: str
    parent: str | None
    image_count: int
    caption_count: int
    folders: list[FolderSummary]


def _form_doc(properties: dict[str, Any], required: list[str], **rules: Any) -> dict[str, Any]:
    """OpenAPI for bodies parsed by hand (FastAPI cannot see them)."""
    schema = {"type": "object", "properties": properties, "required": required, **rules}
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": schema}}}}


_PATH_DOC = {**LOCATION_SCHEMA, "description": "Absolute path under the datasets root, or relative to it"}
_NAME_DOC = {**NAME_SCHEMA, "description": "One folder name (no separators, not hidden)"}
_CONFLICT_DOC = {"type": "string", "enum": ["rename", "skip"], "default": "rename",
                 "description": "A different file with the same name exists: store as 'name (1).ext', or skip"}
_BINARY = {"type": "string", "format": "binary"}


@router.post(
    "/folders",
    status_code=201,
    response_model=FolderCreated,
    openapi_extra=_form_doc({"parent_path": _PATH_DOC, "folder_name": _NAME_DOC}, ["folder_name"]),
    responses=responses(404, 409),
)
async def create_folder(settings: SettingsDep, _: Uploader, fields: FormFields) -> dict[str, str]:
    """Create a folder under the datasets root (multipart, url-encoded or JSON body); 409 if it exists."""
    return await run_in_threadpool(
        datasets.create_folder, settings.datasets_root, _text(fields, "parent_path"), _text(fields, "folder_name")
    )


def _text(fields: dict[str, Any], name: str) -> str | None:
    """A field that must be text: a JSON body may send numbers, lists or objects."""
    value = fields.get(name)
    if value is not None and not isinstance(value, str):
        raise BadRequest(f"{name} must be a string")
    return value


@router.post(
    "/upload",
    response_model=UploadResult,
    openapi_extra=_form_doc(
        {"target_path": _PATH_DOC, "on_conflict": _CONFLICT_DOC,
         "files": {"type": "array", "items": _BINARY, "minItems": 1,
                   "description": "The files (also accepted under the name `files[]`, as curl -F files[]=@a.png)"}},
        ["target_path", "files"],
    ),
    responses=responses(404),
)
async def upload_files(request: Request, settings: SettingsDep, _: Uploader) -> dict[str, Any]:
    """Upload images, captions and metadata into `target_path`; per-file report of what was stored or skipped."""
    return await _receive(request, settings, zip_mode=False)


@router.post(
    "/upload/zip",
    response_model=UploadResult,
    openapi_extra=_form_doc({"target_path": _PATH_DOC, "on_conflict": _CONFLICT_DOC, "file": _BINARY},
                            ["target_path", "file"]),
    responses=responses(404),
)
async def upload_zip(request: Request, settings: SettingsDep, _: Uploader) -> dict[str, Any]:
    """Upload a zip and extract it into `target_path` (structure kept, limits checked before extracting)."""
    return await _receive(request, settings, zip_mode=True)


@router.get("/browse", response_model=BrowseResult, responses=responses(404))
def browse(
    settings: SettingsDep,
    _: Viewer,
    path: Annotated[str, Query(max_length=LOCATION_SCHEMA["maxLength"], pattern=LOCATION_SCHEMA["pattern"],
                               description="Folder to list; default: the root")] = "",
) -> dict[str, Any]:
    """List the folders under `path` with their image and caption counts."""
    return datasets.browse(settings.datasets_root, path)


async def _receive(request: Request, settings: Settings, *, zip_mode: bool) -> dict[str, Any]:
    limits = datasets.ZipLimits(settings.zip_max_entries, settings.zip_max_uncompressed_bytes, settings.zip_max_ratio)
    session = datasets.UploadSession(settings.datasets_root, limits, zip_mode=zip_mode)
    try:
        form = FormStream(request.headers.get("content-type"), session)
        batch: list[bytes] = []
        size = 0
        async for chunk in _body(request, settings.max_upload_bytes, _UPLOAD_TOO_LARGE):
            batch.append(chunk)
            size += len(chunk)
            if size >= FEED_BYTES:
                await run_in_threadpool(form.feed, b"".join(batch))
                batch, size = [], 0
        await run_in_threadpool(form.feed, b"".join(batch))
        await run_in_threadpool(form.close)
        return await run_in_threadpool(session.finish)
    except OSError as exc:
        if is_disk_full(exc):
            raise StorageFull("The disk holding the datasets root is full: free space and upload again") from exc
        raise
    finally:
        with anyio.CancelScope(shield=True):  # temporaries go even when the request is cancelled
            await run_in_threadpool(session.cleanup)


_UPLOAD_TOO_LARGE = (
    "Upload body is larger than the limit of {limit} bytes (setting TUNEFORGE_MAX_UPLOAD_BYTES): raise it on the "
    "server, or split the upload into several requests"
)


async def _body(request: Request, limit: int, message: str) -> AsyncIterator[bytes]:
    """The request body chunk by chunk, refused with 413 as soon as it passes `limit` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise TooLarge(message.format(limit=limit))
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > limit:
                raise TooLarge(message.format(limit=limit))
            if chunk:
                yield chunk
    except ClientDisconnect as exc:
        raise BadRequest("The client disconnected before the upload finished; nothing was stored") from exc
