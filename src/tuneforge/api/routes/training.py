"""Training (`/api/training`): so far, validation of the merged config."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.datastructures import UploadFile

from tuneforge.api.deps import Requires, SettingsDep
from tuneforge.errors import BadRequest, FieldError, Invalid
from tuneforge.services import validation
from tuneforge.services.permissions import Permission
from tuneforge.services.principal import Principal

router = APIRouter(prefix="/api/training", tags=["training"])

_FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")
_BODY_SCHEMA = {
    "requestBody": {
        "content": {
            media: {"schema": {"type": "object", "additionalProperties": True,
                               "description": "Options as `--name`/`name` fields; `__…__` fields are ignored"}}
            for media in (*_FORM_TYPES, "application/json")
        }
    }
}


async def read_fields(request: Request) -> dict[str, Any]:
    """Form (multipart or url-encoded) or JSON object body → option fields. An empty body is no fields."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type in _FORM_TYPES:
        form = await request.form()
        fields: dict[str, Any] = {}
        for key, value in form.multi_items():
            if isinstance(value, UploadFile):
                raise BadRequest(f"Field {key!r} is a file upload; send option values as text")
            fields[key] = value  # a repeated field: the last one wins, as on a command line
        return fields
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        data = await request.json()
    except ValueError as exc:
        raise BadRequest("Malformed JSON body: send valid JSON, or a form") from exc
    if not isinstance(data, dict):
        raise BadRequest("The JSON body must be an object of options")
    return data


def report_body(report: validation.ValidationReport) -> tuple[dict[str, Any], int]:
    warnings = [w.as_dict() for w in report.warnings]
    if report.valid:
        return {"valid": True, "message": "Configuration Valid", "warnings": warnings,
                "environment": report.environment, "config": report.effective_config()}, 200
    errors = [e.as_dict() for e in report.errors]
    summary = "; ".join(f"{e.field}: {e.message}" for e in report.errors[:3])
    return {"valid": False, "message": "Validation Failed", "detail": f"Validation Failed: {summary}",
            "errors": errors, "warnings": warnings, "environment": report.environment}, 422


@router.post("/validate", openapi_extra=_BODY_SCHEMA)
async def validate_config(request: Request, settings: SettingsDep,
                          _: Annotated[Principal, Requires(Permission.CONFIG_VIEW)],
                          env: str | None = None) -> JSONResponse:
    """Merge registry defaults ← active environment (or `?env=`) ← form fields, and check deeply.

    200 `{"valid": true, "message": "Configuration Valid", "warnings", "config"}` or
    422 `{"valid": false, "message": "Validation Failed", "errors": [{"field", "message"}]}`.
    """
    fields = await read_fields(request)
    try:
        report = validation.validate(settings, env=env, overrides=fields)
    except Invalid as exc:  # the environment file itself is broken
        report = validation.ValidationReport(errors=exc.errors or [FieldError("config", exc.detail)], environment=env)
    body, status = report_body(report)
    return JSONResponse(body, status_code=status)
