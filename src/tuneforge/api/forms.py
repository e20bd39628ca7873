"""Training form bodies: the tutorial posts multipart forms; url-encoded forms and JSON objects work too."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import Depends, Request
from starlette.types import Message

from tuneforge.errors import BadRequest

MAX_FIELDS = 2000


async def read_fields(request: Request) -> dict[str, Any]:
    """The submitted fields as a dict (the last value wins when a name repeats); file parts are refused."""
    content_type = request.headers.get("content-type", "").lower()
    body = await request.body()  # bounded by the app's BodyLimit
    if content_type.startswith("application/json"):
        return _json_object(body)
    if content_type.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
        form = await _replay(request, body).form(max_fields=MAX_FIELDS, max_files=0, max_part_size=len(body) + 1)
        return dict(form.multi_items())  # max_files=0: a file part is already a 400
    if not body:
        return {}
    raise BadRequest("Send a multipart form (-F), a url-encoded form or a JSON object")


def _replay(request: Request, body: bytes) -> Request:
    """The same request over the body already read, for Starlette's form parser."""
    async def receive() -> Message:
        return {"type": "http.request", "body": body, "more_body": False}

    return Request(request.scope, receive)


def _json_object(body: bytes) -> dict[str, Any]:
    if not body.strip():
        return {}
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadRequest("Malformed JSON body: send valid JSON") from exc
    except RecursionError as exc:
        raise BadRequest("JSON body nested too deeply: send a flat object of options") from exc
    if not isinstance(data, dict):
        raise BadRequest("The JSON body must be an object of options")
    return data


FormFields = Annotated[dict[str, Any], Depends(read_fields)]
