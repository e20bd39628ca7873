"""What a client may set: the options registry and the capability table, as published by `GET /api/configs/options`."""

from __future__ import annotations

from typing import Any

from tuneforge.options import names
from tuneforge.options.capabilities import FAMILIES
from tuneforge.options.dataloader import DatasetConfig


def options_catalog() -> dict[str, Any]:
    options = names.metadata()
    return {"options": options, "count": len(options), "families": _families(),
            "dataloader_keys": list(DatasetConfig.model_fields)}


def _families() -> dict[str, Any]:
    return {
        family.name: {
            "default_flavour": family.default_flavour,
            "flavours": {f.name: f.hub_id for f in family.flavours.values()},
            "trainable_flavours": [f.name for f in family.flavours.values() if f.adapter is not None],
            "model_types": list(family.model_types),
            "lora_types": list(family.lora_types),
            "base_model_precisions": list(family.precisions),
            "default_resolution": {f.name: f.resolution for f in family.flavours.values()},
        }
        for family in FAMILIES.values()
    }
