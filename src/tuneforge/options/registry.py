"""The options registry: every training option, as one typed pydantic model.

A field's name is the option name without `--`. Each field carries its type, default, range or choices, help text
and, in `json_schema_extra`, its category and the model families / model types it applies to. Validation of
configs, merging of form fields, the trainer's reading of `spec.json` and `GET /api/configs/options` all derive
from this one class.
"""

from __future__ import annotations

import json
import math
import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema, field_validator

from tuneforge.options.capabilities import FAMILIES, FLUX_LORA_TARGETS, PRECISIONS, flavour_of
from tuneforge.options.hints import did_you_mean

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def no_control_characters(value: str) -> str:
    """A NUL or newline in a path is never meant, and a NUL breaks every file call: refuse it up front."""
    found = _CONTROL.search(value.strip())
    if found:
        raise ValueError(f"contains the control character {found.group()!r}; remove it from the path")
    return value


PathText = Annotated[str, AfterValidator(no_control_characters)]


def gpu_id_list(value: Any) -> Any:
    """`0,1` (as a form or the CLI sends it) or a list; blank means none named."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()] or None
    return value


def distinct_ids(value: list[int] | None) -> list[int] | None:
    if value is not None and len(set(value)) != len(value):
        raise ValueError("names a GPU twice: list each one once, e.g. 0,1")
    return value


GpuIds = Annotated[list[Annotated[int, Field(ge=0, le=1023)]] | None, BeforeValidator(gpu_id_list),
                   AfterValidator(distinct_ids)]


def known_family(value: str) -> str:
    """Checked against the capability table when validated (not frozen into a Literal), so the table stays the
    only list of families."""
    if value not in FAMILIES:
        raise ValueError(f"unknown model family {value!r}; use one of {', '.join(FAMILIES)}"
                         f"{did_you_mean(str(value), list(FAMILIES))}")
    return value


FamilyName = Annotated[str, AfterValidator(known_family), WithJsonSchema({"type": "string", "enum": list(FAMILIES)})]


def opt(
    default: Any,
    description: str,
    category: str,
    *,
    families: list[str] | None = None,
    model_types: list[str] | None = None,
    mismatch: Literal["warning", "error"] = "warning",
    aliases: list[str] | None = None,
    **constraints: Any,
) -> Any:
    """A registry field. `mismatch` says whether setting it for another family/model type is an error."""
    extra = {"category": category, "families": families, "model_types": model_types, "mismatch": mismatch,
             "aliases": aliases or []}
    return Field(default, description=description, json_schema_extra=extra, **constraints)


class WebhookTarget(BaseModel):
    """One entry of `--webhook_config`."""

    model_config = ConfigDict(extra="forbid")

    webhook_type: Literal["raw", "discord"] = "raw"
    callback_url: str = Field(pattern=r"^https?://\S+$", description="http(s) URL that receives events")
    log_level: Literal["debug", "info", "warning", "error", "critical"] = "info"
    ssl_no_verify: bool = False
    auth_token: str | None = Field(None, description="Sent as a bearer token; also the HMAC key (secret)")


FLUX = ["flux"]
LORA = ["lora"]
Precision = Literal[tuple(PRECISIONS)]  # type: ignore[valid-type]  # the names; what each family trains: the table
TextPrecision = Literal[tuple(p.name for p in PRECISIONS.values() if p.quantiser != "bnb")]  # type: ignore[valid-type]
Optimizer = Literal["adamw_bf16", "adamw", "optimi-adamw", "optimi-lion", "prodigy"]
Scheduler = Literal["constant", "constant_with_warmup", "linear", "cosine", "cosine_with_restarts", "polynomial"]
RESOLUTION_PATTERN = r"^\s*\d+(x\d+)?(\s*,\s*\d+(x\d+)?)*\s*$"


class TrainingOptions(BaseModel):
    """All options of one training run (defaults are the registry defaults)."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=(), validate_default=False)

    # --- model -----------------------------------------------------------------------------------------------
    model_family: FamilyName = opt(..., "Model family to train.", "model")
    model_flavour: str | None = opt(
        None, "Variant of the family (sets the default base model); the family's default when empty.", "model")
    model_type: Literal["full", "lora"] = opt("lora", "Train all weights (full) or an adapter (lora).", "model")
    lora_type: Literal["standard", "lycoris"] = opt(
        "standard", "Adapter kind: diffusers LoRA (standard) or LyCORIS.", "model", model_types=LORA,
        mismatch="error")
    lora_rank: int = opt(16, "LoRA rank.", "model", model_types=LORA, ge=1, le=1024)
    lora_alpha: float | None = opt(None, "LoRA alpha (scale = alpha / rank); the rank when empty.", "model",
                                   model_types=LORA, gt=0)
    lora_dropout: float = opt(0.0, "Dropout on the LoRA branch.", "model", model_types=LORA, ge=0, lt=1)
    lycoris_config: PathText | None = opt(
        None, "LyCORIS JSON file (algo, multiplier, factors, ...); relative to config/ or the workspace.",
        "model", model_types=LORA)
    flux_lora_target: Literal[tuple(FLUX_LORA_TARGETS)] = opt(  # type: ignore[valid-type]
        "all", "Which Flux layers a standard LoRA targets.", "model", families=FLUX, model_types=LORA)
    pretrained_model_name_or_path: PathText | None = opt(
        None, "Hub id or local diffusers folder of the base model; the flavour's hub id when empty.", "model")
    base_model_precision: Precision = opt(
        "no_change", "Load base weights in this dtype, or quantise them (quantised needs model_type lora).",
        "model")
    text_encoder_precision: TextPrecision = opt(
        "no_change", "Load the text encoders in this dtype, or quantise the T5 encoder, while captions are cached "
        "(they are unloaded before training).", "model")

    # --- schedule --------------------------------------------------------------------------------------------
    max_train_steps: int = opt(0, "Stop after this many optimizer steps (0: use epochs).", "schedule", ge=0)
    num_train_epochs: int = opt(1, "Stop after this many epochs (0: use steps).", "schedule", ge=0)
    train_batch_size: int = opt(1, "Samples per device per micro-batch.", "schedule", ge=1, le=4096)
    gradient_accumulation_steps: int = opt(1, "Micro-batches per optimizer step.", "schedule", ge=1, le=4096)
    learning_rate: float = opt(1e-4, "Peak learning rate.", "schedule", gt=0, le=1)
    lr_scheduler: Scheduler = opt("constant", "Learning-rate schedule after warm-up.", "schedule")
    lr_warmup_steps: int = opt(0, "Linear warm-up steps.", "schedule", ge=0)
    optimizer: Optimizer = opt("adamw_bf16", "Optimizer.", "schedule")
    max_grad_norm: float = opt(1.0, "Gradient clipping norm (0 disables).", "schedule", ge=0)
    seed: int | None = opt(None, "Random seed for exact reproduction and resume.", "schedule", ge=0)
    mixed_precision: Literal["bf16", "fp16", "no"] = opt("bf16", "Autocast precision.", "schedule")
    gradient_checkpointing: bool = opt(False, "Trade compute for memory.", "schedule")
    compile_transformer: bool = opt(
        False, "torch.compile each transformer block (faster steps on a GPU after a first slow one; needs a C++ "
        "compiler).", "schedule")
    caption_dropout_probability: float = opt(0.0, "Probability of training on an empty caption.", "schedule",
                                             ge=0, le=1)

    # --- checkpoints -----------------------------------------------------------------------------------------
    checkpoint_step_interval: int = opt(500, "Save a checkpoint every N steps (0: only at the end).",
                                        "checkpoints", ge=0, aliases=["checkpointing_steps"])
    checkpoints_total_limit: int | None = opt(None, "Keep at most this many checkpoints (oldest removed).",
                                              "checkpoints", ge=1)
    resume_from_checkpoint: PathText | None = opt(
        None, "'latest', a checkpoint folder name in output_dir, or a path.", "checkpoints")

    # --- validation ------------------------------------------------------------------------------------------
    validation_prompt: str | None = opt(None, "Prompt for validation images (none: no validation).",
                                        "validation")
    validation_negative_prompt: str = opt("", "Negative prompt for validation images.", "validation")
    validation_step_interval: int = opt(100, "Validate every N steps (0: never on a schedule).", "validation",
                                        ge=0, aliases=["validation_steps"])
    validation_guidance: float = opt(4.0, "Classifier-free guidance scale for validation.", "validation",
                                     ge=0, le=50)
    validation_resolution: str | None = opt(
        None, "WIDTHxHEIGHT (or several, comma separated); the training resolution when empty.", "validation",
        pattern=RESOLUTION_PATTERN)
    validation_num_inference_steps: int = opt(28, "Sampling steps for validation.", "validation", ge=1, le=1000)
    validation_seed: int | None = opt(None, "Seed for validation sampling.", "validation", ge=0)
    validation_reference_image: PathText | None = opt(
        None, "Edit models (Kontext): the image validation edits; the first pair's reference when empty.",
        "validation", families=FLUX)
    validation_preview: bool = opt(False, "Emit intermediate previews while sampling.", "validation")
    validation_preview_steps: int = opt(1, "Emit a preview every N sampling steps.", "validation", ge=1)
    validation_method: Literal["builtin", "external-script"] = opt(
        "builtin", "Run validation in the trainer, or hand it to an external script.", "validation")
    validation_external_script: str | None = opt(
        None, "Command run for external validation; {placeholders} are filled in.", "validation")
    validation_external_background: bool = opt(False, "Do not wait for the external script.", "validation")

    # --- hooks -----------------------------------------------------------------------------------------------
    post_checkpoint_script: str | None = opt(None, "Command run after each checkpoint is saved.", "hooks")
    post_upload_script: str | None = opt(None, "Command run after each hub upload.", "hooks")

    # --- data ------------------------------------------------------------------------------------------------
    data_backend_config: PathText | None = opt(
        None, "Dataloader JSON; relative to config/ (e.g. my-env/multidatabackend.json) or the workspace.",
        "data")
    cache_dir_vae: PathText | None = opt(None, "Default folder for cached VAE latents.", "data")
    dataloader_prefetch: bool = opt(False, "Load batches in a background thread.", "data")
    trainer_threads: int | None = opt(
        None, "CPU threads for the trainer's tensor work; empty: the CPUs the trainer may use, less one for the "
        "server and data loading (threads spinning against a busy core slow every step down).", "distributed",
        ge=1, le=1024)
    resolution: float = opt(1024, "Default training resolution (pixels, or megapixels for area).", "data", gt=0)
    resolution_type: Literal["pixel", "area", "pixel_area"] = opt(
        "pixel_area", "How `resolution` is read by default.", "data")
    conditioning_multidataset_sampling: Literal["random", "combined"] = opt(
        "random", "With several conditioning sets: draw one set per batch, or feed all of them.", "data")
    clip_skip: int = opt(0, "Pool CLIP's N-th layer from the end, counted as kohya and A1111 do (2: the penultimate "
                         "layer; 0 or 1: the last).", "data", families=FLUX, ge=0, le=12)
    tokenizer_max_length: int | None = opt(None, "Max tokens of the T5 encoder (the flavour's default when empty; "
                                           "T5 takes 512 at most).", "data", ge=1, le=512)

    # --- reporting -------------------------------------------------------------------------------------------
    report_to: Literal["none", "tensorboard", "wandb"] = opt("none", "Experiment tracker.", "reporting")
    tracker_project_name: str = opt("tuneforge", "Tracker project name.", "reporting", min_length=1)
    tracker_run_name: str | None = opt(None, "Tracker run name.", "reporting")
    webhook_config: list[WebhookTarget] | None = opt(
        None, "Webhooks: a JSON list or object (also as a string), or a path to a JSON file.", "reporting")
    webhook_reporting_interval: float | None = opt(
        None, "Minimum seconds between progress webhooks.", "reporting", ge=0)

    # --- output ----------------------------------------------------------------------------------------------
    output_dir: PathText | None = opt(None, "Where checkpoints and the final model go; output/<env> when empty.",
                                 "output")
    push_to_hub: bool = opt(False, "Upload the result to the Hugging Face hub.", "output")
    hub_model_id: str | None = opt(None, "Hub repository for push_to_hub.", "output")

    # --- distributed -----------------------------------------------------------------------------------------
    num_processes: int = opt(1, "Training processes (one per GPU).", "distributed", ge=1, le=1024)
    gpu_ids: GpuIds = opt(None, "The GPUs to train on, e.g. 0,1 (their indexes in /api/system/status); any "
                                 "free ones, num_processes of them, when empty.", "distributed")
    accelerate_config: PathText | None = opt(None, "accelerate config file (FSDP, DeepSpeed, several machines).",
                                        "distributed")

    # --- Flux flow matching ----------------------------------------------------------------------------------
    flux_guidance_value: float = opt(1.0, "Guidance value fed to the Flux transformer while training.", "flux",
                                     families=FLUX, ge=0, le=50)
    flow_schedule_shift: float | None = opt(
        None, "Shift of the flow-matching training timesteps towards noise; the model's scheduler's shift when empty "
        "(3 for Flux dev and Kontext, 1 for schnell).", "flux", families=FLUX, gt=0, le=100)

    @field_validator("webhook_config", mode="before")
    @classmethod
    def _parse_webhooks(cls, value: Any) -> Any:
        """Accept a JSON string, one object, or a list; a path is resolved by the config service."""
        if isinstance(value, str):
            text = value.strip()
            if not text:
                return None
            if text[0] in "[{":
                try:
                    value = json.loads(text)
                except json.JSONDecodeError as exc:
                    raise ValueError(f"not valid JSON ({exc.msg} at char {exc.pos})") from exc
            else:
                raise ValueError("a file path must be resolved before validation; send the JSON itself")
        return [value] if isinstance(value, dict) else value


