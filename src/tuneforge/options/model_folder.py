"""Is this folder a diffusers pipeline of the family it is used as? One check for the server and the trainer."""

from __future__ import annotations

import json
from pathlib import Path

from tuneforge.options.capabilities import FAMILIES, Flavour, flavour_of


def folder_problems(folder: Path, family: str, flavour: str | None) -> tuple[list[str], list[str]]:
    """(errors, warnings) about using `folder` as the base model of `family`/`flavour`; each says the fix."""
    index = folder / "model_index.json"
    if not folder.is_dir():
        return [f"local folder {folder} not found; fix the path or use a hub id"], []
    if not index.is_file():
        return [f"{folder} is not a diffusers pipeline folder (no model_index.json); save one with "
                "pipeline.save_pretrained()"], []
    try:
        data = json.loads(index.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return [f"{index} is not readable JSON ({exc}); save the pipeline again"], []
    class_name = data.get("_class_name") if isinstance(data, dict) else None
    classes = FAMILIES[family].pipeline_classes
    if class_name not in classes:
        return [f"{folder} holds a {class_name} pipeline, not a {family} one ({' or '.join(classes)}): point it at a "
                f"{family} model or change --model_family"], []
    named = [name for name, spec in data.items() if not name.startswith("_") and isinstance(spec, list)
             and spec and spec[0]]
    wanted = dict.fromkeys([*FAMILIES[family].components, *named])
    missing = [name for name in wanted if not (folder / name).is_dir()]
    if missing:
        return [f"{folder} lacks {', '.join(missing)}: copy the whole pipeline folder (pipeline.save_pretrained() "
                "writes all of it)"], []
    chosen = flavour_of(family, flavour)
    guidance = _guidance_embeds(folder)
    problem = guidance_problem(guidance, chosen) if chosen is not None and guidance is not None else None
    if problem:
        return [f"{folder}: {problem}"], []
    if chosen is not None and class_name != chosen.pipeline_class:
        return [f"{folder} holds a {class_name} pipeline but --model_flavour={chosen.name} trains a "
                f"{chosen.pipeline_class}: set the flavour that matches the model"], []
    return [], []


def guidance_problem(has_embedding: bool, flavour: Flavour) -> str | None:
    """Why a transformer with (or without) a distilled-guidance embedding cannot be trained as `flavour`."""
    if flavour.guidance == "cfg" or has_embedding == (flavour.guidance == "distilled"):
        return None
    has = "has a guidance embedding (a dev model)" if has_embedding else "has no guidance embedding (a schnell model)"
    return (f"the transformer {has}, but --model_flavour={flavour.name} expects otherwise: set the flavour that "
            "matches the model")


def _guidance_embeds(folder: Path) -> bool | None:
    """Whether the transformer has a distilled-guidance embedding (diffusers' `guidance_embeds`), if it says."""
    try:
        config = json.loads((folder / "transformer" / "config.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    value = config.get("guidance_embeds") if isinstance(config, dict) else None
    return value if isinstance(value, bool) else None
