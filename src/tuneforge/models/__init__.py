"""Model adapters, one per family or flavour (see `base.ModelAdapter`), named by the capability table."""

from __future__ import annotations

import importlib

import torch

from tuneforge.errors import FieldError, Invalid
from tuneforge.options.capabilities import flavour_of
from tuneforge.options.registry import TrainingOptions


def get_adapter(options: TrainingOptions, device: torch.device):
    """The adapter the capability table names for the run's family and flavour."""
    flavour = flavour_of(options.model_family, options.model_flavour)
    if flavour is None or flavour.adapter is None:
        message = f"{options.model_family} {options.model_flavour} has no training adapter"
        raise Invalid(message, [FieldError("--model_flavour", message)])
    module, _, name = flavour.adapter.partition(":")
    return getattr(importlib.import_module(module), name)(options, device)
