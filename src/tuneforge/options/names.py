"""Option names: `--name`/`name` spelling, aliases, "did you mean" hints, and the published metadata."""

from __future__ import annotations

from functools import cache
from typing import Any

from tuneforge.errors import FieldError
from tuneforge.options.capabilities import FAMILIES
from tuneforge.options.hints import did_you_mean
from tuneforge.options.registry import TrainingOptions


def extra(name: str) -> dict[str, Any]:
    """The registry metadata (`category`, `families`, `model_types`, `mismatch`, `aliases`) of one option."""
    info = TrainingOptions.model_fields[name].json_schema_extra
    assert isinstance(info, dict)
    return info


@cache
def aliases() -> dict[str, str]:
    """alias → canonical name (e.g. checkpointing_steps → checkpoint_step_interval)."""
    return {alias: name for name in TrainingOptions.model_fields for alias in extra(name)["aliases"]}


def bare(key: str) -> str:
    """`--learning_rate` and `learning_rate` are the same option; surrounding blanks are ignored."""
    key = key.strip()
    return key[2:] if key.startswith("--") else key


def canonical_name(key: str) -> str:
    """The option a key names: `--checkpointing_steps` → checkpoint_step_interval (unknown names unchanged)."""
    name = bare(key)
    return aliases().get(name, name)


def cli(name: str) -> str:
    return f"--{name}"


def is_ignored(key: str) -> bool:
    """Form bookkeeping such as `__active_tab__` is not an option."""
    name = bare(key)
    return name.startswith("__") and name.endswith("__")


def suggest(name: str, candidates: list[str] | None = None) -> str:
    """A " — did you mean …?" suffix for an option name (or one of `candidates`), or "" when nothing is close."""
    if candidates is not None:
        return did_you_mean(name, candidates)
    hint = did_you_mean(name, [*TrainingOptions.model_fields, *aliases()])
    return hint.replace("mean '", "mean '--", 1)


def canonical(raw: dict[str, Any]) -> tuple[dict[str, Any], list[FieldError]]:
    """Map input keys to canonical option names. Unknown names and clashing spellings are errors."""
    result: dict[str, Any] = {}
    spelled: dict[str, str] = {}
    problems: list[FieldError] = []
    for key, value in raw.items():
        if is_ignored(key):
            continue
        name = canonical_name(key)
        if name not in TrainingOptions.model_fields:
            problems.append(FieldError(cli(bare(key)), f"unknown option '{bare(key)}'{suggest(bare(key))}"))
            continue
        if name in result and result[name] != value:
            problems.append(FieldError(cli(name), f"given twice ({spelled[name]!r} and {key!r}) with different "
                                                  "values; send it once"))
            continue
        result[name] = value
        spelled[name] = key
    return result, problems


def to_cli(values: dict[str, Any]) -> dict[str, Any]:
    """canonical names → `--name` keys, as stored on disk and shown in responses."""
    return {cli(name): value for name, value in values.items()}


@cache
def metadata() -> list[dict[str, Any]]:
    """The published registry: one entry per option, JSON-schema typed, for `GET /api/configs/options`."""
    schema = TrainingOptions.model_json_schema()
    properties = schema["properties"]
    required = set(schema.get("required", []))
    entries = []
    for name, field in TrainingOptions.model_fields.items():
        prop = dict(properties[name])
        info = extra(name)
        entry: dict[str, Any] = {
            "name": cli(name),
            "key": name,
            "description": field.description,
            "category": info["category"],
            "families": info["families"],
            "model_types": info["model_types"],
            "aliases": [cli(alias) for alias in info["aliases"]],
            "required": name in required,
            "default": None if name in required else field.default,
        }
        entry.update(_type_info(prop, schema.get("$defs", {})))
        if name == "model_flavour":
            entry["choices_by_family"] = {fam.name: list(fam.flavours) for fam in FAMILIES.values()}
        entries.append(entry)
    return entries


_CONSTRAINTS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "pattern", "minLength")


def _type_info(prop: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """Flatten a JSON-schema property to `type`, `nullable`, `choices` and range constraints."""
    variants = prop.get("anyOf", [prop])
    nullable = any(v.get("type") == "null" for v in variants)
    main = next((v for v in variants if v.get("type") != "null"), {})
    info: dict[str, Any] = {"type": main.get("type", "object"), "nullable": nullable}
    if "enum" in main:
        info["choices"] = main["enum"]
    if main.get("type") == "array" and "$ref" in main.get("items", {}):
        info["items"] = defs.get(main["items"]["$ref"].rsplit("/", 1)[-1], {}).get("properties")
    for key in _CONSTRAINTS:
        if key in main:
            info[key] = main[key]
    return info
