"""Standard LoRA with peft, and its output files: diffusers' LoRA layout, which ComfyUI and kohya-style loaders read.

`pytorch_lora_weights.safetensors` holds `transformer.<module>.lora_A.weight` / `lora_B.weight`. Its strength must
survive every loader:
- alpha = rank: the LoRA config is in the safetensors metadata in diffusers' pipeline layout (`lora_adapter_metadata`,
  keys prefixed by the component, `transformer.r`, ...), so `FluxPipeline.load_lora_weights` restores rank and alpha;
  every other loader applies scale 1 = alpha / rank as well.
- alpha ≠ rank: a `transformer.<module>.alpha` tensor per layer, which diffusers, ComfyUI and kohya all read. The
  diffusers metadata is left out then, because diffusers 0.42 refuses a file holding both ("Both `network_alphas`
  and `metadata` cannot be specified"); the config is kept under the `tuneforge` metadata key instead.
Beside it go `adapter_config.json` + `adapter_model.safetensors`, a plain peft adapter that records the base model.
diffusers has no LoRA loader for PixArt: `load_lora_into_pipeline` applies the file to any pipeline's transformer.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, safe_open

from tuneforge.errors import FieldError, Invalid
from tuneforge.models.files import save_tensors
from tuneforge.models.trainable import Trainable

WEIGHTS_NAME = "pytorch_lora_weights.safetensors"
METADATA_KEY = "lora_adapter_metadata"
TUNEFORGE_KEY = "tuneforge"
PREFIX = "transformer"


class PeftLora(Trainable):
    """A standard LoRA on the adapter's target layers, trained in fp32 over a frozen (maybe quantised) base."""

    def __init__(self, options: Any, adapter: Any) -> None:
        from peft import LoraConfig

        super().__init__(options, adapter)
        alpha = options.lora_alpha if options.lora_alpha is not None else options.lora_rank
        self.config = LoraConfig(r=options.lora_rank, lora_alpha=alpha, lora_dropout=options.lora_dropout,
                                 target_modules=adapter.lora_target_modules(), init_lora_weights=True)

    def check(self, skeleton: torch.nn.Module) -> None:
        _check_targets(skeleton, list(self.config.target_modules), self.options)

    def attach(self, transformer: torch.nn.Module) -> list[torch.nn.Parameter]:
        from diffusers.training_utils import cast_training_params
        from peft import inject_adapter_in_model

        self.check(transformer)
        inject_adapter_in_model(self.config, transformer, adapter_name="default")  # freezes the base
        cast_training_params(transformer, torch.float32)
        return [param for param in transformer.parameters() if param.requires_grad]

    def save(self, transformer: torch.nn.Module, folder: Path) -> Path:
        from peft import get_peft_model_state_dict

        state = {key: value.detach().to("cpu").contiguous()
                 for key, value in get_peft_model_state_dict(transformer, adapter_name="default",
                                                               save_embedding_layers=False).items()}
        path = write_lora(state, config_dict(self.config), folder, base_model=self.adapter.source)
        self.config.base_model_name_or_path = self.adapter.source
        self.config.save_pretrained(str(folder))  # the plain-peft copy
        save_tensors({f"base_model.model.{key}": value for key, value in state.items()},
                     folder / "adapter_model.safetensors")
        return path

    def explain_mismatch(self, saved: dict[str, torch.Tensor], current: dict[str, torch.Tensor]) -> str | None:
        changed = [name for name in current if name in saved and saved[name].shape != current[name].shape]
        if changed:  # same layers, other sizes: the rank (lora_A is rank x in)
            rank = next(saved[name].shape[0] for name in saved if "lora_A" in name)
            return (f"lora_rank: the checkpoint was trained with lora_rank={rank}, this run has "
                    f"lora_rank={self.options.lora_rank}; resume with lora_rank={rank} or start a fresh run")
        return None


def _check_targets(transformer: torch.nn.Module, targets: list[str], options: Any) -> None:
    """peft's own error for a target that matches nothing names no option: say which and why."""
    names = [name for name, _ in transformer.named_modules()]
    missing = [t for t in targets if not any(n == t or n.endswith("." + t) for n in names)]
    if len(missing) == len(targets):
        field = "--flux_lora_target" if options.model_family == "flux" else "--lora_type"
        message = (f"the LoRA targets ({', '.join(missing)}) match no layer of this {options.model_family} "
                   "transformer (a smaller model than the preset expects?): choose another target")
        raise Invalid(message, [FieldError(field, message)])


def config_dict(config: Any) -> dict[str, Any]:
    targets = config.target_modules
    return {"r": config.r, "lora_alpha": config.lora_alpha, "lora_dropout": config.lora_dropout,
            "target_modules": sorted(targets) if isinstance(targets, set | list) else targets}


def write_lora(state: dict[str, torch.Tensor], config: dict[str, Any], folder: Path, base_model: str) -> Path:
    """`pytorch_lora_weights.safetensors` in diffusers' layout, with alpha where loaders look for it (see above)."""
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {f"{PREFIX}.{key}": value for key, value in state.items()}
    metadata = {"format": "pt", TUNEFORGE_KEY: json.dumps({**config, "base_model": base_model})}
    if float(config["lora_alpha"]) == float(config["r"]):
        metadata[METADATA_KEY] = json.dumps({f"{PREFIX}.{key}": value for key, value in config.items()})
    else:
        alpha = torch.tensor(float(config["lora_alpha"]))
        for key in state:
            if key.endswith(".lora_A.weight"):
                tensors[f"{PREFIX}.{key.removesuffix('.lora_A.weight')}.alpha"] = alpha.clone()
    path = folder / WEIGHTS_NAME
    save_tensors(tensors, path, metadata)
    return path


def read_lora(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The file's LoRA tensors (without the component prefix) and its peft config."""
    path = Path(path) / WEIGHTS_NAME if Path(path).is_dir() else Path(path)
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata() or {}
    if TUNEFORGE_KEY in metadata:
        config = json.loads(metadata[TUNEFORGE_KEY])
    elif METADATA_KEY in metadata:
        config = {key.removeprefix(f"{PREFIX}."): value for key, value in json.loads(metadata[METADATA_KEY]).items()}
    else:
        raise ValueError(f"{path} has no LoRA config in its metadata; it was not written by tuneforge or diffusers")
    state = {key.removeprefix(f"{PREFIX}."): value for key, value in load_file(str(path)).items()
             if key.startswith(f"{PREFIX}.") and not key.endswith(".alpha")}
    return state, {k: v for k, v in config.items() if k in ("r", "lora_alpha", "lora_dropout", "target_modules")}


def load_lora_into_pipeline(pipeline: Any, path: Path) -> None:
    """Apply a saved `pytorch_lora_weights.safetensors` (file or folder) to `pipeline.transformer`."""
    from peft import LoraConfig, inject_adapter_in_model, set_peft_model_state_dict

    state, config = read_lora(path)
    transformer = getattr(pipeline, PREFIX)
    inject_adapter_in_model(LoraConfig(**config), transformer, adapter_name="default")
    result = set_peft_model_state_dict(transformer, state, adapter_name="default")
    if getattr(result, "unexpected_keys", None):
        raise ValueError(f"LoRA keys not found in the model: {result.unexpected_keys[:5]}")
