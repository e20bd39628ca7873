"""Shipped example environments (package data under `tuneforge/examples/<name>/`)."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

from tuneforge.errors import NotFound
from tuneforge.options import names
from tuneforge.services.config_files import CONFIG_FILE, DATALOADER_FILE, LYCORIS_FILE

META_FILE = "example.json"


def _root() -> Path:
    return Path(str(resources.files("tuneforge") / "examples"))


def _load(folder: Path, file: str) -> Any:
    path = folder / file
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def list_examples() -> list[dict[str, Any]]:
    found = []
    for folder in sorted(p for p in _root().iterdir() if (p / CONFIG_FILE).is_file()):
        config = _load(folder, CONFIG_FILE)
        meta = _load(folder, META_FILE) or {}
        found.append({
            "name": folder.name,
            "description": meta.get("description", ""),
            "tags": meta.get("tags", []),
            "model_family": config.get("--model_family"),
            "model_flavour": config.get("--model_flavour"),
            "model_type": config.get("--model_type"),
            "lora_type": config.get("--lora_type"),
            "files": sorted(p.name for p in folder.iterdir() if p.name != META_FILE),
        })
    return found


def load_example(name: str) -> dict[str, Any]:
    """The example's files; the caller points the paths that name the example at the new environment."""
    folder = _root() / name
    if not name or "/" in name or ".." in name or not (folder / CONFIG_FILE).is_file():
        known = ", ".join(e["name"] for e in list_examples())
        raise NotFound(f"No example named {name!r}; available: {known}")
    config = {names.cli(names.bare(k)): v for k, v in _load(folder, CONFIG_FILE).items()}
    meta = _load(folder, META_FILE) or {}
    return {"config": config, "dataloader": _load(folder, DATALOADER_FILE), "lycoris": _load(folder, LYCORIS_FILE),
            "description": meta.get("description", ""), "tags": meta.get("tags", [])}
