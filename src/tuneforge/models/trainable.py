"""What a run trains, as one object built from the options: a full fine-tune, a peft LoRA or a LyCORIS network.

It attaches to the transformer (after quantisation, if any), writes the run's output, and explains why a
checkpoint does not fit. The trainer saves and restores the trainable tensors themselves (every parameter that
requires grad) the same way for all kinds, so the loop and the checkpoints never branch on the kind.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import torch

from tuneforge.models.files import share


class Trainable(ABC):
    #: where the final output goes: None for files in the output folder itself, else a sub-folder of it
    output_folder: str | None = None

    def __init__(self, options: Any, adapter: Any) -> None:
        self.options = options
        self.adapter = adapter

    @abstractmethod
    def attach(self, transformer: torch.nn.Module) -> list[torch.nn.Parameter]:
        """Make the transformer trainable this way; returns the parameters the optimizer updates."""

    def check(self, skeleton: torch.nn.Module) -> None:
        """Raise `Invalid` when the layers this would train do not exist (checked on a weightless transformer
        before data is cached). A full fine-tune trains every layer there is."""
        return None

    @abstractmethod
    def save(self, transformer: torch.nn.Module, folder: Path) -> Path:
        """Write the output (weights others can load) into `folder`; returns the main file or folder."""

    def save_in_checkpoint(self, transformer: torch.nn.Module, folder: Path) -> None:
        """Adapters put a usable copy of themselves into every checkpoint; a full model would be too large."""
        self.save(transformer, folder)

    def explain_mismatch(self, saved: dict[str, torch.Tensor], current: dict[str, torch.Tensor]) -> str | None:
        """Why checkpointed tensors do not fit this run, when the kind can tell; None otherwise."""
        return None


class FullFineTune(Trainable):
    output_folder = "pipeline"

    def attach(self, transformer: torch.nn.Module) -> list[torch.nn.Parameter]:
        transformer.requires_grad_(True)
        return list(transformer.parameters())

    def save(self, transformer: torch.nn.Module, folder: Path) -> Path:
        self.adapter.save_full(transformer, folder)
        share(folder)
        return folder

    def save_in_checkpoint(self, transformer: torch.nn.Module, folder: Path) -> None:
        return None


def make_trainable(options: Any, lycoris: Any, adapter: Any) -> Trainable:
    if options.model_type == "full":
        return FullFineTune(options, adapter)
    if options.lora_type == "lycoris":
        from tuneforge.models.lycoris import LycorisTrainable

        return LycorisTrainable(options, adapter, lycoris)
    from tuneforge.models.lora import PeftLora

    return PeftLora(options, adapter)
