"""Base-weight precisions from the capability table: the dtype to load in, and quantisation (trainer side)."""

from __future__ import annotations

from typing import Any

import torch

from tuneforge.errors import FieldError, Invalid
from tuneforge.options.capabilities import PRECISIONS


def load_dtype(name: str) -> torch.dtype | None:
    """The dtype weights load in (quantised precisions load in bf16 and are quantised afterwards)."""
    dtype = PRECISIONS[name].dtype
    return getattr(torch, dtype) if dtype else None


def load_kwargs(name: str, field: str = "base_model_precision") -> dict[str, Any]:
    """Extra `from_pretrained` arguments: bitsandbytes quantises while loading."""
    precision = PRECISIONS[name]
    if precision.quantiser != "bnb":
        return {}
    try:
        from diffusers import BitsAndBytesConfig
    except ImportError as exc:  # diffusers raises this when bitsandbytes itself is missing
        message = f"{name} needs the bitsandbytes package and an NVIDIA GPU: {exc}"
        raise Invalid(message, [FieldError(field, message)]) from exc
    config = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=precision.weights,
                                bnb_4bit_compute_dtype=load_dtype(name))
    return {"quantization_config": config}


def quantise(module: torch.nn.Module, name: str) -> bool:
    """Quantise the frozen weights of `module` in place with optimum-quanto; False when `name` is not a quanto
    precision (bitsandbytes has quantised while loading)."""
    precision = PRECISIONS[name]
    if precision.quantiser != "quanto":
        return False
    from optimum import quanto

    quanto.quantize(module, weights=getattr(quanto, precision.weights))
    quanto.freeze(module)
    return True
