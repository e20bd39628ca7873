"""What a run trains, described without torch. Every checkpoint records it; resuming from a checkpoint made with
another layout is refused by validate (before the job starts) and again by the trainer."""

from __future__ import annotations

from typing import Any

from tuneforge.errors import FieldError
from tuneforge.options.capabilities import FAMILIES
from tuneforge.options.lycoris import LycorisConfig
from tuneforge.options.registry import TrainingOptions

# layout key → the option a user changes to match a checkpoint
_FIELDS = {"model_family": "--model_family", "model_flavour": "--model_flavour", "model_type": "--model_type",
           "lora_type": "--lora_type",
           "lora_rank": "--lora_rank", "lora_alpha": "--lora_alpha", "lora_targets": "--flux_lora_target",
           "lycoris": "--lycoris_config"}
# LyCORIS settings that change neither which tensors exist nor what they mean
_LYCORIS_FREE = {"multiplier", "dropout", "rank_dropout", "module_dropout", "bypass_mode"}


def layout(options: TrainingOptions, lycoris: LycorisConfig | None) -> dict[str, Any]:
    """The settings that decide which tensors a run trains and what they mean."""
    described: dict[str, Any] = {"model_family": options.model_family, "model_flavour": options.model_flavour,
                                 "model_type": options.model_type}
    if options.model_type != "lora":
        return described
    described["lora_type"] = options.lora_type
    if options.lora_type == "lycoris" and lycoris is not None:
        described["lycoris"] = lycoris.model_dump(mode="json", exclude=_LYCORIS_FREE, exclude_none=True)
    else:
        described["lora_rank"] = options.lora_rank
        described["lora_alpha"] = float(options.lora_alpha if options.lora_alpha is not None else options.lora_rank)
        described["lora_targets"] = FAMILIES[options.model_family].lora_target_preset(options)
    return described


def mismatches(saved: dict[str, Any], current: dict[str, Any], checkpoint: str) -> list[FieldError]:
    """One error per setting in which this run differs from the checkpoint it would resume. Only what the checkpoint
    recorded is compared (older ones recorded less), and an alpha that only followed a changed rank is not named
    twice."""
    saved = _normalised(saved)
    differs = {key for key in _FIELDS if key in saved and not _same(saved[key], current.get(key))}
    if "lora_rank" in differs and saved.get("lora_alpha") == saved.get("lora_rank") \
            and current.get("lora_alpha") == current.get("lora_rank"):
        differs.discard("lora_alpha")
    return [FieldError(_FIELDS[key], f"{checkpoint} was trained with {key}={_show(saved.get(key))}, this run has "
                                     f"{key}={_show(current.get(key))}: resume with the checkpoint's setting, or start "
                                     "a fresh run (another --output_dir, or no --resume_from_checkpoint)")
            for key in _FIELDS if key in differs]


def _normalised(saved: dict[str, Any]) -> dict[str, Any]:
    """An empty alpha meant "the rank" when a checkpoint recorded it that way."""
    if "lora_alpha" in saved and saved["lora_alpha"] is None and "lora_rank" in saved:
        return {**saved, "lora_alpha": float(saved["lora_rank"])}
    return saved


def _same(saved: Any, current: Any) -> bool:
    """Equal, or for nested settings (LyCORIS), equal in every key the checkpoint recorded."""
    if isinstance(saved, dict) and isinstance(current, dict):
        return all(key in current and _same(value, current[key]) for key, value in saved.items())
    return saved == current


def _show(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_show(v)}" for k, v in sorted(value.items())) + "}"
    return "unset" if value is None else str(value)
