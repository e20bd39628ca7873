"""Optimizers and learning-rate schedules named by the options registry."""

from __future__ import annotations

from typing import Any

import torch


def build_optimizer(name: str, params: list[torch.nn.Parameter], lr: float) -> torch.optim.Optimizer:
    if name in ("adamw_bf16", "optimi-adamw"):
        import optimi

        # adamw_bf16: Kahan summation keeps bf16 weights exact through many small updates.
        return optimi.AdamW(params, lr=lr, kahan_sum=True if name == "adamw_bf16" else None)
    if name == "optimi-lion":
        import optimi

        return optimi.Lion(params, lr=lr)
    if name == "adamw":
        # On a GPU one fused kernel updates every parameter; on the CPU torch's own loop is as fast.
        return torch.optim.AdamW(params, lr=lr, fused=bool(params) and params[0].is_cuda or None)
    if name == "prodigy":
        from prodigyopt import Prodigy

        return Prodigy(params, lr=lr)
    raise ValueError(f"optimizer={name!r} is not supported; use adamw_bf16, optimi-adamw, optimi-lion, adamw, prodigy")


def build_scheduler(options: Any, optimizer: torch.optim.Optimizer, total_steps: int) -> Any:
    from diffusers.optimization import get_scheduler

    return get_scheduler(
        options.lr_scheduler, optimizer, num_warmup_steps=options.lr_warmup_steps, num_training_steps=total_steps
    )
