"""The one place where errors become HTTP responses. Nothing here ever returns a traceback."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import iter_route_contexts
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

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
ERROR_SCHEMA_NAME = "Error"
DESCRIPTIONS = {
    400: "Malformed request: the message says what to fix",
    401: "Not authenticated: send an X-API-Key header (or log in)",
    403: "Not allowed: the caller lacks the permission, or a browser session sent a change from another site",
    404: "Not found",
    405: "Method not allowed here: `Allow` lists those that are",
    409: "Conflicts with the current state",
    413: "Request body larger than the server's limit",
    422: "Invalid input: `errors` names each field and its problem",
    429: "Too many attempts: retry after `Retry-After` seconds",
    503: "The database is busy or unavailable: retry shortly",
    507: "The server's disk is full: nothing was saved",
}


def error_schema() -> dict[str, object]:
    """The JSON Schema of every error body (`error_body`); validate's 422 adds `valid`, `message`, `warnings`."""
    field_error = {"type": "object", "required": ["field", "message"],
                   "properties": {"field": {"type": "string"}, "message": {"type": "string"}}}
    return {"type": "object", "title": ERROR_SCHEMA_NAME, "required": ["detail"],
            "properties": {"detail": {"type": "string"}, "errors": {"type": "array", "items": field_error}}}


def responses(*statuses: int) -> dict[int | str, dict[str, object]]:
    """What a route's own logic may answer besides success, for its decorator: `responses=errors.responses(404)`.
    (The statuses every route shares are added to the schema by `api.openapi`.)"""
    return {status: {"description": DESCRIPTIONS[status]} for status in statuses}


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


def _message(problem: dict) -> str:
    """pydantic's message, without the "Value error, " it puts before ours."""
    return str(problem.get("msg", "invalid")).removeprefix("Value error, ")


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = exc.errors()
    if any(p.get("type") == "json_invalid" for p in problems):
        return JSONResponse(error_body("Malformed JSON body: send valid JSON"), status_code=400)
    fields = [{"field": _field_name(tuple(p.get("loc", ()))), "message": _message(p)} for p in problems]
    summary = "; ".join(f"{f['field']}: {f['message']}" for f in fields[:5])
    return JSONResponse(error_body(f"Invalid request: {summary}", fields), status_code=422)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    headers = exc.headers
    if exc.status_code == 405:  # Starlette names the methods of the first route of the path only
        headers = {**(headers or {}), "Allow": ", ".join(_methods_of(request))}
    return JSONResponse(error_body(str(exc.detail)), status_code=exc.status_code, headers=headers)


def _methods_of(request: Request) -> list[str]:
    """The methods the app answers at this request's path: those of the routes written as the first one that
    matches it (`/api/configs/options` is not `/api/configs/{name}`), the documented ones where there are any
    (the routes that only refuse other methods at a path are not)."""
    matching = [route for route in iter_route_contexts(request.app.router.routes)
                if route.matches(request.scope)[0] != Match.NONE]
    if not matching:
        return []
    same_path = [route for route in matching if route.path == matching[0].path]
    documented = [route for route in same_path if getattr(route, "include_in_schema", False)] or same_path
    return sorted({method for route in documented for method in getattr(route, "methods", None) or ()})


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    """A write the database refused: a full disk (SQLite says so in words, PostgreSQL with SQLSTATE 53100), or a
    database that is locked or gone for a moment."""
    assert isinstance(exc, OperationalError)
    if "disk is full" in str(exc.orig) or getattr(exc.orig, "sqlstate", None) == "53100":
        return JSONResponse(error_body(DISK_FULL), status_code=507)
    log.warning("database unavailable on %s %s: %s", request.method, request.url.path, exc.orig)
    return JSONResponse(error_body("The database is busy or unavailable: try again shortly"), status_code=503,
                        headers={"Retry-After": "5"})


class UnexpectedErrors:
    """Any error no handler turned into a response: logged once and answered 500 with `Connection: close`, so a
    keep-alive client opens a fresh connection rather than reuse one in an unknown state. (Starlette's own catch-all
    answers, then raises again, which logs twice and leaves the connection to the server's mercy.)"""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watched_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watched_send)
        except Exception as exc:
            if started:  # mid-response there is nothing left to answer with: the server ends the connection
                raise
            log.error("unhandled error on %s %s: %s", scope["method"], scope["path"], type(exc).__name__,
                      exc_info=exc)
            response = JSONResponse(error_body("Internal server error"), status_code=500,
                                    headers={"Connection": "close"})
            await response(scope, receive, send)


def install(app: FastAPI) -> None:
    app.add_exception_handler(errors.TuneforgeError, _tuneforge_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(OperationalError, _database_error)
    app.add_middleware(UnexpectedErrors)  # added last: the outermost of ours, around the body limit too
