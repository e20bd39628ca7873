"""Training (`/api/training`): so far, validation of the merged config."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter

from tuneforge.api.deps import Requires, SettingsDep
from tuneforge.api.errors import responses
from tuneforge.api.forms import FormFields
from tuneforge.schemas.configs import EnvPathName
from tuneforge.services import validation
from tuneforge.services.permissions import Permission
from tuneforge.services.principal import Principal

router = APIRouter(prefix="/api/training", tags=["training"])

BODY_SCHEMA = {
    "requestBody": {
        "content": {
            media: {"schema": {"type": "object", "additionalProperties": True,
                               "description": "Options as `--name`/`name` fields; `__…__` fields are ignored"}}
            for media in ("multipart/form-data", "application/x-www-form-urlencoded", "application/json")
        }
    }
}


def valid_body(report: validation.ValidationReport) -> dict[str, Any]:
    return {"valid": True, "message": "Configuration Valid", "warnings": [w.as_dict() for w in report.warnings],
            "environment": report.environment, "config": report.effective_config()}


@router.post("/validate", openapi_extra=BODY_SCHEMA, responses=responses(404))
def validate_config(settings: SettingsDep, _: Annotated[Principal, Requires(Permission.CONFIG_VIEW)],
                    fields: FormFields, env: EnvPathName | None = None) -> dict[str, Any]:
    """Merge registry defaults ← active environment (or `?env=`) ← form fields, and check deeply.

    200 `{"valid": true, "message": "Configuration Valid", "warnings", "config"}` or
    422 `{"valid": false, "message": "Validation Failed", "errors": [{"field", "message"}]}`.
    """
    report = validation.validate(settings, env=env, overrides=fields)
    report.raise_if_invalid()
    return valid_body(report)
