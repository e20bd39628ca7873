"""The capability table: every model family and flavour tuneforge knows, and what the engine trains them with.

One row per flavour (its hub id, pipeline class, adapter class, default resolution, guidance, T5 length) and per
family (the diffusers components it loads, the model types, adapter kinds and base precisions it trains). Server
validation, the run spec's consistency check and the trainer's adapter lookup all read this one table, so
"Configuration Valid" means "the engine trains this". Torch-free: adapter classes are named here and imported by
the trainer only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Guidance = Literal["cfg", "distilled", "none"]


@dataclass(frozen=True)
class Precision:
    """A `base_model_precision` / `text_encoder_precision` value."""

    name: str
    dtype: str | None  # the torch dtype weights load in (`torch.<dtype>`); None: diffusers' default, fp32
    quantiser: Literal["quanto", "bnb"] | None = None
    weights: str | None = None  # the quantiser's weight type (optimum-quanto `qint8`, bitsandbytes `nf4`)
    needs: tuple[str, ...] = ()  # Python packages, and "cuda" for an NVIDIA GPU

    @property
    def quantised(self) -> bool:
        return self.quantiser is not None


PRECISIONS: dict[str, Precision] = {p.name: p for p in (
    Precision("no_change", None),
    Precision("bf16", "bfloat16"),
    Precision("fp16", "float16"),
    Precision("fp32", "float32"),
    Precision("int8-quanto", "bfloat16", "quanto", "qint8"),
    Precision("fp8-quanto", "bfloat16", "quanto", "qfloat8"),
    Precision("int4-quanto", "bfloat16", "quanto", "qint4"),
    Precision("nf4-bnb", "bfloat16", "bnb", "nf4", needs=("bitsandbytes", "cuda")),
)}


@dataclass(frozen=True)
class Flavour:
    name: str
    hub_id: str
    pipeline_class: str  # the `_class_name` of this flavour's diffusers folder
    adapter: str | None  # "module:Class" of its training adapter; None: known, but not trainable yet
    resolution: int = 1024  # the resolution its base model was made for
    guidance: Guidance = "cfg"  # cfg: negative prompt + scale; distilled: a guidance embedding; none: neither
    max_tokens: int = 512  # default T5 tokens (`tokenizer_max_length`)
    needs_conditioning: bool = False  # edit models train on (edited, reference) pairs


@dataclass(frozen=True)
class Family:
    name: str
    default_flavour: str
    flavours: dict[str, Flavour]
    components: tuple[str, ...]  # sub-folders of a diffusers folder that training loads
    model_types: tuple[str, ...] = ("full", "lora")
    lora_types: tuple[str, ...] = ("standard", "lycoris")
    precisions: tuple[str, ...] = tuple(PRECISIONS)
    # A standard LoRA's layers (peft `target_modules`) by preset; `lora_target_option` names the option that picks
    # the preset (None: the one preset "default").
    lora_targets: dict[str, tuple[str, ...]] = field(default_factory=dict)
    lora_target_option: str | None = None
    lycoris_targets: tuple[str, ...] = ()  # layer classes a LyCORIS network wraps unless apply_preset says otherwise
    clip_encoder: str | None = None  # the component whose layers `clip_skip` counts

    def lora_target_preset(self, options: object) -> str:
        return str(getattr(options, self.lora_target_option)) if self.lora_target_option else "default"

    @property
    def pipeline_classes(self) -> tuple[str, ...]:
        """`_class_name` values a local diffusers folder of this family may have."""
        return tuple(dict.fromkeys(f.pipeline_class for f in self.flavours.values()))


def _by_name(*flavours: Flavour) -> dict[str, Flavour]:
    return {f.name: f for f in flavours}


def _pixart(name: str, hub_id: str, resolution: int = 1024) -> Flavour:
    return Flavour(name, hub_id, "PixArtSigmaPipeline", "tuneforge.models.pixart_sigma:PixArtSigmaAdapter",
                   resolution=resolution, guidance="cfg", max_tokens=300)


_FLUX = "tuneforge.models.flux:FluxAdapter"
_ATTENTION = ("to_k", "to_q", "to_v", "to_out.0")
# Flux's `flux_lora_target` presets, with the layers each trains as the field's trainers name them.
_FLUX_CONTEXT = ("add_k_proj", "add_q_proj", "add_v_proj", "to_add_out")
_FLUX_FEED_FORWARD = ("ff.net.0.proj", "ff.net.2", "ff_context.net.0.proj", "ff_context.net.2", "proj_mlp", "proj_out")
FLUX_LORA_TARGETS = {
    "mmdit": _ATTENTION,
    "context": _FLUX_CONTEXT,
    "all": _ATTENTION + _FLUX_CONTEXT,
    "all+ffs": _ATTENTION + _FLUX_CONTEXT + _FLUX_FEED_FORWARD,
    "tiny": ("single_transformer_blocks.7.proj_out", "single_transformer_blocks.20.proj_out"),
    "nano": ("single_transformer_blocks.7.proj_out",),
}

FAMILIES: dict[str, Family] = {
    "pixart_sigma": Family("pixart_sigma", "900M-1024-v0.6", _by_name(
        _pixart("900M-1024-v0.6", "terminusresearch/pixart-900m-1024-ft-v0.6"),
        _pixart("900M-1024-v0.7-stage1", "terminusresearch/pixart-900m-1024-ft-v0.7-stage1"),
        _pixart("900M-1024-v0.7-stage2", "terminusresearch/pixart-900m-1024-ft-v0.7-stage2"),
        _pixart("600M-512", "PixArt-alpha/PixArt-Sigma-XL-2-512-MS", resolution=512),
        _pixart("600M-1024", "PixArt-alpha/PixArt-Sigma-XL-2-1024-MS"),
        _pixart("600M-2048", "PixArt-alpha/PixArt-Sigma-XL-2-2K-MS", resolution=2048),
    ), components=("transformer", "vae", "text_encoder", "tokenizer", "scheduler"),
        lora_targets={"default": _ATTENTION}, lycoris_targets=("Attention", "FeedForward")),
    "flux": Family("flux", "dev", _by_name(
        Flavour("dev", "black-forest-labs/FLUX.1-dev", "FluxPipeline", _FLUX, guidance="distilled", max_tokens=512),
        Flavour("schnell", "black-forest-labs/FLUX.1-schnell", "FluxPipeline", _FLUX, guidance="none",
                max_tokens=256),
        Flavour("kontext", "black-forest-labs/FLUX.1-Kontext-dev", "FluxKontextPipeline",
                "tuneforge.models.flux_kontext:FluxKontextAdapter", guidance="distilled", max_tokens=512,
                needs_conditioning=True),
    ), components=("transformer", "vae", "text_encoder", "tokenizer", "text_encoder_2", "tokenizer_2", "scheduler"),
        lora_targets=FLUX_LORA_TARGETS, lora_target_option="flux_lora_target",
        lycoris_targets=("FluxAttention", "FeedForward"), clip_encoder="text_encoder"),
}


def flavour_of(family: str, flavour: str | None) -> Flavour | None:
    """The flavour (the family default when None), or None when either name is unknown."""
    fam = FAMILIES.get(family)
    if fam is None:
        return None
    return fam.flavours.get(flavour or fam.default_flavour)


def needs_conditioning(family: str, flavour: str | None) -> bool:
    found = flavour_of(family, flavour)
    return found is not None and found.needs_conditioning


def known_hub_ids() -> dict[str, tuple[str, str]]:
    """hub id → (family, flavour), to spot a base model that contradicts the chosen flavour."""
    return {f.hub_id: (fam.name, f.name) for fam in FAMILIES.values() for f in fam.flavours.values()}


def trainable_flavours(family: Family) -> list[str]:
    return [name for name, flavour in family.flavours.items() if flavour.adapter is not None]
