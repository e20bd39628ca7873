"""Model FLOPs from a transformer's dimensions: against a count by hand for one small configuration, and against
what torch's FLOP counter measures when the tiny models (built in code) run forward."""

from __future__ import annotations

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from tuneforge.models.flops import Flops, flux_forward_flops, pixart_forward_flops, training_flops
from tuneforge.models.tiny import tiny_flux_transformer, tiny_pixart_transformer

PIXART = {"num_attention_heads": 2, "attention_head_dim": 4, "patch_size": 2, "in_channels": 4, "out_channels": 8,
          "caption_channels": 6, "cross_attention_dim": 8, "num_layers": 1}
FLUX = {"num_attention_heads": 1, "attention_head_dim": 4, "patch_size": 1, "in_channels": 8, "out_channels": None,
        "joint_attention_dim": 6, "pooled_projection_dim": 5, "guidance_embeds": False, "num_layers": 1,
        "num_single_layers": 1}


def test_pixart_by_hand():
    """d = 8, 4 image tokens (a 4×4 latent in 2×2 patches), 3 caption tokens, one block."""
    patch_embed = 4 * (4 * 2 * 2) * 8  # each token: a 16-value patch to 8
    timestep = 256 * 8 + 8 * 8 + 8 * 48  # sinusoid → d, d → d, then d → 6d for the block modulation
    caption = 3 * (6 * 8 + 8 * 8)
    self_attention = 4 * (8 * 8 * 4) + 4 * 4 * 8 * 2  # q, k, v, o; then QKᵀ and AV over 4×4
    cross_attention = 4 * 8 * 8 * 2 + 3 * 8 * 8 * 2 + 4 * 3 * 8 * 2  # q, o on images; k, v on captions; 4×3
    feed_forward = 4 * (8 * 32 + 32 * 8)
    output = 4 * 8 * (2 * 2 * 8)
    macs = patch_embed + timestep + caption + self_attention + cross_attention + feed_forward + output
    counted = pixart_forward_flops(PIXART, image_tokens=4, text_tokens=3)
    assert counted.total == 2 * macs
    assert counted.attention == 2 * (4 * 4 * 8 * 2 + 4 * 3 * 8 * 2), "the products of queries and keys, and of V"


def test_flux_by_hand():
    """d = 4, 5 image tokens, 2 text tokens (7 joint), one dual and one single block, no guidance embedding."""
    embedders = 5 * 8 * 4 + 2 * 6 * 4 + (256 * 4 + 16) + (5 * 4 + 16)  # image, text, timestep MLP, pooled MLP
    dual = (2 * 4 * 24  # two modulations, d → 6d
            + 7 * (3 * 16 + 16)  # each token's q, k, v and output projection
            + 2 * 7 * 7 * 4  # joint attention
            + 7 * (4 * 16 + 16 * 4))  # each token's feed-forward
    single = 4 * 12 + 7 * (4 * 16) + 7 * (3 * 16) + 2 * 7 * 7 * 4 + 7 * (20 * 4)  # modulation, mlp, qkv, attn, out
    output = 4 * 8 + 5 * 4 * 8
    counted = flux_forward_flops(FLUX, image_tokens=5, text_tokens=2)
    assert counted.total == 2 * (embedders + dual + single + output)
    assert counted.attention == 2 * 2 * (2 * 7 * 7 * 4)  # one dual and one single block over 7 joint tokens


def measured(model: torch.nn.Module, **inputs) -> int:
    """FLOPs as torch counts them, attention through its matrix products (the math backend)."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter, sdpa_kernel(SDPBackend.MATH):
        model(**inputs)
    return counter.get_total_flops()


@pytest.mark.parametrize("size, text", [(16, 12), (8, 5)])
def test_pixart_matches_the_flop_counter(size, text):
    model = tiny_pixart_transformer()
    inputs = {"hidden_states": torch.randn(2, 4, size, size), "encoder_hidden_states": torch.randn(2, text, 32),
              "timestep": torch.tensor([10, 20]), "added_cond_kwargs": {"resolution": None, "aspect_ratio": None}}
    tokens = (size // model.config.patch_size) ** 2
    assert measured(model, **inputs) == 2 * pixart_forward_flops(model.config, tokens, text).total


@pytest.mark.parametrize("guidance", [True, False])
def test_flux_matches_the_flop_counter(guidance):
    model = tiny_flux_transformer(guidance=guidance)
    tokens, text = 20, 7
    inputs = {"hidden_states": torch.randn(2, tokens, 64), "timestep": torch.tensor([0.5, 0.3]),
              "guidance": torch.tensor([3.5, 3.5]) if guidance else None,
              "pooled_projections": torch.randn(2, 32), "encoder_hidden_states": torch.randn(2, text, 32),
              "txt_ids": torch.zeros(text, 3), "img_ids": torch.zeros(tokens, 3), "return_dict": False}
    assert measured(model, **inputs) == 2 * flux_forward_flops(model.config, tokens, text).total


def test_training_counts_the_backward_pass():
    forward = Flops(weighted=100, attention=10)
    assert training_flops(forward, trains_base=True) == 300 + 30  # activations' and weights' gradients
    assert training_flops(forward, trains_base=False) == 200 + 30  # the base's weights get none; attention has none
    assert forward.times(4) == Flops(400, 40)
