"""Checks of the base model: a local diffusers folder of the right family, or a well-formed hub id.

No network: a hub id is checked for form only (the trainer downloads it).
"""

from __future__ import annotations

import re
from pathlib import Path

from tuneforge.errors import FieldError, TuneforgeError
from tuneforge.options.families import FAMILIES, flavour_of, known_hub_ids
from tuneforge.options.registry import TrainingOptions
from tuneforge.services.config_files import read_json
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
    index = folder / "model_index.json"
    if not folder.is_dir():
        errors.append(FieldError(FIELD, f"local folder {folder} not found; fix the path or use a hub id"))
        return
    if not index.is_file():
        errors.append(FieldError(FIELD, f"{folder} is not a diffusers pipeline folder (no model_index.json); "
                                        "save one with pipeline.save_pretrained()"))
        return
    try:
        data = read_json(index, FIELD)
    except TuneforgeError as exc:
        errors.extend(exc.errors)
        return
    class_name = data.get("_class_name") if isinstance(data, dict) else None
    classes = FAMILIES[options.model_family].pipeline_classes
    if class_name not in classes:
        errors.append(FieldError(FIELD, f"{folder} holds a {class_name} pipeline, not a {options.model_family} "
                                        f"one ({' or '.join(classes)}): point it at a "
                                        f"{options.model_family} model or change --model_family"))
        return
    missing = [name for name, spec in data.items() if not name.startswith("_") and isinstance(spec, list)
               and spec and spec[0] and not (folder / name).is_dir()]
    if missing:
        errors.append(FieldError(FIELD, f"{folder} lacks {', '.join(missing)}, named in its model_index.json: copy "
                                        "the whole pipeline folder (pipeline.save_pretrained() writes all of it)"))
        return
    flavour = flavour_of(options.model_family, options.model_flavour)
    if flavour is not None and class_name != flavour.pipeline_class:  # an unknown flavour: reported by the rules
        warnings.append(FieldError(FIELD, f"{folder} holds a {class_name} pipeline but --model_flavour="
                                          f"{options.model_flavour} expects {flavour.pipeline_class}: check that "
                                          "the flavour matches the model"))
