"""Checks of the base model: a local diffusers folder of the right family, or a well-formed hub id.

No network: a hub id is checked for form only (the trainer downloads it).
"""

from __future__ import annotations

import re
from pathlib import Path

from tuneforge.errors import FieldError
from tuneforge.options.capabilities import known_hub_ids
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
        _check_hub_id(options, value, warnings)


def _check_hub_id(options: TrainingOptions, value: str, warnings: list[FieldError]) -> None:
    known = known_hub_ids().get(value)
    if known is not None and known != (options.model_family, options.model_flavour):
        family, flavour = known
        warnings.append(FieldError(FIELD, f"{value} is the {family} {flavour} model, but --model_family="
                                          f"{options.model_family} --model_flavour={options.model_flavour}: set "
                                          "the flavour that matches the model"))


def _check_folder(options: TrainingOptions, folder: Path, errors: list[FieldError],
                  warnings: list[FieldError]) -> None:
    problems, notes = folder_problems(folder, options.model_family, options.model_flavour)
    errors.extend(FieldError(FIELD, problem) for problem in problems)
    warnings.extend(FieldError(FIELD, note) for note in notes)
