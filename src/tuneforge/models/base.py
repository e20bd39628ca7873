"""The model-adapter interface: everything the trainer needs to know about one model family (or flavour).

The trainer and the caches talk only to this interface. An adapter loads its components with `from_pretrained`
(hub id or local folder), encodes prompts and images for the caches, turns a clean latent batch into (model input,
target) for its objective, runs the denoiser, and builds a pipeline for validation. Diffusion-objective details
live in `NoiseObjective` subclasses, so that DDPM-style (PixArt: epsilon / v-prediction on a beta schedule) and
flow matching (Flux: velocity on sigmas) share the loop. Loading and folder checks common to all families are here.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from tuneforge.models.flops import Flops
from tuneforge.models.precision import load_dtype, load_kwargs, quantise
from tuneforge.options.capabilities import FAMILIES, flavour_of
from tuneforge.options.model_folder import folder_problems
from tuneforge.options.registry import TrainingOptions

# `on_latents(step_index, timestep, latents)` gets the latents mid-sampling, shaped (B, C, h, w).
PreviewHook = Callable[[int, float, torch.Tensor], None]


class ModelLoadError(Exception):
    """The model could not be loaded from the given name or folder (message says which and how to fix)."""


@dataclass
class TrainBatch:
    """One micro-batch of cached tensors, already on the training device."""

    latents: torch.Tensor  # clean, scaled VAE latents (B, C, h, w)
    text: dict[str, torch.Tensor]  # the family's prompt embeddings, stacked
    conditioning: list[torch.Tensor] = field(default_factory=list)  # edit models: reference latents (B, C, h', w')


@dataclass
class NoisyBatch:
    """What the denoiser sees, and what its output is compared to."""

    model_input: torch.Tensor
    timesteps: torch.Tensor
    target: torch.Tensor


class NoiseObjective(ABC):
    """Turns clean latents + noise into a noisy input, timesteps and a regression target."""

    @abstractmethod
    def noisy(self, latents: torch.Tensor, noise: torch.Tensor, generator: torch.Generator) -> NoisyBatch: ...


def is_local(source: str) -> bool:
    return source.startswith(("/", ".", "~")) or Path(source).exists()


class ModelAdapter(ABC):
    """One family (pixart_sigma, flux, ...). Instances hold the loaded components."""

    def __init__(self, options: TrainingOptions, device: torch.device) -> None:
        self.options = options
        self.device = device
        self.family = FAMILIES[options.model_family]
        flavour = flavour_of(options.model_family, options.model_flavour)
        assert flavour is not None, "the run spec checks the flavour"
        self.flavour = flavour
        self.source = str(options.pretrained_model_name_or_path or "")
        if not self.source:
            raise ModelLoadError("pretrained_model_name_or_path: empty; give a hub id or a local diffusers folder")
        if is_local(self.source):
            problems, _ = folder_problems(Path(self.source).expanduser(), self.family.name, self.flavour.name)
            if problems:
                raise ModelLoadError(f"pretrained_model_name_or_path: {problems[0]}")
        self.dtype = load_dtype(options.base_model_precision)
        self.text_dtype = load_dtype(options.text_encoder_precision)
        self.vae: Any = None

    # --- loading ---------------------------------------------------------------------------------------------
    def load(self, cls: Any, subfolder: str, **kwargs: Any) -> Any:
        """`cls.from_pretrained` on the base model's component, with a clear error."""
        try:
            return cls.from_pretrained(self.source, subfolder=subfolder, **kwargs)
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"cannot load {subfolder} from {self.source!r}: {exc}") from exc

    @property
    @abstractmethod
    def transformer_class(self) -> Any: ...

    def transformer_skeleton(self) -> torch.nn.Module:
        """The transformer's modules without weights (nothing is read but its config): to check a LoRA's or
        LyCORIS network's layers before any slow work."""
        from accelerate import init_empty_weights

        try:
            config = self.transformer_class.load_config(self.source, subfolder="transformer")
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"cannot read the transformer's config from {self.source!r}: {exc}") from exc
        with init_empty_weights():
            return self.transformer_class.from_config(config)

    def load_transformer(self) -> torch.nn.Module:
        extra = load_kwargs(self.options.base_model_precision)
        return self.load(self.transformer_class, "transformer", torch_dtype=self.dtype, **extra)

    def load_vae(self) -> Any:
        from diffusers import AutoencoderKL

        # The VAE stays in fp32: it is small and fp16 VAEs overflow.
        self.vae = self.load(AutoencoderKL, "vae").to(self.device).eval().requires_grad_(False)
        return self.vae

    def load_text_encoder(self, cls: Any, subfolder: str, quantisable: bool = False) -> Any:
        """A frozen text encoder in `text_encoder_precision`; the large (T5) one is quantised when asked."""
        encoder = self.load(cls, subfolder, dtype=self.text_dtype)
        if quantisable:
            quantise(encoder, self.options.text_encoder_precision)
        return encoder.to(self.device).eval().requires_grad_(False)

    @abstractmethod
    def load_text_encoders(self) -> None: ...

    @abstractmethod
    def unload_text_encoders(self) -> None: ...

    def unload_vae(self) -> None:
        self.vae = None

    @property
    def max_tokens(self) -> int:
        """T5 tokens per caption: the option, else the flavour's default; at most what the tokenizer takes."""
        wanted = self.options.tokenizer_max_length or self.flavour.max_tokens
        tokenizer = getattr(self, "t5_tokenizer", None)
        return min(wanted, tokenizer.model_max_length) if tokenizer is not None else wanted

    # --- caches ----------------------------------------------------------------------------------------------
    def fingerprint(self, subfolder: str, extra: str) -> str:
        """The source plus the component's config file: a changed checkpoint means a new cache key."""
        config = ""
        if is_local(self.source):
            for name in ("config.json", "tokenizer_config.json"):
                path = Path(self.source).expanduser() / subfolder / name
                if path.is_file():
                    config += path.read_text()
        digest = hashlib.sha256(f"{self.source}|{subfolder}|{config}|{extra}".encode()).hexdigest()
        return digest[:16]

    @abstractmethod
    def text_encoder_fingerprint(self) -> str:
        """Identifies the text encoders and their settings; part of every text-embed cache key."""

    def vae_fingerprint(self) -> str:
        return self.fingerprint("vae", "vae|fp32")

    @abstractmethod
    def encode_prompts(self, prompts: list[str]) -> list[dict[str, torch.Tensor]]:
        """One dict of CPU tensors per prompt (no batch dim), ready to be cached."""

    @torch.no_grad()
    def encode_images(self, pixels: torch.Tensor, generators: list[torch.Generator] | None = None) -> torch.Tensor:
        """Pixels in [-1, 1] (B, 3, H, W) -> latents (B, C, H/8, W/8), shifted and scaled as the VAE says."""
        if self.vae is None:
            self.load_vae()
        pixels = pixels.to(self.device, self.vae.dtype)
        latents = self.vae.encode(pixels).latent_dist.sample(generator=generators)
        config = self.vae.config
        return (latents - (config.shift_factor or 0.0)) * config.scaling_factor

    @torch.no_grad()
    def encode_references(self, pixels: torch.Tensor) -> torch.Tensor:
        """Reference images of an edit model: the posterior's mode, shifted and scaled, as edit pipelines encode
        their input image."""
        if self.vae is None:
            self.load_vae()
        # Channels-last, as diffusers' image processor hands pixels to the VAE: the convolutions then compute
        # bit for bit what the pipeline computes (another memory layout rounds differently).
        pixels = pixels.to(self.device, self.vae.dtype, memory_format=torch.channels_last)
        latents = self.vae.encode(pixels).latent_dist.mode()
        config = self.vae.config
        return (latents - (config.shift_factor or 0.0)) * config.scaling_factor

    @torch.no_grad()
    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """The inverse of `encode_images`: latents -> pixels in [-1, 1]."""
        if self.vae is None:
            self.load_vae()
        config = self.vae.config
        latents = latents.to(self.vae.dtype) / config.scaling_factor + (config.shift_factor or 0.0)
        return self.vae.decode(latents).sample

    def in_model_dtype(self, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Cached embeddings in the transformer's dtype: pipelines make their latents in the embeddings' dtype and
        do not cast them for a bf16 transformer."""
        dtype = self.dtype or torch.float32
        return {name: t.to(dtype) if t.is_floating_point() else t for name, t in tensors.items()}

    def collate_text(self, items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        return {key: torch.stack([item[key] for item in items]) for key in items[0]}

    # --- training --------------------------------------------------------------------------------------------
    @property
    @abstractmethod
    def objective(self) -> NoiseObjective: ...

    @abstractmethod
    def predict(self, model: torch.nn.Module, noisy: NoisyBatch, batch: TrainBatch) -> torch.Tensor:
        """Run the (possibly wrapped) denoiser; returns a prediction shaped like `noisy.target`."""

    @abstractmethod
    def token_counts(self, config: Any, batch: TrainBatch) -> tuple[int, int]:
        """Image and text tokens of one sample as the transformer (with diffusers `config`) sees them."""

    @abstractmethod
    def forward_flops(self, config: Any, image_tokens: int, text_tokens: int) -> Flops:
        """Model FLOPs of one sample's forward pass (`models.flops`)."""

    def lora_target_modules(self) -> list[str]:
        """peft `target_modules` of a standard LoRA: the capability table's preset for the run."""
        return list(self.family.lora_targets[self.family.lora_target_preset(self.options)])

    # --- validation and outputs ------------------------------------------------------------------------------
    @property
    @abstractmethod
    def pipeline_class(self) -> Any: ...

    @abstractmethod
    def build_pipeline(self, transformer: torch.nn.Module) -> Any:
        """A diffusers pipeline for validation around the trained transformer; prompts come as cached embeddings."""

    @abstractmethod
    def pipeline_inputs(self, positive: dict[str, torch.Tensor], negative: dict[str, torch.Tensor],
                        guidance: float) -> dict[str, Any]:
        """The pipeline call's prompt and guidance arguments, from cached embeddings (batch of one)."""

    @abstractmethod
    def pipeline_call_kwargs(self, width: int, height: int) -> dict[str, Any]:
        """Family-specific arguments for the pipeline call at validation (size and the like)."""

    @abstractmethod
    def preview_kwargs(self, on_latents: PreviewHook, width: int, height: int) -> dict[str, Any]:
        """The pipeline call's step-callback arguments, calling `on_latents` with unpacked latents."""

    def reference_inputs(self, reference: Any) -> dict[str, Any]:
        """An edit model's validation reference image (PIL, at the validation size) as pipeline arguments; other
        models take none."""
        return {}

    def save_full(self, transformer: torch.nn.Module, out: Path) -> None:
        """Write a full diffusers pipeline folder with the trained transformer."""
        pipeline = self.pipeline_class.from_pretrained(self.source, transformer=transformer, torch_dtype=self.dtype)
        pipeline.save_pretrained(out)

    @torch.no_grad()
    def decode_sample(self, latents: torch.Tensor, width: int, height: int) -> torch.Tensor:
        """The pipeline's `output_type="latent"` result -> RGB in [0, 1] (B, 3, H, W), decoded by the fp32 VAE
        whatever the transformer's dtype."""
        return ((self.decode_latents(latents).float() + 1) / 2).clamp(0, 1)

    @torch.no_grad()
    def decode_preview(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents mid-sampling -> a small RGB image in [0, 1] (B, 3, h, w); decoded at half size for speed."""
        small = torch.nn.functional.interpolate(latents.float(), scale_factor=0.5, mode="bilinear")
        return ((self.decode_latents(small).float() + 1) / 2).clamp(0, 1)
