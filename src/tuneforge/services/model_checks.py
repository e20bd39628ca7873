"""Checks of the base model: a local diffusers folder of the right family, or a well-formed hub id.

No network: a hub id is checked for form only (the trainer downloads it).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from tuneforge.errors import FieldError
from tuneforge.options.capabilities import FAMILIES, flavour_of, known_hub_ids
from tuneforge.options.model_folder import folder_problems
from tuneforge.options.registry import TrainingOptions
from tuneforge.settings import Settings

FIELD = "--pretrained_model_name_or_path"
HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$")
_LOCAL_PREFIXES = ("/", "./", "../", "~")


def looks_local(settings: Settings, value: str) -> bool:
    """A path rather than a hub id: starts like a path, or names something in the workspace."""
    return value.startswith(_LOCAL_PREFIXES) or (bool(value) and (settings.workspace / value).exists())


def check_base_model(options: TrainingOptions, errors: list[FieldError], warnings: list[FieldError]) -> None:
    """`options` is resolved: a local base model is an absolute path by now, anything else is a hub id."""
    value = options.pretrained_model_name_or_path or ""
    if Path(value).is_absolute():
        _check_folder(options, Path(value), errors, warnings)
    elif not HUB_ID.fullmatch(value) or ".." in value or "--" in value or value.endswith(".git"):
        errors.append(FieldError(FIELD, f"{value!r} is neither a local folder nor a hub id like owner/name: fix "
                                        "the id, or give the folder as an absolute path"))
    else:
        _check_hub_id(options, value, errors, warnings)


def _check_hub_id(options: TrainingOptions, value: str, errors: list[FieldError], warnings: list[FieldError]) -> None:
    """A known hub id of another family or flavour: an error when the engine could not train it as asked (another
    family, pipeline or guidance), a warning when it only differs in size or training stage."""
    known = known_hub_ids().get(value)
    if known is None or known == (options.model_family, options.model_flavour):
        return
    family, flavour = known
    message = (f"{value} is the {family} {flavour} model, but --model_family={options.model_family} "
               f"--model_flavour={options.model_flavour}: set the flavour that matches the model")
    theirs, ours = flavour_of(family, flavour), flavour_of(options.model_family, options.model_flavour)
    differs = family != options.model_family or theirs is None or ours is None or \
        (theirs.pipeline_class, theirs.guidance) != (ours.pipeline_class, ours.guidance)
    (errors if differs else warnings).append(FieldError(FIELD, message))


def _check_folder(options: TrainingOptions, folder: Path, errors: list[FieldError],
                  warnings: list[FieldError]) -> None:
    problems, notes = folder_problems(folder, options.model_family, options.model_flavour)
    errors.extend(FieldError(FIELD, problem) for problem in problems)
    warnings.extend(FieldError(FIELD, note) for note in notes)
    clip = FAMILIES[options.model_family].clip_encoder
    layers = _layers(folder / clip) if clip and not problems else None
    if layers is not None and options.clip_skip > layers:
        errors.append(FieldError("--clip_skip", f"{options.clip_skip}: the CLIP text encoder of {folder} has {layers} "
                                                f"layers; use 0 to {layers}"))


def _layers(component: Path) -> int | None:
    try:
        value = json.loads((component / "config.json").read_text(encoding="utf-8")).get("num_hidden_layers")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, int) else None
