"""The published OpenAPI schema, made to say what the server does: how to authenticate, the one error shape
(`{"detail", "errors"?}`) of every 4xx and 5xx, and every status a route can return.

Statuses that follow from the server's layers are added here, from facts about each route: every request passes the
body limit (400 for an unreadable length, 413) and the database (503 busy, 507 disk full on writes); every route
but the public ones authenticates (401) and checks permission and origin (403); routes with inputs validate them
(422). What a route's own logic can answer (404, 409, 429) it declares itself with `errors.responses(...)`.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import iter_route_contexts

from tuneforge.api.errors import DESCRIPTIONS, ERROR_SCHEMA_NAME, error_schema

SECURITY_SCHEMES = {
    "ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key", "description": "An API key (`st_...`)"},
    "Bearer": {"type": "http", "scheme": "bearer", "description": "The same API key as a bearer token"},
    "Session": {"type": "apiKey", "in": "cookie", "name": "tuneforge_session",
                "description": "The browser session set by login (changes need this server's Origin)"},
}
UNSAFE = {"post", "put", "patch", "delete"}
ERROR_REF = {"$ref": f"#/components/schemas/{ERROR_SCHEMA_NAME}"}


def install(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _complete(app, get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes,
                tags=app.openapi_tags))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _complete(app: FastAPI, schema: dict[str, Any]) -> dict[str, Any]:
    components = schema.setdefault("components", {})
    components.setdefault("schemas", {})[ERROR_SCHEMA_NAME] = error_schema()
    for unused in ("HTTPValidationError", "ValidationError"):
        components["schemas"].pop(unused, None)
    components["securitySchemes"] = SECURITY_SCHEMES
    public = {(route.path, method.lower()) for route in iter_route_contexts(app.routes)
              for method in route.methods or () if getattr(route.endpoint, "__tuneforge_public__", False)}
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            _complete_operation(operation, method, is_public=(path, method) in public, is_health=path == "/health")
    return schema


def _complete_operation(operation: dict[str, Any], method: str, is_public: bool, is_health: bool) -> None:
    statuses = {400, 413}
    if not is_health:
        statuses.add(503)
        if method in UNSAFE:
            statuses.add(507)
    if is_public:
        operation["security"] = []
    else:
        statuses |= {401, 403}
        operation["security"] = [{name: []} for name in SECURITY_SCHEMES]
    if operation.get("parameters") or operation.get("requestBody"):
        statuses.add(422)
    responses = operation.setdefault("responses", {})
    for status in sorted(statuses):
        responses.setdefault(str(status), {"description": DESCRIPTIONS[status]})
    for status, response in responses.items():
        if status.startswith(("4", "5")):
            response["content"] = {"application/json": {"schema": ERROR_REF}}
            response.setdefault("description", DESCRIPTIONS.get(int(status), "Error"))

