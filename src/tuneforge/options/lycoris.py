"""The `--lycoris_config` file: a typed schema of what the lycoris-lora library is given (torch-free).

The keys are those of `lycoris.create_lycoris` (lycoris-lora 4.1): `algo`, `multiplier`, `linear_dim`,
`linear_alpha`, `factor`, dropouts and the algorithm switches, plus a `preset` name or an `apply_preset` object
(`target_module`, `module_algo_map`, ...). Unknown keys are errors: lycoris itself would ignore a typo.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tuneforge.errors import FieldError
from tuneforge.options.hints import did_you_mean
from tuneforge.options.registry import TrainingOptions

# The algorithms tuneforge trains, saves and resumes (each is exercised by the engine tests).
Algo = Literal["lora", "locon", "loha", "lokr"]
# lycoris-lora's built-in presets. They name modules by class; diffusers' Flux blocks are not among them, so
# without a preset tuneforge targets each family's attention and feed-forward layers (see the model adapter).
BUILTIN_PRESETS = ("full", "full-lin", "attn-mlp", "attn-only", "unet-only", "unet-transformer-only",
                   "unet-convblock-only")


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
    multiplier: float = Field(1.0, gt=0, le=100)
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
    preset: Literal[BUILTIN_PRESETS] | None = None  # type: ignore[valid-type]
    apply_preset: PresetSettings | None = None

    @model_validator(mode="after")
    def _consistent(self) -> LycorisConfig:
        _check_factor(self.factor)
        if self.preset and self.apply_preset:
            raise ValueError("give either preset (a built-in name) or apply_preset (your own targets), not both")
        return self

    def create_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of `lycoris.create_lycoris` (the preset is applied by the caller)."""
        return self.model_dump(exclude_none=True, exclude={"preset", "apply_preset"})


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
    linear_alpha and `lora_dropout` → dropout where the file leaves them out (the file wins where both are set,
    with a warning, so neither value is silently ignored)."""
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
    return config.model_copy(update=update), warnings
