"""Model adapters, one per family (see `base.ModelAdapter`)."""

from __future__ import annotations

from typing import Any

TRAINABLE_FAMILIES = ("pixart_sigma",)  # families with an adapter below; the options accept more


def get_adapter(options: Any, device: Any):
    """The adapter for `options.model_family` (imports torch; trainer-side only)."""
    family = options.model_family
    if family == "pixart_sigma":
        from tuneforge.models.pixart_sigma import PixArtSigmaAdapter

        return PixArtSigmaAdapter(options, device)
    raise ValueError(f"model_family={family!r} has no training adapter yet; supported: {', '.join(TRAINABLE_FAMILIES)}")
