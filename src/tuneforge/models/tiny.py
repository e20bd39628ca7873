"""Tiny random-weight pipelines built in code, so demos and tests run without a model hub.

Each maker writes a complete diffusers-format folder (`model_index.json`, one sub-folder per component,
an offline tokenizer) that the product then loads with its ordinary `from_pretrained` code — the same path
a hub id takes. Sizes follow what was measured to work on CPU (see TESTING.md in the shared docs).
"""

from __future__ import annotations

import io
from pathlib import Path

import torch

# A few sentences are enough for sentencepiece to learn a usable vocabulary in well under a second.
_CORPUS = [
    "a photo of a cat sitting on a red chair",
    "a studio portrait of a person wearing a leather jacket",
    "night bench shot of a park under street lights",
    "a cinematic product photo of a small robot toy",
    "a painting of mountains and a blue lake at sunrise",
    "a close up of green leaves with drops of water",
    "an old car parked in front of a yellow house",
    "a bowl of fruit on a wooden kitchen table",
    "a dog running on the beach near the waves",
    "a black and white sketch of a city street",
    "test shot of <token> in the snow",
    "a tiny pixel art castle with flags",
]


def make_t5_tokenizer(vocab_size: int = 96, max_length: int = 32):
    """A T5 tokenizer from a sentencepiece model trained on the fly (no files from any hub)."""
    import sentencepiece as spm
    from transformers import T5Tokenizer

    buffer = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(_CORPUS * 4),
        model_writer=buffer,
        vocab_size=vocab_size,
        model_type="unigram",
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        pad_piece="<pad>",
        eos_piece="</s>",
        unk_piece="<unk>",
        hard_vocab_limit=False,
        minloglevel=2,
    )
    processor = spm.SentencePieceProcessor(model_proto=buffer.getvalue())
    vocab = [(processor.id_to_piece(i), processor.get_score(i)) for i in range(processor.get_piece_size())]
    return T5Tokenizer(vocab=vocab, extra_ids=0, model_max_length=max_length)


def tiny_vae(latent_channels: int = 4, seed: int = 0, **config):
    """An AutoencoderKL that downsamples 8x like the real ones (4 blocks); `config` overrides."""
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 16, 16, 16),
        layers_per_block=1,
        latent_channels=latent_channels,
        norm_num_groups=8,
        sample_size=64,
        **config,
    )


def tiny_t5_encoder(vocab_size: int, seed: int = 0):
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(seed)
    config = T5Config(
        vocab_size=vocab_size,
        d_model=32,
        d_kv=8,
        d_ff=64,
        num_layers=2,
        num_heads=4,
        relative_attention_num_buckets=8,
        pad_token_id=0,
        eos_token_id=1,
    )
    return T5EncoderModel(config)


def tiny_pixart_transformer(seed: int = 0):
    from diffusers import PixArtTransformer2DModel

    torch.manual_seed(seed)
    return PixArtTransformer2DModel(
        sample_size=8,
        num_layers=2,
        patch_size=2,
        attention_head_dim=8,
        num_attention_heads=4,
        caption_channels=32,
        in_channels=4,
        out_channels=8,
        cross_attention_dim=32,
        norm_type="ada_norm_single",
        norm_elementwise_affine=False,
        norm_eps=1e-6,
        num_embeds_ada_norm=1000,
        use_additional_conditions=False,
    )


def make_tiny_pixart_sigma(out: Path, seed: int = 0, flavour: str = "900M-1024-v0.6") -> Path:
    """Write a random-weight PixArt Sigma pipeline folder to `out` and return it."""
    from diffusers import DPMSolverMultistepScheduler, PixArtSigmaPipeline

    tokenizer = make_t5_tokenizer()
    pipeline = PixArtSigmaPipeline(
        tokenizer=tokenizer,
        text_encoder=tiny_t5_encoder(len(tokenizer), seed),
        vae=tiny_vae(4, seed),
        transformer=tiny_pixart_transformer(seed),
        # The real PixArt Sigma checkpoints ship this scheduler with these values (epsilon, linear betas).
        scheduler=DPMSolverMultistepScheduler(
            beta_schedule="linear",
            beta_start=0.0001,
            beta_end=0.02,
            num_train_timesteps=1000,
            prediction_type="epsilon",
            trained_betas=None,
        ),
    )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    pipeline.save_pretrained(out)
    return out


