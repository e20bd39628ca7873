"""One unattended run on a GPU machine: step time, MFU and peak memory of the trainer's model code at real sizes.

Cases (random weights built in code at the real models' dimensions, nothing downloaded; inputs shaped as the
trainer's cached latents and text embeddings at 1024², batch 1):
- Flux.1 dev LoRA rank 16 on a bf16 base, without and with gradient checkpointing;
- the same on an int8-quanto base (with gradient checkpointing);
- a PixArt Sigma 900M-size full fine-tune (bf16 autocast over fp32 weights).
Each case runs the production adapter's `predict`, LoRA attachment (peft, `models.lora.PeftLora`), quantisation
(`models.precision.quantise`) and FLOPs formulas (`models.flops`), with SDPA attention and a fused AdamW;
`--compile` compiles each transformer block. Targets on one H100/H200: Flux LoRA without recompute ≥ 45 % MFU;
int8 base peak memory ≤ 16 GB. A case that fails (out of memory, say) is reported and the run goes on; the exit
code is 1 when any did.

`--tiny` runs the same code on the tiny models' dimensions on the CPU, so the script is known to work before a
GPU is at hand. The last line printed is one JSON object with every figure and its target.

Usage, from the repository root:
    HF_HUB_OFFLINE=1 .venv/bin/python bench/gpu.py [--tiny] [--quick] [--compile]
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from tuneforge.models import get_adapter
from tuneforge.models.base import NoisyBatch, TrainBatch
from tuneforge.models.flops import training_flops
from tuneforge.models.lora import PeftLora
from tuneforge.models.precision import quantise
from tuneforge.options.registry import TrainingOptions
from tuneforge.trainer.setup import compile_blocks as compile_transformer_blocks
from tuneforge.trainer.telemetry import peak_tflops

FLUX_DEV = {"patch_size": 1, "in_channels": 64, "num_layers": 19, "num_single_layers": 38,
            "attention_head_dim": 128, "num_attention_heads": 24, "joint_attention_dim": 4096,
            "pooled_projection_dim": 768, "guidance_embeds": True, "axes_dims_rope": (16, 56, 56)}
# PixArt Sigma XL (1152 wide, 16 heads) grown to 42 blocks: the 900M fine-tunes' shape.
PIXART_900M = {"sample_size": 128, "num_layers": 42, "patch_size": 2, "attention_head_dim": 72,
               "num_attention_heads": 16, "caption_channels": 4096, "in_channels": 4, "out_channels": 8,
               "cross_attention_dim": 1152, "norm_type": "ada_norm_single", "norm_elementwise_affine": False,
               "norm_eps": 1e-6, "num_embeds_ada_norm": 1000, "use_additional_conditions": False}
FLUX_TINY = {**FLUX_DEV, "num_layers": 1, "num_single_layers": 2, "attention_head_dim": 16, "num_attention_heads": 2,
             "joint_attention_dim": 32, "pooled_projection_dim": 32, "axes_dims_rope": (4, 6, 6)}
PIXART_TINY = {**PIXART_900M, "sample_size": 8, "num_layers": 2, "attention_head_dim": 8, "num_attention_heads": 4,
               "caption_channels": 32, "cross_attention_dim": 32}
TARGETS = {"flux-lora": {"mfu": 0.45}, "flux-lora-int8": {"peak_memory_gb": 16.0}}


@dataclass
class Case:
    name: str
    family: str
    model_type: str
    precision: str = "bf16"
    checkpointing: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


CASES = [
    Case("flux-lora", "flux", "lora"),
    Case("flux-lora-checkpointing", "flux", "lora", checkpointing=True),
    Case("flux-lora-int8", "flux", "lora", precision="int8-quanto", checkpointing=True),
    Case("pixart-900m-full", "pixart_sigma", "full", precision="no_change"),
]
SOURCES = {"flux": "black-forest-labs/FLUX.1-dev", "pixart_sigma": "PixArt-alpha/PixArt-Sigma-XL-2-1024-MS"}


def options_for(case: Case) -> TrainingOptions:
    """The run's options as the trainer would hold them (the source is never loaded: the weights are random)."""
    flavour = {"flux": "dev", "pixart_sigma": "900M-1024-v0.6"}[case.family]
    base = {} if case.precision == "no_change" else {"base_model_precision": case.precision}
    return TrainingOptions(model_family=case.family, model_flavour=flavour, model_type=case.model_type,
                           pretrained_model_name_or_path=SOURCES[case.family], lora_rank=16, lora_alpha=16,
                           gradient_checkpointing=case.checkpointing, **base)


