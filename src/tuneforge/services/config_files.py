"""Files of config environments: safe names, JSON reading/writing, and where relative paths point."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from tuneforge.errors import BadRequest, FieldError, Invalid
from tuneforge.options.registry import no_control_characters
from tuneforge.options.spec import write_bytes_atomic, write_text_atomic
from tuneforge.schemas.configs import env_name_problem
from tuneforge.settings import Settings

CONFIG_FILE = "config.json"
DATALOADER_FILE = "multidatabackend.json"
LYCORIS_FILE = "lycoris_config.json"
METADATA_FILE = "metadata.json"


def check_name(name: str, what: str = "environment") -> str:
    """The rule of `schemas.configs.EnvName`, for names that did not come through a schema (folders, files)."""
    if problem := env_name_problem(name):
        raise BadRequest(f"Invalid {what} name {name!r}: {problem}", [FieldError("name", problem)])
    return name


def env_dir(settings: Settings, name: str) -> Path:
    return settings.config_dir / check_name(name)


def read_json(path: Path, label: str) -> Any:
    """Decode a JSON file; malformed content becomes a 422 that says where the syntax error is."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise Invalid(f"{label} is not UTF-8 text", [FieldError(label, "not UTF-8 text: rewrite the file")]) from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        message = f"malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}; fix or rewrite the file"
        raise Invalid(f"{label} is not valid JSON", [FieldError(label, message)]) from exc


def write_json(path: Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def write_with_backup(path: Path, data: Any) -> None:
    """Replace a file, keeping the previous version next to it as `<name>.bak` (byte for byte: it may not be
    UTF-8, and the backup is how a user gets it back)."""
    if path.exists():
        write_bytes_atomic(path.with_name(path.name + ".bak"), path.read_bytes())
    write_json(path, data)


def resolve_config_file(settings: Settings, value: str, field: str) -> Path:
    """A file named by a config (dataloader, LyCORIS, webhooks): relative to config/, `config/…`-prefixed, or
    absolute.

    It must resolve (links followed) inside the workspace: a config must not make the server read arbitrary
    files of the machine.
    """
    try:
        no_control_characters(value)
    except ValueError as exc:
        raise Invalid(f"{field} is not a usable path", [FieldError(field, str(exc))]) from exc
    raw = Path(os.path.expanduser(value.strip()))
    if raw.is_absolute():
        path = raw
    elif raw.parts and raw.parts[0] == settings.config_dir.name:
        path = settings.workspace / raw
    else:
        path = settings.config_dir / raw
        if not path.exists() and (settings.workspace / raw).exists():
            path = settings.workspace / raw
    path = path.resolve()
    if not path.is_relative_to(settings.workspace.resolve()):
        raise Invalid(f"{field} points outside the workspace",
                      [FieldError(field, f"{value!r} resolves outside the workspace {settings.workspace}: put the "
                                         "file under config/ and give its path relative to config/")])
    return path


def resolve_data_path(settings: Settings, value: str) -> Path:
    """A folder for data, caches or output: absolute, `~`-prefixed, or relative to the workspace."""
    raw = Path(os.path.expanduser(value.strip()))
    return (raw if raw.is_absolute() else settings.workspace / raw).resolve()


def nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def writable_problem(path: Path) -> str | None:
    """Why `path` cannot be created or written to, or None. Creates nothing."""
    if path.exists():
        if not path.is_dir():
            return f"{path} exists and is not a folder"
        return None if os.access(path, os.W_OK | os.X_OK) else f"{path} is not writable"
    parent = nearest_existing(path.parent)
    if not parent.is_dir():
        return f"{parent} is not a folder, so {path} cannot be created"
    return None if os.access(parent, os.W_OK | os.X_OK) else f"cannot create {path}: {parent} is not writable"


MASK = "***"


def mask_secrets(config: dict[str, Any]) -> dict[str, Any]:
    """Webhook auth tokens never leave the server: shown as `***`."""
    hooks = config.get("--webhook_config")
    if not isinstance(hooks, list):
        return config
    masked = [{**hook, "auth_token": MASK} if isinstance(hook, dict) and hook.get("auth_token") else hook
              for hook in hooks]
    return {**config, "--webhook_config": masked}


def unmask_secrets(new: dict[str, Any], old: dict[str, Any]) -> dict[str, Any]:
    """A config sent back after a GET carries `***` tokens: keep the stored token of the same callback URL.

    `***` for a URL without a stored token would silently drop the token: that is refused.
    """
    key = next((k for k in new if k.lstrip("-") == "webhook_config"), None)
    hooks, stored = new.get(key) if key else None, old.get("--webhook_config")
    if not isinstance(hooks, list):
        return new
    tokens = {h.get("callback_url"): h.get("auth_token") for h in stored if isinstance(h, dict)} \
        if isinstance(stored, list) else {}
    restored = []
    for index, hook in enumerate(hooks):
        if isinstance(hook, dict) and hook.get("auth_token") == MASK:
            token = tokens.get(hook.get("callback_url"))
            if not token:
                field = f"--webhook_config[{index}].auth_token"
                raise Invalid(f"{field}: '{MASK}' stands for a stored token, but none is stored for this "
                              "callback_url", [FieldError(field, f"'{MASK}' is the masked token of a stored "
                                                                 "webhook and this callback_url has none: send "
                                                                 "the real token")])
            hook = {**hook, "auth_token": token}
        restored.append(hook)
    return {**new, key: restored}