def make_clip_tokenizer(folder: Path):
    """A character-level CLIP BPE tokenizer: a vocab.json + merges.txt written to `folder`, then loaded from it."""
    import json
    import string

    from transformers import CLIPTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    characters = list(string.ascii_lowercase + string.digits + "<>.,!?'-_")
    vocab = {c: i for i, c in enumerate(characters)}
    vocab.update({c + "</w>": len(characters) + i for i, c in enumerate(characters)})
    vocab["<|startoftext|>"], vocab["<|endoftext|>"] = len(vocab), len(vocab) + 1
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer.from_pretrained(folder, model_max_length=77)


def tiny_clip_encoder(tokenizer, seed: int = 0):
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    return CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
        max_position_embeddings=77, projection_dim=32, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    ))


def tiny_flux_transformer(guidance: bool = True, seed: int = 0):
    from diffusers import FluxTransformer2DModel

    torch.manual_seed(seed)
    return FluxTransformer2DModel(
        patch_size=1, in_channels=64, num_layers=1, num_single_layers=2, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32, guidance_embeds=guidance,
        axes_dims_rope=(4, 6, 6),
    )


def tiny_flux_vae(seed: int = 0):
    """16 latent channels, no quant convs, the real Flux VAE's shift and scale."""
    return tiny_vae(16, seed, use_quant_conv=False, use_post_quant_conv=False, shift_factor=0.1159,
                    scaling_factor=0.3611)


def make_tiny_flux(out: Path, seed: int = 0, flavour: str = "dev") -> Path:
    """A random-weight Flux.1 pipeline folder: dev (guidance embedding, dynamic shift), schnell (neither), or
    kontext (dev's components in a FluxKontextPipeline)."""
    import tempfile

    from diffusers import FlowMatchEulerDiscreteScheduler, FluxKontextPipeline, FluxPipeline

    if flavour not in ("dev", "schnell", "kontext"):
        raise ValueError(f"no tiny flux model for flavour {flavour!r}; known: dev, schnell, kontext")
    dev = flavour != "schnell"
    with tempfile.TemporaryDirectory() as scratch:
        clip_tokenizer = make_clip_tokenizer(Path(scratch))
    t5_tokenizer = make_t5_tokenizer()
    # The real checkpoints' scheduler settings: dev shifts by image size, schnell does not shift.
    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True, base_shift=0.5,
                                                max_shift=1.15) if dev else FlowMatchEulerDiscreteScheduler(shift=1.0)
    pipeline = (FluxKontextPipeline if flavour == "kontext" else FluxPipeline)(
        scheduler=scheduler, vae=tiny_flux_vae(seed), text_encoder=tiny_clip_encoder(clip_tokenizer, seed),
        tokenizer=clip_tokenizer, text_encoder_2=tiny_t5_encoder(len(t5_tokenizer), seed), tokenizer_2=t5_tokenizer,
        transformer=tiny_flux_transformer(guidance=dev, seed=seed),
    )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    pipeline.save_pretrained(out)
    return out


MAKERS = {"pixart_sigma": make_tiny_pixart_sigma, "flux": make_tiny_flux}


def make_tiny_model(family: str, out: Path, seed: int = 0, flavour: str | None = None) -> Path:
    try:
        maker = MAKERS[family]
    except KeyError:
        raise ValueError(f"no tiny model for family {family!r}; known: {', '.join(sorted(MAKERS))}") from None
    return maker(Path(out), seed, flavour) if flavour else maker(Path(out), seed)
