"""Parsing raw option values (JSON or form strings) into `TrainingOptions`, and the cross-option rules.

Every problem becomes a `FieldError` whose field is the `--option` and whose message says what to change.
"""

from __future__ import annotations

import typing
from typing import Any, Literal

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from tuneforge.errors import FieldError
from tuneforge.options import names
from tuneforge.options.families import FAMILIES, QUANTISED_PRECISIONS, flavour_of
from tuneforge.options.registry import TrainingOptions


def nullable(name: str) -> bool:
    annotation = TrainingOptions.model_fields[name].annotation
    return annotation is type(None) or type(None) in typing.get_args(annotation)


def clean_values(values: dict[str, Any]) -> dict[str, Any]:
    """An empty form field means "not set": None for nullable options, the default for the others."""
    cleaned: dict[str, Any] = {}
    for name, value in values.items():
        if isinstance(value, str) and value.strip() == "":
            value = None
        if value is None and not nullable(name):
            continue
        cleaned[name] = value
    return cleaned


def parse(values: dict[str, Any]) -> tuple[TrainingOptions | None, list[FieldError]]:
    """Validate canonical-name values against the registry; (options, []) or (None, errors)."""
    try:
        return TrainingOptions.model_validate(clean_values(values)), []
    except ValidationError as exc:
        return None, [_field_error(problem) for problem in exc.errors()]


def _field_error(problem: ErrorDetails) -> FieldError:
    location = [str(part) for part in problem["loc"]]
    name = location[0] if location else "config"
    field = names.cli(name) + "".join(f"[{part}]" if part.isdigit() else f".{part}" for part in location[1:])
    return FieldError(field, _message(name, len(location) > 1, problem))


def literal_choices(annotation: Any) -> list[str]:
    """The values of a `Literal[...]` annotation, also inside `Literal[...] | None`."""
    if typing.get_origin(annotation) is Literal:
        return [str(value) for value in typing.get_args(annotation)]
    return [choice for arg in typing.get_args(annotation) for choice in literal_choices(arg)]


def _message(name: str, nested: bool, problem: ErrorDetails) -> str:
    kind = problem["type"]
    got = problem.get("input")
    ctx = problem.get("ctx", {})
    default = TrainingOptions.model_fields[name].default if name in TrainingOptions.model_fields else None
    example = f"; e.g. --{name}={default}" if default not in (None, "", ...) else ""
    if kind == "missing":
        hint = " or ".join(FAMILIES) if name == "model_family" else "a value"
        return f"required: set --{name} to {hint}"
    if kind == "literal_error" and not nested:
        choices = literal_choices(TrainingOptions.model_fields[name].annotation)
        return f"must be one of {', '.join(choices)} (got {got!r}){names.suggest(str(got), choices)}"
    if kind in ("float_parsing", "float_type"):
        return f"must be a number (got {got!r}){example}"
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return f"must be a whole number (got {got!r}){example}"
    if kind in ("bool_parsing", "bool_type"):
        return f"must be true or false (got {got!r})"
    bounds = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}
    if kind in bounds:
        limit = next(iter(ctx.values()), "?")
        return f"must be {bounds[kind]} {limit} (got {got!r})"
    if kind == "string_pattern_mismatch" and name == "validation_resolution":
        return f"must look like 1024x1024 or 1024 (several comma separated), got {got!r}"
    message = str(problem["msg"]).removeprefix("Value error, ")
    return f"{message} (got {got!r})" if got is not None and not isinstance(got, dict | list) else message


def check_rules(options: TrainingOptions) -> tuple[list[FieldError], list[FieldError]]:
    """Rules across options: (errors, warnings). Needs no file system."""
    errors: list[FieldError] = []
    warnings: list[FieldError] = []
    _check_model(options, errors)
    _check_schedule(options, errors, warnings)
    _check_applicability(options, errors, warnings)
    if options.push_to_hub and not options.hub_model_id:
        errors.append(FieldError("--hub_model_id", "required when --push_to_hub is true: set it to user/repo"))
    if options.validation_method == "external-script" and not options.validation_external_script:
        errors.append(FieldError("--validation_external_script",
                                 "required when --validation_method=external-script: set the command to run"))
    return errors, warnings


def _check_model(options: TrainingOptions, errors: list[FieldError]) -> None:
    family = FAMILIES[options.model_family]
    if flavour_of(options.model_family, options.model_flavour) is None:
        errors.append(FieldError("--model_flavour", f"unknown flavour {options.model_flavour!r} for "
                                 f"{family.name}; use one of {', '.join(family.flavours)}"
                                 f"{names.suggest(str(options.model_flavour), list(family.flavours))}"))
    if options.base_model_precision in QUANTISED_PRECISIONS and options.model_type != "lora":
        errors.append(FieldError("--base_model_precision", f"{options.base_model_precision} quantises the base "
                                 "model, which then cannot be trained: use --model_type=lora, or a precision of "
                                 "no_change, bf16, fp16 or fp32"))


def _check_schedule(options: TrainingOptions, errors: list[FieldError], warnings: list[FieldError]) -> None:
    by_steps, by_epochs = options.max_train_steps > 0, options.num_train_epochs > 0
    if by_steps == by_epochs:
        message = ("set exactly one of --max_train_steps and --num_train_epochs above 0 "
                   f"(got max_train_steps={options.max_train_steps}, num_train_epochs={options.num_train_epochs})")
        if by_steps:
            message += "; to train by steps send --num_train_epochs=0"
        errors.append(FieldError("--num_train_epochs", message))
    if by_steps and options.lr_warmup_steps >= options.max_train_steps:
        warnings.append(FieldError("--lr_warmup_steps", f"{options.lr_warmup_steps} warm-up steps is not below "
                                   f"--max_train_steps={options.max_train_steps}: the run never reaches its peak "
                                   "learning rate"))
    if options.model_type == "full" and options.learning_rate > 1e-3:
        warnings.append(FieldError("--learning_rate", f"{options.learning_rate} is very high for a full "
                                   "fine-tune (usually 1e-6 to 1e-4)"))
    if options.validation_step_interval > 0 and not options.validation_prompt \
            and options.validation_method != "external-script":
        warnings.append(FieldError("--validation_prompt", "not set: no validation images will be made"))
    if options.mixed_precision == "fp16" and options.model_family == "flux":
        warnings.append(FieldError("--mixed_precision", "fp16 overflows in Flux; bf16 is recommended"))


def _check_applicability(options: TrainingOptions, errors: list[FieldError], warnings: list[FieldError]) -> None:
    """Options set (to a non-default value) for a family or model type they do not apply to."""
    for name in sorted(options.model_fields_set):
        info = names.extra(name)
        value = getattr(options, name)
        if value == TrainingOptions.model_fields[name].default:
            continue
        families, model_types = info["families"], info["model_types"]
        reason = None
        if families and options.model_family not in families:
            reason = f"applies only to {', '.join(families)}, not {options.model_family}"
        elif model_types and options.model_type not in model_types:
            reason = f"applies only to --model_type={'/'.join(model_types)}, not {options.model_type}"
        if reason is None:
            continue
        if info["mismatch"] == "error":
            errors.append(FieldError(names.cli(name), f"{reason}: remove it or change --model_type"))
        else:
            warnings.append(FieldError(names.cli(name), f"{reason}; it is ignored"))
