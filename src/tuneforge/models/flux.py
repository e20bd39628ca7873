"""Flux.1 (dev, schnell): CLIP (pooled) + T5 text encoders, a 16-channel VAE with shift and scale, 2x2 packed latents
with position ids, flow matching, and for dev the distilled guidance embedding.

What the transformer sees in training is exactly what `FluxPipeline` feeds it at inference: packed latents, image
ids (row, column), zero text ids, the sigma as timestep, and the guidance value (the tests hook the pipeline's
transformer call to check it).
"""

from __future__ import annotations

from typing import Any

import torch

from tuneforge.errors import FieldError, Invalid
from tuneforge.models import flops
from tuneforge.models.base import ModelAdapter, ModelLoadError, NoiseObjective, NoisyBatch, PreviewHook, TrainBatch
from tuneforge.options.model_folder import guidance_problem

CLIP_TOKENS = 77

def pack(latents: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) latents -> (B, h/2 * w/2, 4C) tokens, one per 2x2 patch, row by row."""
    b, c, h, w = latents.shape
    patches = latents.view(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5)
    return patches.reshape(b, (h // 2) * (w // 2), c * 4)


def unpack(tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The inverse of `pack`, for latents `height` x `width`."""
    b, _, d = tokens.shape
    patches = tokens.view(b, height // 2, width // 2, d // 4, 2, 2).permute(0, 3, 1, 4, 2, 5)
    return patches.reshape(b, d // 4, height, width)


def image_ids(height: int, width: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """(h/2 * w/2, 3) position ids of packed tokens: (0, row, column)."""
    ids = torch.zeros(height // 2, width // 2, 3)
    ids[..., 1] += torch.arange(height // 2)[:, None]
    ids[..., 2] += torch.arange(width // 2)[None, :]
    return ids.reshape(-1, 3).to(device=device, dtype=dtype)


class FlowMatchObjective(NoiseObjective):
    """Rectified flow: x_t = (1 - s) x0 + s noise, target noise - x0, with s shifted towards noise by `shift`."""

    def __init__(self, shift: float) -> None:
        self.shift = shift

    def noisy(self, latents: torch.Tensor, noise: torch.Tensor, generator: torch.Generator) -> NoisyBatch:
        u = torch.rand((latents.shape[0],), generator=generator)
        sigmas = (self.shift * u / (1 + (self.shift - 1) * u)).to(latents.device, latents.dtype)
        s = sigmas.view(-1, 1, 1, 1)
        return NoisyBatch(model_input=(1 - s) * latents + s * noise, timesteps=sigmas, target=noise - latents)


class FluxAdapter(ModelAdapter):
    def __init__(self, options: Any, device: torch.device) -> None:
        super().__init__(options, device)
        self.clip_tokenizer = self.clip = self.t5_tokenizer = self.t5 = None
        self.guidance_embeds = self.flavour.guidance == "distilled"
        self._objective: FlowMatchObjective | None = None

    @property
    def transformer_class(self) -> Any:
        from diffusers import FluxTransformer2DModel

        return FluxTransformer2DModel

    @property
    def pipeline_class(self) -> Any:
        from diffusers import FluxPipeline

        return FluxPipeline

    def load_transformer(self) -> torch.nn.Module:
        transformer = super().load_transformer()
        problem = guidance_problem(bool(transformer.config.guidance_embeds), self.flavour)
        if problem:
            raise ModelLoadError(f"pretrained_model_name_or_path: {problem}")
        return transformer

    def load_text_encoders(self) -> None:
        from transformers import AutoTokenizer, CLIPTextModel, T5EncoderModel

        self.clip_tokenizer = self.load(AutoTokenizer, "tokenizer")
        self.clip = self.load_text_encoder(CLIPTextModel, "text_encoder")
        layers = self.clip.config.num_hidden_layers
        if self.options.clip_skip > layers:
            message = f"clip_skip={self.options.clip_skip}: this CLIP has {layers} layers; use 0 to {layers}"
            raise Invalid(message, [FieldError("--clip_skip", message)])
        self.t5_tokenizer = self.load(AutoTokenizer, "tokenizer_2")
        self.t5 = self.load_text_encoder(T5EncoderModel, "text_encoder_2", quantisable=True)

    def unload_text_encoders(self) -> None:
        self.clip = self.t5 = None

    # --- caches ----------------------------------------------------------------------------------------------
    def text_encoder_fingerprint(self) -> str:
        extra = f"clip+t5|{self.max_tokens}|layer{max(self.options.clip_skip, 1)}|{self.options.text_encoder_precision}"
        return self.fingerprint("text_encoder", extra + "|" + self.fingerprint("text_encoder_2", ""))

    @torch.no_grad()
    def encode_prompts(self, prompts: list[str]) -> list[dict[str, torch.Tensor]]:
        """As `FluxPipeline.encode_prompt` does: CLIP's pooled output and T5's last hidden state, no masks."""
        if self.t5 is None:
            self.load_text_encoders()
        pooled = self._pooled(prompts)
        tokens = self.t5_tokenizer(prompts, padding="max_length", max_length=self.max_tokens, truncation=True,
                                   return_length=False, return_overflowing_tokens=False, return_tensors="pt")
        embeds = self.t5(tokens.input_ids.to(self.device), output_hidden_states=False)[0]
        return [{"prompt_embeds": embeds[i].cpu().contiguous(), "pooled_prompt_embeds": pooled[i].cpu().contiguous()}
                for i in range(len(prompts))]

    def _pooled(self, prompts: list[str]) -> torch.Tensor:
        """CLIP's pooled embedding; with clip_skip N > 1, pooled from the N-th layer from the end (its final norm,
        then the EOS token), as the last layer's is."""
        ids = self.clip_tokenizer(prompts, padding="max_length", max_length=CLIP_TOKENS, truncation=True,
                                  return_tensors="pt").input_ids.to(self.device)
        layer = max(self.options.clip_skip, 1)
        out = self.clip(ids, output_hidden_states=layer > 1)
        if layer == 1:
            return out.pooler_output
        hidden = self.clip.final_layer_norm(out.hidden_states[-layer])
        eos = (ids == self.clip.config.eos_token_id).int().argmax(dim=-1)
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), eos]

    # --- training --------------------------------------------------------------------------------------------
    @property
    def objective(self) -> FlowMatchObjective:
        if self._objective is None:
            from diffusers import FlowMatchEulerDiscreteScheduler

            shift = self.options.flow_schedule_shift
            if shift is None:
                shift = float(self.load(FlowMatchEulerDiscreteScheduler, "scheduler").config.shift)
            self._objective = FlowMatchObjective(shift)
        return self._objective

    def image_tokens(self, latents: torch.Tensor, batch: TrainBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """The image tokens the transformer sees and their position ids: here the noisy target alone."""
        return pack(latents), image_ids(*latents.shape[2:], latents.device, latents.dtype)

    def predict(self, model: torch.nn.Module, noisy: NoisyBatch, batch: TrainBatch) -> torch.Tensor:
        dtype = self.dtype or torch.float32
        latents = noisy.model_input
        batch_size, _, height, width = latents.shape
        tokens, ids = self.image_tokens(latents, batch)
        embeds = batch.text["prompt_embeds"]
        guidance = None
        if self.guidance_embeds:
            guidance = torch.full((batch_size,), self.options.flux_guidance_value, device=latents.device)
        out = model(
            hidden_states=tokens.to(dtype),
            timestep=noisy.timesteps.to(dtype),
            guidance=guidance,
            pooled_projections=batch.text["pooled_prompt_embeds"].to(dtype),
            encoder_hidden_states=embeds.to(dtype),
            txt_ids=torch.zeros(embeds.shape[1], 3, device=latents.device, dtype=dtype),
            img_ids=ids.to(dtype),
            return_dict=False,
        )[0]
        return unpack(out[:, : (height // 2) * (width // 2)], height, width)  # the target's tokens come first

    def token_counts(self, config: Any, batch: TrainBatch) -> tuple[int, int]:
        """The target's 2×2 patches (`image_tokens` packs them)."""
        height, width = batch.latents.shape[-2:]
        return (height // 2) * (width // 2), batch.text["prompt_embeds"].shape[1]

    def forward_flops(self, config: Any, image_tokens: int, text_tokens: int) -> flops.Flops:
        return flops.flux_forward_flops(config, image_tokens, text_tokens)

    # --- validation ------------------------------------------------------------------------------------------
    def build_pipeline(self, transformer: torch.nn.Module) -> Any:
        from diffusers import FlowMatchEulerDiscreteScheduler

        if self.vae is None:
            self.load_vae()
        return self.pipeline_class(scheduler=self.load(FlowMatchEulerDiscreteScheduler, "scheduler"), vae=self.vae,
                                   text_encoder=None, tokenizer=None, text_encoder_2=None, tokenizer_2=None,
                                   transformer=transformer)

    def pipeline_inputs(self, positive: dict[str, torch.Tensor], negative: dict[str, torch.Tensor],
                        guidance: float) -> dict[str, Any]:
        positive = self.in_model_dtype(positive)
        inputs: dict[str, Any] = {"prompt_embeds": positive["prompt_embeds"],
                                  "pooled_prompt_embeds": positive["pooled_prompt_embeds"]}
        if self.guidance_embeds:
            inputs["guidance_scale"] = guidance
        return inputs

    def pipeline_call_kwargs(self, width: int, height: int) -> dict[str, Any]:
        return {"width": width, "height": height}

    def preview_kwargs(self, on_latents: PreviewHook, width: int, height: int) -> dict[str, Any]:
        def callback(pipeline: Any, step: int, timestep: Any, tensors: dict[str, torch.Tensor]) -> dict:
            on_latents(step, float(timestep), unpack(tensors["latents"], *self._latent_size(width, height)))
            return {}

        return {"callback_on_step_end": callback, "callback_on_step_end_tensor_inputs": ["latents"]}

    def decode_sample(self, latents: torch.Tensor, width: int, height: int) -> torch.Tensor:
        return super().decode_sample(unpack(latents, *self._latent_size(width, height)), width, height)

    def _latent_size(self, width: int, height: int) -> tuple[int, int]:
        """(h, w) of the VAE latents of a width x height image (even, for the 2x2 packing), as the pipeline sizes
        them."""
        scale = 2 ** (len(self.vae.config.block_out_channels) - 1) * 2 if self.vae is not None else 16
        return 2 * (height // scale), 2 * (width // scale)
