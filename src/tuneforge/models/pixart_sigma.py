"""PixArt Sigma: T5 text encoder, SD-style VAE, PixArtTransformer2DModel, DDPM noise objective."""

from __future__ import annotations

from typing import Any

import torch

from tuneforge.models import flops
from tuneforge.models.base import ModelAdapter, ModelLoadError, NoiseObjective, NoisyBatch, PreviewHook, TrainBatch


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


class PixArtSigmaAdapter(ModelAdapter):
    def __init__(self, options: Any, device: torch.device) -> None:
        super().__init__(options, device)
        self.t5_tokenizer = None
        self.t5 = None
        self._objective: DDPMObjective | None = None

    @property
    def transformer_class(self) -> Any:
        from diffusers import PixArtTransformer2DModel

        return PixArtTransformer2DModel

    @property
    def pipeline_class(self) -> Any:
        from diffusers import PixArtSigmaPipeline

        return PixArtSigmaPipeline

    def load_text_encoders(self) -> None:
        from transformers import AutoTokenizer, T5EncoderModel

        self.t5_tokenizer = self.load(AutoTokenizer, "tokenizer")
        self.t5 = self.load_text_encoder(T5EncoderModel, "text_encoder", quantisable=True)

    def unload_text_encoders(self) -> None:
        self.t5 = None

    # --- caches ----------------------------------------------------------------------------------------------
    def text_encoder_fingerprint(self) -> str:
        return self.fingerprint("text_encoder", f"t5|{self.max_tokens}|{self.options.text_encoder_precision}")

    @torch.no_grad()
    def encode_prompts(self, prompts: list[str]) -> list[dict[str, torch.Tensor]]:
        if self.t5 is None:
            self.load_text_encoders()
        tokens = self.t5_tokenizer(
            prompts, padding="max_length", max_length=self.max_tokens, truncation=True,
            add_special_tokens=True, return_tensors="pt",
        )
        mask = tokens.attention_mask.to(self.device)
        embeds = self.t5(tokens.input_ids.to(self.device), attention_mask=mask)[0]
        return [
            {"prompt_embeds": embeds[i].cpu().contiguous(), "attention_mask": mask[i].cpu().contiguous()}
            for i in range(len(prompts))
        ]

    # --- training --------------------------------------------------------------------------------------------
    @property
    def objective(self) -> DDPMObjective:
        if self._objective is None:
            from diffusers import DDPMScheduler

            self._objective = DDPMObjective(self.load(DDPMScheduler, "scheduler"))
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

    def token_counts(self, config: Any, batch: TrainBatch) -> tuple[int, int]:
        height, width = batch.latents.shape[-2:]
        patch = config["patch_size"]
        return (height // patch) * (width // patch), batch.text["prompt_embeds"].shape[1]

    def forward_flops(self, config: Any, image_tokens: int, text_tokens: int) -> flops.Flops:
        return flops.pixart_forward_flops(config, image_tokens, text_tokens)

    # --- validation ------------------------------------------------------------------------------------------
    def build_pipeline(self, transformer: torch.nn.Module) -> Any:
        from diffusers import DPMSolverMultistepScheduler

        if self.vae is None:
            self.load_vae()
        return self.pipeline_class(tokenizer=None, text_encoder=None, vae=self.vae, transformer=transformer,
                                   scheduler=self.load(DPMSolverMultistepScheduler, "scheduler"))

    def pipeline_inputs(self, positive: dict[str, torch.Tensor], negative: dict[str, torch.Tensor],
                        guidance: float) -> dict[str, Any]:
        positive, negative = self.in_model_dtype(positive), self.in_model_dtype(negative)
        return {"prompt_embeds": positive["prompt_embeds"], "prompt_attention_mask": positive["attention_mask"],
                "negative_prompt": None, "negative_prompt_embeds": negative["prompt_embeds"],
                "negative_prompt_attention_mask": negative["attention_mask"], "guidance_scale": guidance}

    def pipeline_call_kwargs(self, width: int, height: int) -> dict[str, Any]:
        return {"width": width, "height": height, "use_resolution_binning": False, "clean_caption": False,
                "max_sequence_length": self.max_tokens}

    def preview_kwargs(self, on_latents: PreviewHook, width: int, height: int) -> dict[str, Any]:
        return {"callback": lambda step, timestep, latents: on_latents(step, float(timestep), latents),
                "callback_steps": 1}
