"""The options registry, the dataloader schema and the run-folder contract (torch-free)."""

from tuneforge.options.families import FAMILIES, Family, Flavour, flavour_of
from tuneforge.options.registry import TrainingOptions, WebhookTarget

__all__ = ["FAMILIES", "Family", "Flavour", "TrainingOptions", "WebhookTarget", "flavour_of"]
