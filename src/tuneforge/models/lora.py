"""Standard LoRA with peft, saved in diffusers' LoRA layout.

diffusers 0.42.1 has no LoRA loader for PixArt (`PixArtSigmaPipeline` has no `load_lora_weights`, and
`PixArtTransformer2DModel` lacks `load_lora_adapter`; checked by experiment). We therefore write:
- `pytorch_lora_weights.safetensors`: keys `transformer.<module>.lora_A.weight` / `lora_B.weight` (the
  layout diffusers writes and reads for every family that has a loader), with the LoRA config in the
  safetensors metadata under `lora_adapter_metadata`, as diffusers does;
- `adapter_config.json` + `adapter_model.safetensors`: a plain peft adapter, so
  `peft.PeftModel.from_pretrained(pipeline.transformer, folder)` loads it too.
`load_lora_into_pipeline` re-applies the file to any diffusers pipeline with a `transformer`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, safe_open, save_file

WEIGHTS_NAME = "pytorch_lora_weights.safetensors"
METADATA_KEY = "lora_adapter_metadata"


def lora_config(rank: int, alpha: float | None, dropout: float, targets: list[str]):
    from peft import LoraConfig

    return LoraConfig(
        r=rank, lora_alpha=alpha if alpha is not None else rank, lora_dropout=dropout, target_modules=targets,
        init_lora_weights=True,
    )


def apply_lora(transformer: torch.nn.Module, config) -> list[torch.nn.Parameter]:
    """Inject the adapter (peft freezes the base and leaves only the adapter trainable); return its parameters."""
    from diffusers.training_utils import cast_training_params
    from peft import inject_adapter_in_model

    inject_adapter_in_model(config, transformer, adapter_name="default")
    cast_training_params(transformer, torch.float32)  # adapter weights train in fp32 even over a bf16/int8 base
    return [param for param in transformer.parameters() if param.requires_grad]


def lora_state_dict(transformer: torch.nn.Module) -> dict[str, torch.Tensor]:
    from peft import get_peft_model_state_dict

    state = get_peft_model_state_dict(transformer, adapter_name="default")
    return {key: value.detach().to("cpu").contiguous() for key, value in state.items()}


def _config_dict(config) -> dict[str, Any]:
    targets = config.target_modules
    return {
        "r": config.r, "lora_alpha": config.lora_alpha, "lora_dropout": config.lora_dropout,
        "target_modules": sorted(targets) if isinstance(targets, (set, list)) else targets,
    }


def save_lora(transformer: torch.nn.Module, config, out: Path, prefix: str = "transformer") -> Path:
    out.mkdir(parents=True, exist_ok=True)
    state = lora_state_dict(transformer)
    meta = {METADATA_KEY: json.dumps(_config_dict(config)), "format": "pt"}
    save_file({f"{prefix}.{key}": value for key, value in state.items()}, out / WEIGHTS_NAME, metadata=meta)
    # The plain-peft copy: adapter_config.json + adapter_model.safetensors (keys prefixed `base_model.model.`).
    config.save_pretrained(str(out))
    save_file({f"base_model.model.{key}": value for key, value in state.items()}, out / "adapter_model.safetensors")
    return out / WEIGHTS_NAME


def read_lora(path: Path, prefix: str = "transformer") -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    path = Path(path)
    if path.is_dir():
        path = path / WEIGHTS_NAME
    with safe_open(str(path), framework="pt") as handle:
        meta = json.loads((handle.metadata() or {}).get(METADATA_KEY, "{}"))
    state = load_file(str(path))
    cut = len(prefix) + 1
    return {key[cut:]: value for key, value in state.items() if key.startswith(prefix + ".")}, meta


def load_lora_into_pipeline(pipeline: Any, path: Path, prefix: str = "transformer") -> None:
    """Apply a saved `pytorch_lora_weights.safetensors` (file or folder) to `pipeline.transformer`."""
    from peft import LoraConfig, inject_adapter_in_model, set_peft_model_state_dict

    state, meta = read_lora(path, prefix)
    if not meta:
        raise ValueError(f"{path} has no {METADATA_KEY} metadata; it was not written by tuneforge or diffusers")
    config = LoraConfig(**meta)
    transformer = getattr(pipeline, prefix)
    inject_adapter_in_model(config, transformer, adapter_name="default")
    result = set_peft_model_state_dict(transformer, state, adapter_name="default")
    if getattr(result, "unexpected_keys", None):
        raise ValueError(f"LoRA keys not found in the model: {result.unexpected_keys[:5]}")
