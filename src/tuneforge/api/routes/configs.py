"""Config environments and the options registry (`/api/configs`)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Query
from fastapi.responses import JSONResponse

from tuneforge.api.deps import Requires, SettingsDep
from tuneforge.api.errors import error_body, responses
from tuneforge.schemas.configs import ConfigUpdate, DataloaderRequest, EnvironmentCreate, EnvName, EnvPathName
from tuneforge.services import catalog, configs, examples
from tuneforge.services.permissions import Permission
from tuneforge.services.principal import Principal

router = APIRouter(prefix="/api/configs", tags=["configurations"])

Viewer = Annotated[Principal, Requires(Permission.CONFIG_VIEW)]
Editor = Annotated[Principal, Requires(Permission.CONFIG_EDIT)]
Json = dict[str, Any]


@router.get("/")
@router.get("", include_in_schema=False)
def list_configs(settings: SettingsDep, _: Viewer,
                 config_type: Literal["model", "dataloader"] = Query("model")) -> Json:
    """List environments: `{"configs": [...], "active", "count"}`."""
    return configs.list_environments(settings, config_type)


@router.post("/environments", status_code=201, responses=responses(404, 409))
def create_environment(data: EnvironmentCreate, settings: SettingsDep, _: Editor) -> Json:
    """Create `config/<name>/config.json` and a starter dataloader file (or copy a shipped example)."""
    return configs.create_environment(settings, data)


@router.get("/examples")
def list_examples(_: Viewer) -> Json:
    found = examples.list_examples()
    return {"examples": found, "count": len(found)}


@router.get("/options")
def list_options(_: Viewer) -> Json:
    """The options registry (every option with type, default, choices/range, help and applicability) and what
    each model family trains."""
    return catalog.options_catalog()


@router.get("/{name}", responses=responses(404))
def get_config(name: EnvPathName, settings: SettingsDep, _: Viewer) -> Json:
    """`{"name", "config": {"--option": value}, "metadata"}`."""
    return configs.get_environment(settings, name)


@router.api_route("/options", methods=["POST", "PUT", "PATCH", "DELETE"], include_in_schema=False)
@router.api_route("/examples", methods=["POST", "PUT", "PATCH", "DELETE"], include_in_schema=False)
def listings_are_read_only() -> JSONResponse:
    """/options and /examples are listings, not environments (whose routes they would otherwise reach)."""
    return JSONResponse(error_body("Method Not Allowed: this listing only answers GET"), status_code=405,
                        headers={"Allow": "GET"})


@router.put("/{name}", responses=responses(404, 405))
def replace_config(name: EnvName, data: ConfigUpdate, settings: SettingsDep, editor: Editor) -> Json:
    """Validate and replace the config (422 with per-field errors); the previous file is kept as a backup."""
    return configs.replace_config(settings, name, data, editor)


@router.delete("/{name}", responses=responses(404, 405, 409))
def delete_config(name: EnvName, settings: SettingsDep, _: Editor) -> Json:
    return configs.delete_environment(settings, name)


@router.post("/{name}/activate", responses=responses(404))
def activate_config(name: EnvPathName, settings: SettingsDep, _: Editor) -> Json:
    return configs.activate(settings, name)


@router.post("/{name}/dataloader", responses=responses(404, 409))
def write_dataloader(name: EnvPathName, settings: SettingsDep, _: Editor,
                     data: Annotated[DataloaderRequest | None, Body()] = None) -> Json:
    """Write a starter dataloader file; 409 if one exists, unless `{"overwrite": true}`."""
    return configs.write_dataloader(settings, name, (data or DataloaderRequest()).overwrite)


@router.get("/{name}/export", responses=responses(404))
def export_config(name: EnvPathName, settings: SettingsDep, _: Viewer) -> JSONResponse:
    """Everything of the environment in one JSON document, for version control."""
    body = configs.export_environment(settings, name)
    return JSONResponse(body, headers={"Content-Disposition": f'attachment; filename="{name}.json"'})
