"""Model families and their flavours: the hub id each flavour loads by default."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Flavour:
    name: str
    hub_id: str
    pipeline_class: str  # the `_class_name` of this flavour's diffusers folder
    needs_conditioning: bool = False  # edit models train on (edited, reference) pairs


@dataclass(frozen=True)
class Family:
    name: str
    default_flavour: str
    flavours: dict[str, Flavour]

    @property
    def pipeline_classes(self) -> tuple[str, ...]:
        """`_class_name` values a local diffusers folder of this family may have."""
        return tuple(dict.fromkeys(f.pipeline_class for f in self.flavours.values()))


def _by_name(*flavours: Flavour) -> dict[str, Flavour]:
    return {f.name: f for f in flavours}


_PIXART = "PixArtSigmaPipeline"

FAMILIES: dict[str, Family] = {
    "pixart_sigma": Family("pixart_sigma", "900M-1024-v0.6", _by_name(
        Flavour("900M-1024-v0.6", "terminusresearch/pixart-900m-1024-ft-v0.6", _PIXART),
        Flavour("900M-1024-v0.7-stage1", "terminusresearch/pixart-900m-1024-ft-v0.7-stage1", _PIXART),
        Flavour("900M-1024-v0.7-stage2", "terminusresearch/pixart-900m-1024-ft-v0.7-stage2", _PIXART),
        Flavour("600M-512", "PixArt-alpha/PixArt-Sigma-XL-2-512-MS", _PIXART),
        Flavour("600M-1024", "PixArt-alpha/PixArt-Sigma-XL-2-1024-MS", _PIXART),
        Flavour("600M-2048", "PixArt-alpha/PixArt-Sigma-XL-2-2K-MS", _PIXART),
    )),
    "flux": Family("flux", "dev", _by_name(
        Flavour("dev", "black-forest-labs/FLUX.1-dev", "FluxPipeline"),
        Flavour("schnell", "black-forest-labs/FLUX.1-schnell", "FluxPipeline"),
        Flavour("kontext", "black-forest-labs/FLUX.1-Kontext-dev", "FluxKontextPipeline", needs_conditioning=True),
    )),
}

FamilyName = Literal[tuple(FAMILIES)]  # type: ignore[valid-type]  # one list of family names: FAMILIES

QUANTISED_PRECISIONS = ("int8-quanto", "fp8-quanto", "int4-quanto", "nf4-bnb")


def flavour_of(family: str, flavour: str | None) -> Flavour | None:
    """The flavour (the family default when None), or None when either name is unknown."""
    fam = FAMILIES.get(family)
    if fam is None:
        return None
    return fam.flavours.get(flavour or fam.default_flavour)


def needs_conditioning(family: str, flavour: str | None) -> bool:
    found = flavour_of(family, flavour)
    return found is not None and found.needs_conditioning


def known_hub_ids() -> dict[str, tuple[str, str]]:
    """hub id → (family, flavour), to spot a base model that contradicts the chosen flavour."""
    return {f.hub_id: (fam.name, f.name) for fam in FAMILIES.values() for f in fam.flavours.values()}
