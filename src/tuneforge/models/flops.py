"""Model FLOPs of a training step, counted from a transformer's dimensions (its diffusers config) and the lengths of
what it sees, for MFU: the FLOPs the model needs, not what the hardware ran (recomputed activations do not count).

A multiply-add is two FLOPs. Only matrix products are counted (linear layers, the patch convolution, attention's
two products); norms, activations and the per-sample sinusoidal embeddings are left out, as MFU conventions do.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

SINUSOID = 256  # diffusers' timestep embedding width, the input of the timestep MLPs


@dataclass(frozen=True)
class Flops:
    """A forward pass's FLOPs, those of layers with weights apart from attention's products (which have none)."""

    weighted: int
    attention: int

    @property
    def total(self) -> int:
        return self.weighted + self.attention

    def times(self, samples: int) -> Flops:
        return Flops(self.weighted * samples, self.attention * samples)


def attention_macs(queries: int, keys: int, width: int) -> int:
    """Q·Kᵀ and the weighted sum of V."""
    return 2 * queries * keys * width


def pixart_forward_flops(config: Mapping[str, Any], image_tokens: int, text_tokens: int) -> Flops:
    """One sample through PixArtTransformer2DModel: patch embedding, timestep and caption projections, blocks of
    self-attention, cross-attention to the caption and a 4× GELU feed-forward, and the output projection."""
    d = config["num_attention_heads"] * config["attention_head_dim"]
    patch, n, t = config["patch_size"], image_tokens, text_tokens
    cross = config.get("cross_attention_dim") or d
    out_channels = config.get("out_channels") or config["in_channels"]
    embed = n * config["in_channels"] * patch * patch * d
    timestep = SINUSOID * d + d * d + 6 * d * d
    caption = t * (config["caption_channels"] * d + d * d)
    block = (4 * n * d * d  # self-attention's projections
             + 2 * n * d * d + 2 * t * cross * d  # cross-attention's
             + 8 * n * d * d)  # feed-forward
    head = n * d * patch * patch * out_channels
    attention = attention_macs(n, n, d) + attention_macs(n, t, d)
    layers = config["num_layers"]
    return Flops(2 * (embed + timestep + caption + layers * block + head), 2 * layers * attention)


def flux_forward_flops(config: Mapping[str, Any], image_tokens: int, text_tokens: int) -> Flops:
    """One sample through FluxTransformer2DModel: embedders, dual-stream blocks (image and text each with their own
    projections and feed-forward, attending jointly), single-stream blocks over the joint sequence, output."""
    d = config["num_attention_heads"] * config["attention_head_dim"]
    n, t = image_tokens, text_tokens
    joint = n + t
    patch = config.get("patch_size", 1)
    out_channels = config.get("out_channels") or config["in_channels"]
    embedders = (n * config["in_channels"] * d + t * config["joint_attention_dim"] * d
                 + (SINUSOID * d + d * d) * (2 if config.get("guidance_embeds") else 1)
                 + config["pooled_projection_dim"] * d + d * d)
    dual = 12 * d * d + 12 * joint * d * d
    single = 3 * d * d + 12 * joint * d * d
    head = 2 * d * d + n * d * patch * patch * out_channels
    blocks = config["num_layers"] + config["num_single_layers"]
    weighted = embedders + config["num_layers"] * dual + config["num_single_layers"] * single + head
    return Flops(2 * weighted, 2 * blocks * attention_macs(joint, joint, d))


def training_flops(forward: Flops, trains_base: bool) -> int:
    """A step's model FLOPs from its forward pass. Backward computes the gradients of the activations (as much as
    the forward) and of the weights where they are trained (as much again for a full fine-tune; an adapter's few
    weights are left out); attention, with no weights, costs twice its forward either way (the gradients of Q, K,
    the scores and V)."""
    return forward.weighted * (3 if trains_base else 2) + forward.attention * 3