def build_transformer(case: Case, tiny: bool, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
    from diffusers import FluxTransformer2DModel, PixArtTransformer2DModel

    cls, config = ((FluxTransformer2DModel, FLUX_TINY if tiny else FLUX_DEV) if case.family == "flux"
                   else (PixArtTransformer2DModel, PIXART_TINY if tiny else PIXART_900M))
    torch.manual_seed(0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # built in its own precision: a 12B model built in fp32 first needs twice the memory
    try:
        with device:
            return cls(**config)
    finally:
        torch.set_default_dtype(previous)


def inputs(case: Case, model: torch.nn.Module, tiny: bool, device: torch.device) -> tuple[TrainBatch, NoisyBatch]:
    """Cached latents and text embeddings as the trainer feeds them: 1024² (64² with --tiny), batch 1."""
    config = model.config
    side = 8 if tiny else 128  # latent pixels: the VAE's 8× down-sampling
    if case.family == "flux":
        latents = torch.randn(1, 16, side, side, device=device)
        text = {"prompt_embeds": torch.randn(1, 32 if tiny else 512, config.joint_attention_dim, device=device),
                "pooled_prompt_embeds": torch.randn(1, config.pooled_projection_dim, device=device)}
    else:
        latents = torch.randn(1, 4, side, side, device=device)
        length = 32 if tiny else 300
        text = {"prompt_embeds": torch.randn(1, length, config.caption_channels, device=device),
                "attention_mask": torch.ones(1, length, device=device, dtype=torch.long)}
    timesteps = torch.tensor([0.5 if case.family == "flux" else 500], device=device)
    batch = TrainBatch(latents=latents, text=text)
    noisy = NoisyBatch(model_input=torch.randn_like(latents), timesteps=timesteps, target=torch.randn_like(latents))
    return batch, noisy


def prepare(case: Case, options: TrainingOptions, adapter: Any, model: torch.nn.Module, compile_blocks: bool):
    """What is trained, as the trainer sets it up: quantised base, LoRA, checkpointing; the optimizer."""
    if case.model_type == "full":
        model = model.float()  # fp32 master weights under bf16 autocast
        params = list(model.parameters())
    else:
        model.requires_grad_(False)
        quantise(model, case.precision) if case.precision != "bf16" else None
        params = PeftLora(options, adapter).attach(model)
    if case.checkpointing:
        model.enable_gradient_checkpointing()
    if compile_blocks:
        compile_transformer_blocks(model)
    fused = {"fused": True} if params[0].is_cuda else {"foreach": True}
    return model, params, torch.optim.AdamW(params, lr=1e-4, **fused)


def run_case(case: Case, tiny: bool, steps: int, compile_blocks: bool, device: torch.device) -> dict[str, Any]:
    options = options_for(case)
    adapter = get_adapter(options, device)
    dtype = adapter.dtype or torch.float32  # as the trainer loads it: bf16, quantised bases too
    started = time.perf_counter()
    model = build_transformer(case, tiny, device, dtype)
    model, params, optimizer = prepare(case, options, adapter, model, compile_blocks)
    built = time.perf_counter() - started
    batch, noisy = inputs(case, model, tiny, device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16)
    times = []
    for step in range(steps + 2):  # two warm-up steps (allocator, compilation)
        begin = time.perf_counter()
        with autocast:
            prediction = adapter.predict(model, noisy, batch)
        F.mse_loss(prediction.float(), noisy.target.float()).backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if step >= 2:
            times.append(time.perf_counter() - begin)
    step_seconds = sorted(times)[len(times) // 2]
    image_tokens, text_tokens = adapter.token_counts(model.config, batch)
    flops = training_flops(adapter.forward_flops(model.config, image_tokens, text_tokens),
                           trains_base=case.model_type == "full")
    peak = peak_tflops(device)
    memory = torch.cuda.max_memory_allocated(device) / 1e9 if device.type == "cuda" else None
    return {"case": case.name, "step_seconds": step_seconds, "build_seconds": built,
            "tflops": flops / step_seconds / 1e12, "mfu": flops / step_seconds / (peak * 1e12) if peak else None,
            "peak_memory_gb": memory, "targets": TARGETS.get(case.name, {}), "error": None}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="the tiny models' dimensions, on the CPU")
    parser.add_argument("--quick", action="store_true", help="fewer steps per case")
    parser.add_argument("--compile", action="store_true", help="torch.compile each transformer block")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() and not args.tiny else "cpu")
    steps = 3 if args.quick or args.tiny else 10
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"device: {name}, dense bf16 peak {peak_tflops(device) or '?'} TFLOP/s, torch {torch.__version__}")
    results = []
    for case in CASES:
        try:
            results.append(run_case(case, args.tiny, steps, args.compile, device))
        except Exception as exc:  # unattended: note it, go on with the next case
            traceback.print_exc()
            results.append({"case": case.name, "error": f"{type(exc).__name__}: {exc}"[:500],
                            "targets": TARGETS.get(case.name, {})})
        gc.collect()
        if args.compile:
            torch._dynamo.reset()  # each case compiles its own model
        if device.type == "cuda":
            torch.cuda.empty_cache()
    print(f"{'case':<26} {'step s':>8} {'TFLOP/s':>8} {'MFU':>6} {'peak GB':>8}  target")
    for r in results:
        if r.get("error"):
            print(f"{r['case']:<26} failed: {r['error']}")
            continue
        mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else "–"
        memory = f"{r['peak_memory_gb']:.1f}" if r["peak_memory_gb"] is not None else "–"
        target = ", ".join(f"{k} {'≥' if k == 'mfu' else '≤'} {v}" for k, v in r["targets"].items())
        print(f"{r['case']:<26} {r['step_seconds']:>8.3f} {r['tflops']:>8.3g} {mfu:>6} {memory:>8}  {target}")
    print(json.dumps({"bench": "gpu", "device": name, "tiny": args.tiny, "compile": args.compile,
                      "results": results}))
    return 1 if any(r.get("error") for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
