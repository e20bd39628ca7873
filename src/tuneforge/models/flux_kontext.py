"""Flux.1 Kontext: Flux dev trained on (edit, reference) pairs.

As `FluxKontextPipeline` does at inference, the reference latents are packed like the target, their position ids
marked as the reference (`ids[..., 0] = 1`) and appended after the noisy target tokens; the prediction, and so the
loss, is taken on the target tokens only. With several conditioning sets combined, each reference is appended the
same way.
"""

from __future__ import annotations

from typing import Any

import torch
from PIL import Image

from tuneforge.models.base import TrainBatch
from tuneforge.models.flux import FluxAdapter, image_ids, pack


class FluxKontextAdapter(FluxAdapter):
    @property
    def pipeline_class(self) -> Any:
        from diffusers import FluxKontextPipeline

        return FluxKontextPipeline

    def image_tokens(self, latents: torch.Tensor, batch: TrainBatch) -> tuple[torch.Tensor, torch.Tensor]:
        tokens, ids = super().image_tokens(latents, batch)
        all_tokens, all_ids = [tokens], [ids]
        for reference in batch.conditioning:
            reference_ids = image_ids(*reference.shape[2:], latents.device, latents.dtype)
            reference_ids[:, 0] = 1
            all_tokens.append(pack(reference.to(latents)))
            all_ids.append(reference_ids)
        return torch.cat(all_tokens, dim=1), torch.cat(all_ids, dim=0)

    def token_counts(self, config: Any, batch: TrainBatch) -> tuple[int, int]:
        """The target's tokens and those of every reference, which the transformer sees beside them."""
        image_tokens, text_tokens = super().token_counts(config, batch)
        return image_tokens + sum((r.shape[-2] // 2) * (r.shape[-1] // 2) for r in batch.conditioning), text_tokens

    def reference_inputs(self, reference: Image.Image | None) -> dict[str, Any]:
        """The reference as given, and no resizing by the pipeline (it would go to 1024²)."""
        if reference is None:
            return {}
        width, height = reference.size
        return {"image": reference, "max_area": width * height, "_auto_resize": False}
