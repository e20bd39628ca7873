"""PixArt Sigma: T5 text encoder, SD-style VAE, PixArtTransformer2DModel, DDPM noise objective."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch

from tuneforge.models.base import ModelAdapter, ModelLoadError, NoiseObjective, NoisyBatch, TrainBatch
from tuneforge.models.precision import load_dtype

DEFAULT_MAX_TOKENS = 300  # PixArt Sigma was trained with 300 T5 tokens


class DDPMObjective(NoiseObjective):
    """Uniform integer timesteps, `add_noise` on the model's beta schedule, epsilon or v target."""

    def __init__(self, scheduler: Any) -> None:
        self.scheduler = scheduler
        self.prediction_type = scheduler.config.prediction_type
        if self.prediction_type not in ("epsilon", "v_prediction"):
            raise ModelLoadError(f"unsupported scheduler prediction_type {self.prediction_type!r}")

    def noisy(self, latents: torch.Tensor, noise: torch.Tensor, generator: torch.Generator) -> NoisyBatch:
        count = self.scheduler.config.num_train_timesteps
        timesteps = torch.randint(0, count, (latents.shape[0],), generator=generator).to(latents.device)
        noisy = self.scheduler.add_noise(latents, noise, timesteps)
        if self.prediction_type == "epsilon":
            target = noise
        else:
            target = self.scheduler.get_velocity(latents, noise, timesteps)
        return NoisyBatch(model_input=noisy, timesteps=timesteps, target=target)


def _is_local(source: str) -> bool:
    return source.startswith(("/", ".", "~")) or Path(source).exists()


def check_pipeline_folder(source: str, class_names: tuple[str, ...], components: tuple[str, ...]) -> None:
    """Reject a missing folder or a folder of another family before any heavy loading."""
    if not _is_local(source):
        return
    folder = Path(source).expanduser()
    index = folder / "model_index.json"
    if not folder.is_dir():
        raise ModelLoadError(
            f"pretrained_model_name_or_path: folder {folder} does not exist; give a hub id or a diffusers folder")
    if not index.is_file():
        raise ModelLoadError(
            f"pretrained_model_name_or_path: {folder} has no model_index.json; it is not a diffusers pipeline folder")
    name = json.loads(index.read_text()).get("_class_name", "")
    if name not in class_names:
        raise ModelLoadError(
            f"pretrained_model_name_or_path: {folder} holds a {name or 'unknown'} pipeline, "
            f"not {' or '.join(class_names)}; check model_family or the folder")
    missing = [c for c in components if not (folder / c).is_dir()]
    if missing:
        raise ModelLoadError(f"pretrained_model_name_or_path: {folder} lacks {', '.join(missing)}")