SIZE_STEP = 16  # image sizes the models make: multiples of the 8x VAE times the 2x2 patches


def validation_sizes(options: TrainingOptions) -> list[tuple[int, int]]:
    """(width, height) of each validation image as asked: `validation_resolution` ("WxH" or "N", comma
    separated), else a square of the training resolution."""
    if not options.validation_resolution:
        edge = options.resolution if options.resolution_type != "area" else math.sqrt(options.resolution) * 1024
        return [(max(64, int(edge)),) * 2]
    sizes = []
    for part in options.validation_resolution.split(","):
        width, _, height = part.strip().partition("x")
        sizes.append((int(width), int(height or width)))
    return sizes


def made_size(size: tuple[int, int]) -> tuple[int, int]:
    """The size a pipeline really makes for an asked one: each edge rounded down to a multiple of SIZE_STEP."""
    return tuple(max(SIZE_STEP, edge // SIZE_STEP * SIZE_STEP) for edge in size)  # type: ignore[return-value]


def with_model_defaults(options: TrainingOptions) -> TrainingOptions:
    """Empty flavour → the family default; empty base model → the flavour's hub id (when the flavour is known).

    Applied to the run spec and the shown config only: the environment keeps what the user set, so a later
    flavour change picks that flavour's model.
    """
    flavour = flavour_of(options.model_family, options.model_flavour)
    update: dict[str, Any] = {}
    if not options.model_flavour:
        update["model_flavour"] = FAMILIES[options.model_family].default_flavour
    if not options.pretrained_model_name_or_path and flavour is not None:
        update["pretrained_model_name_or_path"] = flavour.hub_id
    return options.model_copy(update=update)
