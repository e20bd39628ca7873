"""`base_model_precision`: the dtype (or quantisation) of the frozen base weights."""

from __future__ import annotations

import torch

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32, "no_change": None}
QUANTO = {"int8-quanto": "qint8", "int4-quanto": "qint4", "int2-quanto": "qint2", "fp8-quanto": "qfloat8"}


def load_dtype(precision: str | None) -> torch.dtype | None:
    """The dtype to load weights in; quantised precisions load in bf16 and are quantised afterwards."""
    precision = precision or "no_change"
    if precision in DTYPES:
        return DTYPES[precision]
    if precision in QUANTO:
        return torch.bfloat16
    raise ValueError(
        f"base_model_precision={precision!r} is not supported; use one of {', '.join([*DTYPES, *QUANTO])}"
    )


def is_quantised(precision: str | None) -> bool:
    return (precision or "") in QUANTO


def quantise(module: torch.nn.Module, precision: str) -> None:
    """Quantise the frozen weights of `module` in place with optimum-quanto (LoRA training only)."""
    from optimum import quanto

    weights = getattr(quanto, QUANTO[precision])
    quanto.quantize(module, weights=weights)
    quanto.freeze(module)