class PixArtSigmaAdapter(ModelAdapter):
    family = "pixart_sigma"
    required_components = ("transformer", "vae", "scheduler")
    pipeline_class_names = ("PixArtSigmaPipeline",)

    def __init__(self, options: Any, device: torch.device) -> None:
        super().__init__(options, device)
        self.source = str(options.pretrained_model_name_or_path or "")
        if not self.source:
            raise ModelLoadError("pretrained_model_name_or_path: empty; give a hub id or a local diffusers folder")
        check_pipeline_folder(self.source, self.pipeline_class_names, self.required_components)
        self.dtype = load_dtype(options.base_model_precision)
        self.tokenizer = None
        self.text_encoder = None
        self._objective: DDPMObjective | None = None

    def _load(self, cls: Any, subfolder: str, **kwargs: Any) -> Any:
        try:
            return cls.from_pretrained(self.source, subfolder=subfolder, **kwargs)
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"cannot load {subfolder} from {self.source!r}: {exc}") from exc

    # --- loading -------------------------------------------------------------------------------------
    def load_transformer(self) -> torch.nn.Module:
        from diffusers import PixArtTransformer2DModel

        return self._load(PixArtTransformer2DModel, "transformer", torch_dtype=self.dtype)

    def load_vae(self) -> torch.nn.Module:
        from diffusers import AutoencoderKL

        # The VAE stays in fp32 unless asked otherwise: it is small and fp16 VAEs overflow.
        self.vae = self._load(AutoencoderKL, "vae").to(self.device).eval().requires_grad_(False)
        return self.vae

    def load_text_encoders(self) -> None:
        from transformers import AutoTokenizer, T5EncoderModel

        self.tokenizer = self._load(AutoTokenizer, "tokenizer")
        encoder = self._load(T5EncoderModel, "text_encoder", dtype=self.dtype)
        self.text_encoder = encoder.to(self.device).eval().requires_grad_(False)

    def unload_text_encoders(self) -> None:
        self.text_encoder = None

    @property
    def max_tokens(self) -> int:
        wanted = getattr(self.options, "tokenizer_max_length", None) or DEFAULT_MAX_TOKENS
        if self.tokenizer is not None:
            return min(wanted, self.tokenizer.model_max_length)
        return wanted

    # --- caches ----------------------------------------------------------------------------------------
    def _fingerprint(self, subfolder: str, extra: str) -> str:
        """The source plus the component's config file: a changed checkpoint means a new cache key."""
        config = ""
        if _is_local(self.source):
            for name in ("config.json", "tokenizer_config.json"):
                path = Path(self.source).expanduser() / subfolder / name
                if path.is_file():
                    config += path.read_text()
        digest = hashlib.sha256(f"{self.source}|{subfolder}|{config}|{extra}".encode()).hexdigest()
        return digest[:16]

    def text_encoder_fingerprint(self) -> str:
        return self._fingerprint("text_encoder", f"t5|{self.max_tokens}|{self.options.base_model_precision}")

    def vae_fingerprint(self) -> str:
        return self._fingerprint("vae", "vae|fp32")

    @torch.no_grad()
    def encode_prompts(self, prompts: list[str]) -> list[dict[str, torch.Tensor]]:
        if self.text_encoder is None:
            self.load_text_encoders()
        tokens = self.tokenizer(
            prompts, padding="max_length", max_length=self.max_tokens, truncation=True,
            add_special_tokens=True, return_tensors="pt",
        )
        mask = tokens.attention_mask.to(self.device)
        embeds = self.text_encoder(tokens.input_ids.to(self.device), attention_mask=mask)[0]
        return [
            {"prompt_embeds": embeds[i].cpu().contiguous(), "attention_mask": mask[i].cpu().contiguous()}
            for i in range(len(prompts))
        ]

    @torch.no_grad()
    def encode_images(self, pixels: torch.Tensor, generators: list[torch.Generator] | None = None) -> torch.Tensor:
        if self.vae is None:
            self.load_vae()
        pixels = pixels.to(self.device, self.vae.dtype)
        latents = self.vae.encode(pixels).latent_dist.sample(generator=generators)
        return latents * self.vae.config.scaling_factor

    # --- training --------------------------------------------------------------------------------------
    @property
    def objective(self) -> DDPMObjective:
        if self._objective is None:
            from diffusers import DDPMScheduler

            self._objective = DDPMObjective(self._load(DDPMScheduler, "scheduler"))
        return self._objective

    def predict(self, model: torch.nn.Module, noisy: NoisyBatch, batch: TrainBatch) -> torch.Tensor:
        dtype = self.dtype or torch.float32  # the base weights' dtype; autocast may still lower it
        out = model(
            noisy.model_input.to(dtype),
            encoder_hidden_states=batch.text["prompt_embeds"].to(dtype),
            encoder_attention_mask=batch.text["attention_mask"],
            timestep=noisy.timesteps,
            added_cond_kwargs={"resolution": None, "aspect_ratio": None},
            return_dict=False,
        )[0]
        channels = noisy.target.shape[1]
        # PixArt predicts (epsilon, variance) when out_channels is twice the latent channels; train the first.
        return out[:, :channels] if out.shape[1] == 2 * channels else out

    def lora_target_modules(self) -> list[str]:
        return ["to_q", "to_k", "to_v", "to_out.0"]

    # --- validation and outputs --------------------------------------------------------------------------
    def build_pipeline(self, transformer: torch.nn.Module) -> Any:
        """A pipeline around the trained transformer, without text encoder: prompts come as cached embeddings."""
        from diffusers import DPMSolverMultistepScheduler, PixArtSigmaPipeline

        if self.vae is None:
            self.load_vae()
        return PixArtSigmaPipeline(
            tokenizer=None,
            text_encoder=None,
            vae=self.vae,
            transformer=transformer,
            scheduler=self._load(DPMSolverMultistepScheduler, "scheduler"),
        )

    def pipeline_call_kwargs(self, width: int, height: int) -> dict[str, Any]:
        return {"width": width, "height": height, "use_resolution_binning": False, "clean_caption": False,
                "max_sequence_length": self.max_tokens}

    def save_full(self, transformer: torch.nn.Module, out: Path) -> None:
        from diffusers import PixArtSigmaPipeline

        pipeline = PixArtSigmaPipeline.from_pretrained(self.source, transformer=transformer, torch_dtype=self.dtype)
        pipeline.save_pretrained(out)

    @torch.no_grad()
    def decode_preview(self, latents: torch.Tensor) -> torch.Tensor:
        """Decode at a quarter of the size for speed: previews are thumbnails."""
        if self.vae is None:
            self.load_vae()
        small = torch.nn.functional.interpolate(latents.float(), scale_factor=0.5, mode="bilinear")
        image = self.vae.decode(small.to(self.vae.dtype) / self.vae.config.scaling_factor).sample
        return ((image.float() + 1) / 2).clamp(0, 1)
