"""The one place where errors become HTTP responses. Nothing here ever returns a traceback."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from tuneforge import errors

log = logging.getLogger("tuneforge.api")

STATUS: dict[type[errors.TuneforgeError], int] = {
    errors.BadRequest: 400,
    errors.NotAuthenticated: 401,
    errors.Forbidden: 403,
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.TooLarge: 413,
    errors.Invalid: 422,
    errors.RateLimited: 429,
}


def status_for(exc: errors.TuneforgeError) -> int:
    for kind in type(exc).__mro__:
        if kind in STATUS:
            return STATUS[kind]
    return 400


def error_body(detail: str, field_errors: list[dict[str, str]] | None = None) -> dict[str, object]:
    body: dict[str, object] = {"detail": detail}
    if field_errors:
        body["errors"] = field_errors
    return body


async def _tuneforge_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, errors.TuneforgeError)
    headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, errors.RateLimited) else None
    if isinstance(exc, errors.NotAuthenticated):
        headers = {"WWW-Authenticate": 'Bearer realm="tuneforge"'}
    body = error_body(exc.detail, [e.as_dict() for e in exc.errors])
    if isinstance(exc, errors.ConfigInvalid):  # the shape of POST /api/training/validate (API.md)
        body.update(valid=False, message="Validation Failed", warnings=[w.as_dict() for w in exc.warnings])
    return JSONResponse(body, status_code=status_for(exc), headers=headers)


def _field_name(location: tuple[object, ...]) -> str:
    parts = [str(part) for part in location if part not in ("body", "query", "path", "form", "header")]
    return ".".join(parts) or "body"


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = exc.errors()
    if any(p.get("type") == "json_invalid" for p in problems):
        return JSONResponse(error_body("Malformed JSON body: send valid JSON"), status_code=400)
    fields = [{"field": _field_name(tuple(p.get("loc", ()))), "message": str(p.get("msg", "invalid"))}
              for p in problems]
    summary = "; ".join(f"{f['field']}: {f['message']}" for f in fields[:5])
    return JSONResponse(error_body(f"Invalid request: {summary}", fields), status_code=422)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return JSONResponse(error_body(str(exc.detail)), status_code=exc.status_code, headers=exc.headers)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled error on %s %s: %s", request.method, request.url.path, type(exc).__name__, exc_info=exc)
    return JSONResponse(error_body("Internal server error"), status_code=500)


def install(app: FastAPI) -> None:
    app.add_exception_handler(errors.TuneforgeError, _tuneforge_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
