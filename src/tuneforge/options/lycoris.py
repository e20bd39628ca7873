"""The `--lycoris_config` file: a typed schema of what the lycoris-lora library is given (torch-free).

The keys are those of `lycoris.create_lycoris` (lycoris-lora 4.1): `algo`, `linear_dim`, `linear_alpha`, `factor`,
dropouts and the algorithm switches, and an `apply_preset` object (`target_module`, `module_algo_map`, ...) saying
which layers to wrap. Unknown keys are errors: lycoris itself would ignore a typo.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tuneforge.errors import FieldError
from tuneforge.options.hints import did_you_mean
from tuneforge.options.registry import TrainingOptions

# The algorithms tuneforge trains, saves and resumes (each is exercised by the engine tests).
Algo = Literal["lora", "locon", "loha", "lokr"]


def _check_factor(factor: int | None) -> None:
    if factor is not None and factor != -1 and factor < 1:
        raise ValueError(f"factor must be -1 (automatic) or a whole number of 1 or more, got {factor}")


class LayerSettings(BaseModel):
    """One entry of `module_algo_map` / `name_algo_map`: what the layers it names get instead of the top level."""

    model_config = ConfigDict(extra="forbid")

    algo: Algo | None = None
    dim: int | None = Field(None, ge=1, le=100_000)
    alpha: float | None = Field(None, gt=0)
    factor: int | None = None
    use_tucker: bool | None = None
    use_scalar: bool | None = None
    decompose_both: bool | None = None
    full_matrix: bool | None = None
    unbalanced_factorization: bool | None = None
    weight_decompose: bool | None = None
    rs_lora: bool | None = None

    @model_validator(mode="after")
    def _valid_factor(self) -> LayerSettings:
        _check_factor(self.factor)
        return self


class PresetSettings(BaseModel):
    """`apply_preset`: which layers LyCORIS wraps (class names, module names) and per-layer settings."""

    model_config = ConfigDict(extra="forbid")

    target_module: list[str] | None = None
    target_name: list[str] | None = None
    exclude_name: list[str] | None = None
    module_algo_map: dict[str, LayerSettings] | None = None
    name_algo_map: dict[str, LayerSettings] | None = None
    use_fnmatch: bool | None = None
    enable_conv: bool | None = None


class LycorisConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    algo: Algo = "lokr"
    multiplier: float = Field(1.0, description="Always 1: the strength is chosen when the output is loaded")
    linear_dim: int | None = Field(None, ge=1, le=100_000, description="Rank (LoKr: above the layer size = full)")
    linear_alpha: float | None = Field(None, gt=0, description="Alpha; the scale is alpha / linear_dim")
    conv_dim: int | None = Field(None, ge=1, le=100_000)
    conv_alpha: float | None = Field(None, gt=0)
    factor: int | None = Field(None, description="LoKr Kronecker factor: -1 (automatic) or 1 and above")
    dropout: float | None = Field(None, ge=0, lt=1)
    rank_dropout: float | None = Field(None, ge=0, lt=1)
    module_dropout: float | None = Field(None, ge=0, lt=1)
    use_tucker: bool | None = None
    use_scalar: bool | None = None
    decompose_both: bool | None = None
    full_matrix: bool | None = None
    unbalanced_factorization: bool | None = None
    dora_wd: bool | None = None
    wd_on_output: bool | None = None
    bypass_mode: bool | None = None
    train_norm: bool | None = None
    preset: str | None = Field(None, description="Refused: lycoris' built-in presets name no diffusers layer class")
    apply_preset: PresetSettings | None = None

    @model_validator(mode="after")
    def _consistent(self) -> LycorisConfig:
        _check_factor(self.factor)
        if self.multiplier != 1:
            raise ValueError(f"multiplier {self.multiplier:g}: the saved network is loaded at strength 1 (ComfyUI, "
                             "lycoris' own loader), so a run trained at another one would not reproduce; set 1.0 and "
                             "choose the strength when you load the output")
        if self.preset is not None:
            raise ValueError(f"preset {self.preset!r}: lycoris' built-in presets target other class names than "
                             "diffusers' models, so they would train nothing; leave preset out (tuneforge then wraps "
                             "the attention and feed-forward layers) or give apply_preset.target_module")
        return self


KEYS = sorted({*LycorisConfig.model_fields, *PresetSettings.model_fields, *LayerSettings.model_fields})


def parse_lycoris(data: Any, field: str = "--lycoris_config") -> tuple[LycorisConfig | None, list[FieldError]]:
    """Validate the decoded file; every problem names its key and the fix."""
    if not isinstance(data, dict):
        return None, [FieldError(field, "must be a JSON object such as {\"algo\": \"lokr\", \"linear_dim\": 10000, "
                                        "\"linear_alpha\": 1, \"factor\": 16}")]
    try:
        return LycorisConfig.model_validate(data), []
    except ValidationError as exc:
        return None, [_error(field, problem) for problem in exc.errors()]


def _error(field: str, problem: Any) -> FieldError:
    where = ".".join(str(part) for part in problem["loc"])
    key = str(problem["loc"][-1]) if problem["loc"] else ""
    if problem["type"] == "extra_forbidden":
        return FieldError(field, f"unknown key '{where}'{did_you_mean(key, KEYS)}")
    if problem["type"] == "literal_error" and key == "algo":
        return FieldError(field, f"algo: {problem['input']!r} is not trained by tuneforge; use lora, locon, loha or "
                                 f"lokr{did_you_mean(str(problem['input']), ['lora', 'locon', 'loha', 'lokr'])}")
    message = str(problem["msg"]).removeprefix("Value error, ")
    got = problem.get("input")
    suffix = f" (got {got!r})" if got is not None and not isinstance(got, dict | list) else ""
    return FieldError(field, f"{where + ': ' if where else ''}{message}{suffix}")


def with_run_options(config: LycorisConfig, options: TrainingOptions) -> tuple[LycorisConfig, list[FieldError]]:
    """The file's settings, completed from the run's LoRA options: `lora_rank` → linear_dim, `lora_alpha` →
    linear_alpha (empty: the rank, a scale of 1, as for a standard LoRA) and `lora_dropout` → dropout where the
    file leaves them out. The file wins where both are set, with a warning, so neither value is silently ignored."""
    given = options.model_fields_set
    pairs = (("linear_dim", "lora_rank"), ("linear_alpha", "lora_alpha"), ("dropout", "lora_dropout"))
    update: dict[str, Any] = {}
    warnings: list[FieldError] = []
    for key, option in pairs:
        value, mine = getattr(config, key), getattr(options, option)
        if value is None and mine is not None and (option in given or key == "linear_dim"):
            update[key] = mine
        elif value is not None and option in given and mine != value:
            warnings.append(FieldError(f"--{option}", f"not used: lycoris_config sets {key}={value:g}, which LyCORIS "
                                                      f"trains with; remove --{option} or change the file"))
    completed = config.model_copy(update=update)
    if completed.linear_alpha is None:
        completed = completed.model_copy(update={"linear_alpha": float(completed.linear_dim or options.lora_rank)})
    return completed, warnings


def network_kwargs(config: LycorisConfig) -> dict[str, Any]:
    """The keyword arguments of `lycoris.LycorisNetwork` for these settings (the layers come from the preset)."""
    kwargs: dict[str, Any] = {
        "multiplier": 1.0, "lora_dim": config.linear_dim, "alpha": config.linear_alpha,
        "conv_lora_dim": config.conv_dim or config.linear_dim, "conv_alpha": config.conv_alpha or config.linear_alpha,
        "network_module": config.algo, "dropout": config.dropout or 0.0, "rank_dropout": config.rank_dropout or 0.0,
        "module_dropout": config.module_dropout or 0.0, "use_tucker": bool(config.use_tucker),
        "train_norm": bool(config.train_norm), "factor": -1 if config.factor is None else config.factor,
        "weight_decompose": bool(config.dora_wd),
        "wd_on_out": True if config.wd_on_output is None else config.wd_on_output,
    }
    for key in ("use_scalar", "decompose_both", "full_matrix", "unbalanced_factorization", "bypass_mode"):
        if getattr(config, key) is not None:
            kwargs[key] = getattr(config, key)
    return kwargs
