"""What a run trains, described without torch. Every checkpoint records it; resuming from a checkpoint made with
another layout is refused by validate (before the job starts) and again by the trainer."""

from __future__ import annotations

from typing import Any

from tuneforge.errors import FieldError
from tuneforge.options.lycoris import LycorisConfig
from tuneforge.options.registry import TrainingOptions

# layout key → the option a user changes to match a checkpoint
_FIELDS = {"model_family": "--model_family", "model_type": "--model_type", "lora_type": "--lora_type",
           "lora_rank": "--lora_rank", "lora_alpha": "--lora_alpha", "lycoris": "--lycoris_config"}
_LYCORIS_SHAPE = ("algo", "linear_dim", "linear_alpha", "factor", "preset", "apply_preset", "use_tucker",
                  "use_scalar", "decompose_both", "full_matrix", "unbalanced_factorization", "dora_wd")


def layout(options: TrainingOptions, lycoris: LycorisConfig | None) -> dict[str, Any]:
    """The settings that decide which tensors a run trains and what they mean."""
    described: dict[str, Any] = {"model_family": options.model_family, "model_type": options.model_type}
    if options.model_type != "lora":
        return described
    described["lora_type"] = options.lora_type
    if options.lora_type == "lycoris" and lycoris is not None:
        described["lycoris"] = lycoris.model_dump(mode="json", include=set(_LYCORIS_SHAPE), exclude_none=True)
    else:
        described["lora_rank"] = options.lora_rank
        described["lora_alpha"] = options.lora_alpha  # None: alpha follows the rank
    return described


def mismatches(saved: dict[str, Any], current: dict[str, Any], checkpoint: str) -> list[FieldError]:
    """One error per setting in which this run differs from the checkpoint it would resume."""
    problems = []
    for key, field in _FIELDS.items():
        if key in saved and saved.get(key) != current.get(key):
            problems.append(FieldError(field, f"{checkpoint} was trained with {key}={_show(saved.get(key))}, this run "
                                              f"has {key}={_show(current.get(key))}: resume with the checkpoint's "
                                              "setting, or start a fresh run (another --output_dir, or no "
                                              "--resume_from_checkpoint)"))
    return problems


def _show(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {v}" for k, v in sorted(value.items())) + "}"
    return "unset" if value is None else str(value)
