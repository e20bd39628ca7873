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
from tuneforge.options.capabilities import FAMILIES, PRECISIONS, flavour_of, trainable_flavours
from tuneforge.options.registry import SIZE_STEP, TrainingOptions, made_size, validation_sizes


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
    """Rules across options, against the capability table: (errors, warnings). Needs no file system."""
    errors: list[FieldError] = []
    warnings: list[FieldError] = []
    _check_model(options, errors)
    _check_guidance(options, errors, warnings)
    lycoris = options.model_type == "lora" and options.lora_type == "lycoris"
    if lycoris and "flux_lora_target" in options.model_fields_set:
        warnings.append(FieldError("--flux_lora_target", "LyCORIS picks its layers from lycoris_config "
                                   "(apply_preset); it is ignored"))
    if options.model_type == "lora" and not lycoris and options.lycoris_config:
        warnings.append(FieldError("--lycoris_config", "applies only to --lora_type=lycoris; it is ignored (set "
                                   "--lora_type=lycoris to train a LyCORIS network)"))
    _check_sizes(options, warnings)
    _check_schedule(options, errors, warnings)
    _check_applicability(options, errors, warnings)
    _check_not_built(options, errors)
    if options.validation_method == "external-script" and not options.validation_external_script:
        errors.append(FieldError("--validation_external_script",
                                 "required when --validation_method=external-script: set the command to run"))
    return errors, warnings


def _check_model(options: TrainingOptions, errors: list[FieldError]) -> None:
    """The family, flavour, model type, adapter kind and precision, as the capability table has them."""
    family = FAMILIES[options.model_family]
    flavour = flavour_of(options.model_family, options.model_flavour)
    trainable = trainable_flavours(family)
    if flavour is None:
        errors.append(FieldError("--model_flavour", f"unknown flavour {options.model_flavour!r} for "
                                 f"{family.name}; use one of {', '.join(family.flavours)}"
                                 f"{names.suggest(str(options.model_flavour), list(family.flavours))}"))
    elif flavour.adapter is None:
        errors.append(FieldError("--model_flavour", f"{family.name} {flavour.name} cannot be trained by this version "
                                 f"of tuneforge yet; trainable {family.name} flavours: {', '.join(trainable)}"))
    if options.model_type not in family.model_types:
        errors.append(FieldError("--model_type", f"{family.name} trains model_type {' or '.join(family.model_types)}"))
    if options.model_type == "lora" and options.lora_type not in family.lora_types:
        errors.append(FieldError("--lora_type", f"{family.name} trains lora_type {' or '.join(family.lora_types)}"))
    if options.base_model_precision not in family.precisions:
        errors.append(FieldError("--base_model_precision", f"{family.name} loads in "
                                                           f"{', '.join(family.precisions)}"))
    precision = PRECISIONS[options.base_model_precision]
    if precision.quantised and options.model_type != "lora":
        errors.append(FieldError("--base_model_precision", f"{precision.name} quantises the base "
                                 "model, which then cannot be trained: use --model_type=lora, or a precision of "
                                 "no_change, bf16, fp16 or fp32"))
    if precision.name == "fp16" and options.model_type == "full" and options.mixed_precision == "fp16":
        errors.append(FieldError("--base_model_precision", "fp16 weights cannot be fully fine-tuned with "
                                 "--mixed_precision=fp16 (the gradient scaler refuses fp16 gradients): use bf16 or "
                                 "fp32 weights, or --mixed_precision=bf16"))
    if precision.quantiser == "bnb" and options.model_type == "lora" and options.lora_type == "lycoris":
        errors.append(FieldError("--base_model_precision", "LyCORIS does not train over bitsandbytes 4-bit weights: "
                                 "use int8-quanto or int4-quanto, or --lora_type=standard"))


def _check_guidance(options: TrainingOptions, errors: list[FieldError], warnings: list[FieldError]) -> None:
    """Guidance and reference options must fit what the flavour has: a CFG model, a distilled guidance embedding,
    or neither; reference images or none."""
    flavour = flavour_of(options.model_family, options.model_flavour)
    if flavour is None:
        return
    given = {name for name in options.model_fields_set
             if getattr(options, name) != TrainingOptions.model_fields[name].default}
    model = f"{options.model_family} {flavour.name}"
    if flavour.guidance == "none":
        for name in sorted(given & {"flux_guidance_value", "validation_guidance"}):
            errors.append(FieldError(names.cli(name), f"{model} has no guidance (it is distilled to sample without "
                                                      "it): remove the option, or use the dev flavour"))
    if not flavour.needs_conditioning:
        for name in sorted(given & {"validation_reference_image", "conditioning_multidataset_sampling"}):
            warnings.append(FieldError(names.cli(name), f"{model} trains without reference images; it is ignored"))
    if flavour.guidance != "cfg" and "validation_negative_prompt" in given:
        warnings.append(FieldError("--validation_negative_prompt", f"{model} samples without a negative prompt "
                                   "(guidance is distilled into the model); it is ignored"))


def _check_sizes(options: TrainingOptions, warnings: list[FieldError]) -> None:
    """Images are made in multiples of 16 pixels (8x VAE, 2x2 patches): say so when another size is asked for."""
    uneven = [(size, made_size(size)) for size in validation_sizes(options) if made_size(size) != size]
    if options.validation_resolution and uneven:
        asked = ", ".join(f"{w}x{h}" for (w, h), _ in uneven)
        made = ", ".join(f"{w}x{h}" for _, (w, h) in uneven)
        warnings.append(FieldError("--validation_resolution", f"{asked}: sizes are multiples of {SIZE_STEP}, so "
                                   f"validation makes {made}"))


def _check_not_built(options: TrainingOptions, errors: list[FieldError]) -> None:
    """Options the registry knows (so that configs from other tools read clearly) but the engine does not do."""
    if options.push_to_hub:
        errors.append(FieldError("--push_to_hub", "uploading to the Hugging Face hub is not built into tuneforge: "
                                 "remove it and upload the output folder yourself (huggingface-cli upload), e.g. "
                                 "from a --post_checkpoint_script"))
    if options.post_upload_script:
        errors.append(FieldError("--post_upload_script", "runs after hub uploads, which tuneforge does not make: use "
                                 "--post_checkpoint_script, which runs after every saved checkpoint"))


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
