"""Config environments on disk: `config/<env>/config.json`, `multidatabackend.json`, optional
`lycoris_config.json`, and `metadata.json` (description, tags, times). The active environment's name is kept in
`.tuneforge/active_environment`, so the CLI and the server agree without a database.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tuneforge.errors import BadRequest, Conflict, FieldError, Invalid, NotFound
from tuneforge.options import names
from tuneforge.options.capabilities import FAMILIES, flavour_of, needs_conditioning
from tuneforge.options.spec import write_text_atomic
from tuneforge.schemas.configs import ConfigUpdate, EnvironmentCreate
from tuneforge.services import examples, validation
from tuneforge.services.config_files import (
    CONFIG_FILE,
    DATALOADER_FILE,
    LYCORIS_FILE,
    METADATA_FILE,
    check_name,
    env_dir,
    mask_secrets,
    read_json,
    unmask_secrets,
    write_json,
    write_with_backup,
)
from tuneforge.services.hook_rights import ensure_may_set_hooks
from tuneforge.services.principal import Principal
from tuneforge.settings import Settings

ACTIVE_FILE = "active_environment"
STARTER_LYCORIS = {"algo": "lokr", "multiplier": 1.0, "linear_dim": 10000, "linear_alpha": 1, "factor": 16}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _existing(settings: Settings, name: str) -> Path:
    folder = env_dir(settings, name)
    if not (folder / CONFIG_FILE).is_file():
        raise NotFound(f"No environment named {name!r}: create it with POST /api/configs/environments")
    return folder


# --- active environment ---------------------------------------------------------------------------------------

def active_name(settings: Settings) -> str | None:
    path = settings.state_dir / ACTIVE_FILE
    try:
        name = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    try:
        return name if (env_dir(settings, name) / CONFIG_FILE).is_file() else None
    except BadRequest:
        return None


def activate(settings: Settings, name: str) -> dict[str, Any]:
    _existing(settings, name)
    write_text_atomic(settings.state_dir / ACTIVE_FILE, name + "\n")
    return {"active": name, "message": f"Environment '{name}' is now active"}


# --- reading ----------------------------------------------------------------------------------------------------

def load_config(settings: Settings, name: str) -> dict[str, Any]:
    """The environment's options as stored, keys in `--option` spelling (unknown keys kept for validation)."""
    data = read_json(_existing(settings, name) / CONFIG_FILE, f"config/{name}/{CONFIG_FILE}")
    if not isinstance(data, dict):
        raise Invalid(f"config/{name}/{CONFIG_FILE} must hold a JSON object",
                      [FieldError(f"config/{name}/{CONFIG_FILE}", "expected a JSON object of options")])
    return {names.cli(names.bare(key)): value for key, value in data.items()}


def _metadata(settings: Settings, name: str) -> dict[str, Any]:
    folder = env_dir(settings, name)
    try:
        stored = read_json(folder / METADATA_FILE, "metadata")
    except (FileNotFoundError, Invalid):
        stored = {}
    stored = stored if isinstance(stored, dict) else {}
    modified = datetime.fromtimestamp((folder / CONFIG_FILE).stat().st_mtime, UTC).isoformat(timespec="seconds")
    return {
        "name": name,
        "description": stored.get("description", ""),
        "tags": stored.get("tags", []),
        "created_at": stored.get("created_at", modified),
        "updated_at": stored.get("updated_at", modified),
        "path": f"config/{name}/{CONFIG_FILE}",
        "has_dataloader": (folder / DATALOADER_FILE).is_file(),
        "has_lycoris_config": (folder / LYCORIS_FILE).is_file(),
        "is_active": active_name(settings) == name,
    }


def describe(settings: Settings, name: str) -> dict[str, Any]:
    """Metadata plus the model summary; a broken config file is reported, not raised."""
    meta = _metadata(settings, name)
    try:
        config = load_config(settings, name)
    except Invalid as exc:
        return {**meta, "error": exc.errors[0].message if exc.errors else exc.detail}
    for key in ("model_family", "model_flavour", "model_type", "lora_type"):
        meta[key] = config.get(names.cli(key))
    return meta


def list_environments(settings: Settings, config_type: str = "model") -> dict[str, Any]:
    folders = sorted(p.name for p in settings.config_dir.iterdir() if (p / CONFIG_FILE).is_file()) \
        if settings.config_dir.is_dir() else []
    found = []
    for name in folders:
        try:
            check_name(name)
        except BadRequest:
            continue  # a folder made by hand with a name the API cannot address
        if config_type == "dataloader" and not (settings.config_dir / name / DATALOADER_FILE).is_file():
            continue
        found.append(describe(settings, name))
    return {"configs": found, "active": active_name(settings), "count": len(found), "config_type": config_type}


