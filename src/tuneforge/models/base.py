"""The model-adapter interface: everything the trainer needs to know about one model family.

The trainer and the caches talk only to this interface. A family adapter loads its components with
`from_pretrained` (hub id or local folder), encodes prompts and images for the caches, turns a clean latent
batch into (model input, target) for its objective, runs the denoiser, builds a pipeline for validation and
saves its outputs. Diffusion-objective details live in `NoiseObjective` subclasses so that DDPM-style
(PixArt: epsilon / v-prediction on a beta schedule) and flow matching (Flux: velocity on sigmas) can share the loop.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch


class ModelLoadError(Exception):
    """The model could not be loaded from the given name or folder (message says which and how to fix)."""


@dataclass
class TrainBatch:
    """One micro-batch of cached tensors, already on the training device."""

    latents: torch.Tensor  # clean, scaled VAE latents (B, C, h, w)
    text: dict[str, torch.Tensor]  # the family's prompt embeddings, stacked


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


class ModelAdapter(ABC):
    """One family (pixart_sigma, flux, ...). Instances hold the loaded components."""

    family: str = ""
    #: sub-folders a diffusers pipeline folder of this family must have; used to reject the wrong family early
    required_components: tuple[str, ...] = ()
    #: `_class_name` values accepted in model_index.json
    pipeline_class_names: tuple[str, ...] = ()

    def __init__(self, options: Any, device: torch.device) -> None:
        self.options = options
        self.device = device
        self.vae: torch.nn.Module | None = None

    # --- loading -------------------------------------------------------------------------------------
    @abstractmethod
    def load_transformer(self) -> torch.nn.Module: ...

    @abstractmethod
    def load_vae(self) -> torch.nn.Module: ...

    @abstractmethod
    def load_text_encoders(self) -> None: ...

    @abstractmethod
    def unload_text_encoders(self) -> None: ...

    def unload_vae(self) -> None:
        self.vae = None

    # --- caches ----------------------------------------------------------------------------------------
    @abstractmethod
    def text_encoder_fingerprint(self) -> str:
        """Identifies the text encoder and its settings; part of every text-embed cache key."""

    @abstractmethod
    def vae_fingerprint(self) -> str:
        """Identifies the VAE; part of every latent cache key."""

    @abstractmethod
    def encode_prompts(self, prompts: list[str]) -> list[dict[str, torch.Tensor]]:
        """One dict of CPU tensors per prompt (no batch dim), ready to be cached."""

    @abstractmethod
    def encode_images(self, pixels: torch.Tensor, generators: list[torch.Generator] | None = None) -> torch.Tensor:
        """Pixels in [-1, 1] (B, 3, H, W) -> scaled latents (B, C, H/8, W/8); one generator per image."""

    def collate_text(self, items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        return {key: torch.stack([item[key] for item in items]) for key in items[0]}

    # --- training --------------------------------------------------------------------------------------
    @property
    @abstractmethod
    def objective(self) -> NoiseObjective: ...

    @abstractmethod
    def predict(self, model: torch.nn.Module, noisy: NoisyBatch, batch: TrainBatch) -> torch.Tensor:
        """Run the (possibly wrapped) denoiser; returns a prediction shaped like `noisy.target`."""

    @abstractmethod
    def lora_target_modules(self) -> list[str]: ...

    # --- validation and outputs --------------------------------------------------------------------------
    @abstractmethod
    def build_pipeline(self, transformer: torch.nn.Module) -> Any:
        """A diffusers pipeline for validation around the trained transformer; prompts come as cached embeddings."""

    @abstractmethod
    def pipeline_call_kwargs(self, width: int, height: int) -> dict[str, Any]:
        """Family-specific arguments for the pipeline call at validation."""

    @abstractmethod
    def save_full(self, transformer: torch.nn.Module, out: Path) -> None:
        """Write a full diffusers pipeline folder with the trained transformer."""

    @abstractmethod
    def decode_preview(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents mid-sampling -> a small RGB image tensor in [0, 1] (B, 3, h, w)."""
