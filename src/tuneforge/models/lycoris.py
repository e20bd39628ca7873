"""LyCORIS networks (LoRA, LoCon, LoHa, LoKr) with the lycoris-lora library, and their output file.

The network is registered as a sub-module of the transformer (`lycoris_network`), so one module holds every
trainable tensor: accelerate prepares it once (DDP syncs the network's gradients), checkpoints save it like a LoRA.
The output `lycoris_weights.safetensors` is LyCORIS' own format (keys `lycoris_<module path>.<tensor>` with an
`alpha` per layer), which LyCORIS tooling and ComfyUI load; diffusers' `load_lora_weights` does not read it for Flux,
so `apply_lycoris_weights` re-applies it to a pipeline's transformer.
"""

from __future__ import annotations

import fnmatch
import json
import re
from pathlib import Path
from typing import Any

import torch

from tuneforge.errors import FieldError, Invalid
from tuneforge.models.files import save_tensors
from tuneforge.models.trainable import Trainable
from tuneforge.options.capabilities import PRECISIONS
from tuneforge.options.lycoris import network_kwargs

WEIGHTS_NAME = "lycoris_weights.safetensors"
CONFIG_NAME = "lycoris_config.json"
MODULE_NAME = "lycoris_network"
PREFIX = "lycoris"  # ComfyUI maps `lycoris_<diffusers module path>` keys for Flux


def _preset(config: Any, family: Any) -> dict[str, Any]:
    """A complete preset: `LycorisNetwork.apply_preset` changes class-level state, so every key is set each time
    (a preset of an earlier run in this process must not leak into this one)."""
    preset: dict[str, Any] = {"enable_conv": True, "target_module": list(family.lycoris_targets), "target_name": [],
                              "module_algo_map": {}, "name_algo_map": {}, "use_fnmatch": False, "exclude_name": [],
                              "lora_prefix": PREFIX}
    if config.apply_preset is not None:
        preset.update(config.apply_preset.model_dump(exclude_none=True))
    return preset


class LycorisTrainable(Trainable):
    def __init__(self, options: Any, adapter: Any, config: Any) -> None:
        super().__init__(options, adapter)
        if config is None:
            message = "a LyCORIS run needs its lycoris_config"
            raise Invalid(message, [FieldError("--lycoris_config", message)])
        self.config = config

    def check(self, skeleton: torch.nn.Module) -> None:
        """Some layer must be of a targeted class or carry a targeted name (what LyCORIS matches)."""
        preset = _preset(self.config, self.adapter.family)
        classes = set(preset["target_module"]) | set(preset["module_algo_map"])
        patterns = [*preset["target_name"], *preset["name_algo_map"]]
        match = fnmatch.fnmatch if preset["use_fnmatch"] else (lambda name, pattern: re.match(pattern, name))
        if not any(type(module).__name__ in classes or any(match(name, p) for p in patterns)
                   for name, module in skeleton.named_modules()):
            raise self._wraps_nothing()

    def _wraps_nothing(self) -> Invalid:
        message = (f"lycoris_config wraps no layer of this {self.options.model_family} transformer: name its layer "
                   "classes in apply_preset.target_module (by default tuneforge wraps "
                   f"{', '.join(self.adapter.family.lycoris_targets)})")
        return Invalid(message, [FieldError("--lycoris_config", message)])

    def attach(self, transformer: torch.nn.Module) -> list[torch.nn.Parameter]:
        from lycoris import LycorisNetwork

        transformer.requires_grad_(False)
        kwargs = network_kwargs(self.config)
        # Over low-precision or quantised weights, add the network's output rather than rebuilding W + dW in the
        # base's dtype, so that the update really trains (and is applied) in fp32.
        # (lycoris' bypass forward leaves DoRA's weight decomposition out, so DoRA keeps the rebuilt weight.)
        low_precision = PRECISIONS[self.options.base_model_precision].dtype not in (None, "float32")
        kwargs.setdefault("bypass_mode", low_precision and not self.config.dora_wd)
        LycorisNetwork.apply_preset(_preset(self.config, self.adapter.family))
        network = LycorisNetwork(transformer, warn_on_unmatched=False, **kwargs)
        if not network.loras:
            raise self._wraps_nothing()
        network.apply_to()
        network.to(dtype=torch.float32)
        network.requires_grad_(True)
        transformer.add_module(MODULE_NAME, network)
        return [param for param in network.parameters() if param.requires_grad]

    def save(self, transformer: torch.nn.Module, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        network = getattr(transformer, MODULE_NAME)
        settings = self.config.model_dump(mode="json", exclude_none=True)
        metadata = {"lycoris_config": json.dumps(settings), "base_model": self.adapter.source,
                    "model_family": self.options.model_family}
        path = folder / WEIGHTS_NAME
        save_tensors(network.state_dict(), path, metadata)
        (folder / CONFIG_NAME).write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")
        return path


def apply_lycoris_weights(transformer: torch.nn.Module, path: Path, multiplier: float = 1.0) -> Any:
    """Re-apply a saved `lycoris_weights.safetensors` (file or folder) to a transformer; returns the network."""
    from lycoris import create_lycoris_from_weights

    path = Path(path) / WEIGHTS_NAME if Path(path).is_dir() else Path(path)
    network, _ = create_lycoris_from_weights(multiplier, str(path), transformer)
    network.apply_to()
    network.to(device=next(transformer.parameters()).device)
    return network