def get_environment(settings: Settings, name: str) -> dict[str, Any]:
    config = load_config(settings, name)
    return {"name": name, "config": mask_secrets(config), "metadata": _metadata(settings, name)}


def export_environment(settings: Settings, name: str) -> dict[str, Any]:
    folder = _existing(settings, name)
    optional = {}
    for key, file in (("dataloader", DATALOADER_FILE), ("lycoris_config", LYCORIS_FILE)):
        path = folder / file
        optional[key] = read_json(path, f"config/{name}/{file}") if path.is_file() else None
    return {**get_environment(settings, name), **optional, "exported_at": _now()}


# --- writing ----------------------------------------------------------------------------------------------------

def create_environment(settings: Settings, data: EnvironmentCreate) -> dict[str, Any]:
    name = check_name(data.name)
    folder = env_dir(settings, name)
    if (folder / CONFIG_FILE).is_file():
        raise Conflict(f"Environment {name!r} already exists: PUT /api/configs/{name} to change it")
    if data.example:
        files = examples.load_example(data.example)
        _merge_request(files["config"], data)
    else:
        files = {"config": starter_config(data), "dataloader": None, "lycoris": None}
    checked = validation.check_options(settings, files["config"])
    options = checked.options
    if checked.errors or options is None:
        raise Invalid("The environment's settings are invalid", checked.errors)
    if files["lycoris"] is None and options.model_type == "lora" and options.lora_type == "lycoris":
        files["lycoris"] = STARTER_LYCORIS
    config = files["config"] | environment_paths(name, lycoris=files["lycoris"] is not None)
    folder.mkdir(parents=True, exist_ok=True)  # a folder without config.json is no environment yet: reuse it
    _write_new(folder / DATALOADER_FILE,
               files["dataloader"] or starter_dataloader(name, options.model_family, options.model_flavour))
    if files["lycoris"] is not None:
        _write_new(folder / LYCORIS_FILE, files["lycoris"])
    now = _now()
    write_json(folder / METADATA_FILE, {"description": data.description or files.get("description", ""),
                                        "tags": data.tags or files.get("tags", []), "created_at": now,
                                        "updated_at": now, "example": data.example})
    write_json(folder / CONFIG_FILE, config)  # last: the environment exists once its config does
    return get_environment(settings, name)


def environment_paths(name: str, lycoris: bool) -> dict[str, str]:
    """The options that point at the environment's own files and output folder (an example's point at the example)."""
    paths = {"--data_backend_config": f"{name}/{DATALOADER_FILE}", "--output_dir": f"output/{name}"}
    if lycoris:
        paths["--lycoris_config"] = f"config/{name}/{LYCORIS_FILE}"
    return paths


def _write_new(path: Path, data: Any) -> None:
    """A file the user already put in the folder is theirs: never replaced by a starter."""
    if not path.exists():
        write_json(path, data)


def _merge_request(config: dict[str, Any], data: EnvironmentCreate) -> None:
    """Fields given beside `example` override it; a different family would make the example meaningless."""
    if data.model_family and data.model_family != config.get("--model_family"):
        raise Invalid(f"Example {data.example!r} is for {config.get('--model_family')}, not {data.model_family}",
                      [FieldError("model_family", f"the example trains {config.get('--model_family')}")])
    for key in ("model_flavour", "model_type", "lora_type"):
        if getattr(data, key):
            config[names.cli(key)] = getattr(data, key)


def starter_config(data: EnvironmentCreate) -> dict[str, Any]:
    assert data.model_family is not None  # EnvironmentCreate: a family, or an example
    family = FAMILIES[data.model_family]
    config: dict[str, Any] = {"--model_family": family.name,
                              "--model_flavour": data.model_flavour or family.default_flavour,
                              "--model_type": data.model_type or "lora"}
    if config["--model_type"] == "lora":
        config["--lora_type"] = data.lora_type or "standard"
    elif data.lora_type:
        config["--lora_type"] = data.lora_type  # rejected by the registry rules with a clear message
    return config


