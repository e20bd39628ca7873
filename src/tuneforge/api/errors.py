"""The one place where errors become HTTP responses. Nothing here ever returns a traceback."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError
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
    errors.StorageFull: 507,
}
DISK_FULL = "The server's disk is full, so nothing was saved: free space on it and try again"


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


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    """A write the database refused: a full disk (SQLite says so in words, PostgreSQL with SQLSTATE 53100), or a
    database that is locked or gone for a moment."""
    assert isinstance(exc, OperationalError)
    if "disk is full" in str(exc.orig) or getattr(exc.orig, "sqlstate", None) == "53100":
        return JSONResponse(error_body(DISK_FULL), status_code=507)
    log.warning("database unavailable on %s %s: %s", request.method, request.url.path, exc.orig)
    return JSONResponse(error_body("The database is busy or unavailable: try again shortly"), status_code=503,
                        headers={"Retry-After": "5"})


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled error on %s %s: %s", request.method, request.url.path, type(exc).__name__, exc_info=exc)
    return JSONResponse(error_body("Internal server error"), status_code=500)


def install(app: FastAPI) -> None:
    app.add_exception_handler(errors.TuneforgeError, _tuneforge_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(OperationalError, _database_error)
    app.add_exception_handler(Exception, _unexpected)
