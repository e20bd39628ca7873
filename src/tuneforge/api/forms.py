"""Training form bodies: the tutorial posts multipart forms; url-encoded forms and JSON objects work too."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import Depends, Request
from starlette.datastructures import UploadFile

from tuneforge.errors import BadRequest

MAX_BODY_BYTES = 2 * 1024 * 1024
MAX_FIELDS = 2000


async def read_fields(request: Request) -> dict[str, Any]:
    """The submitted fields as a dict (the last value wins when a name repeats); files are refused."""
    content_type = request.headers.get("content-type", "").lower()
    if int(request.headers.get("content-length") or 0) > MAX_BODY_BYTES:
        raise BadRequest(f"Form body over {MAX_BODY_BYTES // 1024} KiB: send options, not files")
    if content_type.startswith("application/json"):
        return _json_object(await request.body())
    if content_type.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
        form = await request.form(max_fields=MAX_FIELDS, max_files=0, max_part_size=MAX_BODY_BYTES)
        fields: dict[str, Any] = {}
        for key, value in form.multi_items():
            if isinstance(value, UploadFile):
                raise BadRequest(f"Field '{key}' is a file; training forms take plain values")
            fields[key] = value
        return fields
    if not await request.body():
        return {}
    raise BadRequest("Send a multipart form (-F), a url-encoded form or a JSON object")


def _json_object(body: bytes) -> dict[str, Any]:
    if not body.strip():
        return {}
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadRequest("Malformed JSON body: send valid JSON") from exc
    if not isinstance(data, dict):
        raise BadRequest("The JSON body must be an object of options")
    return data


FormFields = Annotated[dict[str, Any], Depends(read_fields)]