def starter_dataloader(name: str, family: str, flavour: str | None) -> list[dict[str, Any]]:
    """One image dataset under datasets/<env> with .txt captions, and the default text-embeds cache."""
    chosen = flavour_of(family, flavour)
    pixels = chosen.resolution if chosen is not None else 1024
    image: dict[str, Any] = {
        "id": f"{name}-images", "type": "local", "dataset_type": "image",
        "instance_data_dir": f"datasets/{name}", "caption_strategy": "textfile",
        "resolution": pixels, "resolution_type": "pixel_area", "cache_dir_vae": f"cache/vae/{name}",
        "crop": False, "metadata_backend": "discovery",
    }
    entries = [image]
    if needs_conditioning(family, flavour):
        image["conditioning_data"] = [f"{name}-reference"]
        entries.append({"id": f"{name}-reference", "type": "local", "dataset_type": "conditioning",
                        "instance_data_dir": f"datasets/{name}-reference", "conditioning_type": "reference_strict",
                        "resolution": pixels, "resolution_type": "pixel_area",
                        "cache_dir_vae": f"cache/vae/{name}-reference"})
    entries.append({"id": f"{name}-text-embeds", "type": "local", "dataset_type": "text_embeds", "default": True,
                    "cache_dir": f"cache/text/{name}"})
    return entries


def replace_config(settings: Settings, name: str, data: ConfigUpdate, principal: Principal) -> dict[str, Any]:
    """Validate (registry level) and replace the config; the previous file becomes `config.json.bak`."""
    folder = _existing(settings, name)
    if data.name is not None and data.name != name:
        raise Invalid(f"Body name {data.name!r} does not match the environment {name!r} in the path; "
                      "environments cannot be renamed", [FieldError("name", f"must be {name!r}, or left out")])
    try:
        stored = load_config(settings, name)
    except Invalid:
        stored = {}  # replacing a broken file is how it gets repaired
    ensure_may_set_hooks(principal, data.config, stored)
    checked = validation.check_options(settings, unmask_secrets(data.config, stored))
    if checked.errors or checked.options is None:
        summary = "; ".join(f"{e.field}: {e.message}" for e in checked.errors[:3])
        raise Invalid(f"Invalid configuration: {summary}", checked.errors)
    write_with_backup(folder / CONFIG_FILE, checked.storable())
    _update_metadata(settings, name, data)
    return {**get_environment(settings, name), "warnings": [w.as_dict() for w in checked.warnings],
            "message": f"Configuration '{name}' saved"}


def save_config(settings: Settings, name: str, values: dict[str, Any]) -> None:
    """Store already-validated options (canonical or `--` keys) as the environment's config, with a backup.
    For `/api/training/start`, which writes the options it was given (not the filled-in defaults) back."""
    _existing(settings, name)
    write_with_backup(env_dir(settings, name) / CONFIG_FILE, {names.cli(names.bare(k)): v for k, v in values.items()})


def _update_metadata(settings: Settings, name: str, data: ConfigUpdate) -> None:
    path = env_dir(settings, name) / METADATA_FILE
    try:
        meta = read_json(path, "metadata") if path.is_file() else {}
    except Invalid:
        meta = {}
    meta = meta if isinstance(meta, dict) else {}
    if data.description is not None:
        meta["description"] = data.description
    if data.tags is not None:
        meta["tags"] = data.tags
    meta.setdefault("created_at", _now())
    meta["updated_at"] = _now()
    write_json(path, meta)


def write_dataloader(settings: Settings, name: str, overwrite: bool) -> dict[str, Any]:
    folder = _existing(settings, name)
    path = folder / DATALOADER_FILE
    if path.exists() and not overwrite:
        raise Conflict(f"config/{name}/{DATALOADER_FILE} exists: send {{\"overwrite\": true}} to replace it")
    config = load_config(settings, name)
    family = config.get("--model_family")
    family = family if family in FAMILIES else next(iter(FAMILIES))
    flavour = config.get("--model_flavour")
    entries = starter_dataloader(name, family, flavour if flavour_of(family, flavour) else None)
    write_with_backup(path, entries)
    return {"name": name, "path": f"config/{name}/{DATALOADER_FILE}", "dataloader": entries,
            "message": "Dataloader file written"}


def delete_environment(settings: Settings, name: str) -> dict[str, Any]:
    folder = _existing(settings, name)
    if active_name(settings) == name:
        raise Conflict(f"Environment {name!r} is active: activate another one before deleting it")
    shutil.rmtree(folder)
    return {"deleted": name, "message": f"Environment '{name}' deleted"}
