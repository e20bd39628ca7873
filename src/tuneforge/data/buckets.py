"""Aspect buckets and crops: where each image is resized and cropped to before it is encoded.

Units: `resolution_type=pixel` — resolution is the shorter edge in pixels; `area` — megapixels
(1.0 = 1024x1024); `pixel_area` — pixels, read as the area of a square of that edge. `minimum_image_size`,
`maximum_image_size` and `target_downsample_size` use the same unit as the resolution (edge pixels for pixel
and pixel_area, megapixels for area).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any

MEGAPIXEL = 1024 * 1024
CLOSEST_ASPECTS = (1.0, 4 / 3, 3 / 4, 3 / 2, 2 / 3, 16 / 9, 9 / 16, 2.0, 0.5)


@dataclass(frozen=True)
class Plan:
    """Resize the (EXIF-rotated) image to `resize`, then crop `box` (left, top, right, bottom) of it."""

    resize: tuple[int, int]
    box: tuple[int, int, int, int]

    @property
    def bucket(self) -> tuple[int, int]:
        return (self.box[2] - self.box[0], self.box[3] - self.box[1])

    def key(self) -> str:
        return f"resize={self.resize[0]}x{self.resize[1]};box={','.join(map(str, self.box))}"


class TooSmall(Exception):
    """The image is below `minimum_image_size`."""


def _measure(width: int, height: int, kind: str) -> float:
    return width * height / MEGAPIXEL if kind == "area" else min(width, height)


def _target_area(resolution: float, kind: str) -> float:
    return resolution * MEGAPIXEL if kind == "area" else (resolution * resolution if kind == "pixel_area" else 0)


def _step(edge: float) -> int:
    """Bucket edges are multiples of 64 at real sizes, 16 for tiny test images (8x VAE, patch 2)."""
    return 64 if edge >= 256 else 16


def _round(value: float, step: int) -> int:
    return max(step, int(round(value / step)) * step)


def bucket_size(width: int, height: int, resolution: float, kind: str, aspect: str) -> tuple[int, int]:
    edge = resolution if kind != "area" else math.sqrt(resolution * MEGAPIXEL)
    step = _step(edge)
    if aspect == "square":
        size = _round(edge, step)
        return size, size
    ratio = width / height
    if aspect == "closest":
        ratio = min(CLOSEST_ASPECTS, key=lambda a: abs(math.log(a / ratio)))
    if kind == "pixel":
        short = edge
        w, h = (short * ratio, short) if ratio >= 1 else (short, short / ratio)
    else:
        area = _target_area(resolution, kind)
        w, h = math.sqrt(area * ratio), math.sqrt(area / ratio)
    return _round(w, step), _round(h, step)


def _offset(spare: int, style: str, seed_text: str) -> int:
    if spare <= 0 or style == "corner":
        return 0
    if style == "center":
        return spare // 2
    # "random", but fixed per file so that the cached latent is reproducible and its key stable
    return int(hashlib.sha256(seed_text.encode()).hexdigest()[:8], 16) % (spare + 1)


def plan_image(width: int, height: int, dataset: Any, defaults: Any, name: str) -> Plan:
    """Decide resize and crop for one image of `dataset` (falling back to the run's resolution options)."""
    kind = dataset.resolution_type or defaults.resolution_type
    resolution = dataset.resolution or defaults.resolution
    if dataset.minimum_image_size and _measure(width, height, kind) < dataset.minimum_image_size:
        raise TooSmall(f"{width}x{height} is below minimum_image_size {dataset.minimum_image_size:g} ({kind})")
    if dataset.maximum_image_size and _measure(width, height, kind) > dataset.maximum_image_size:
        # Oversized: shrink to target_downsample_size first (the crop then takes a larger share of the image).
        target = dataset.target_downsample_size or dataset.maximum_image_size
        scale = math.sqrt(target / _measure(width, height, kind)) if kind == "area" else (
            target / _measure(width, height, kind))
        width, height = max(1, round(width * scale)), max(1, round(height * scale))
    aspect = dataset.crop_aspect if dataset.crop else "preserve"
    bucket_w, bucket_h = bucket_size(width, height, resolution, kind, aspect)
    if not dataset.crop:
        return Plan((bucket_w, bucket_h), (0, 0, bucket_w, bucket_h))  # slight stretch to the bucket
    cover = max(bucket_w / width, bucket_h / height)  # smallest resize that covers the bucket
    resize = (max(bucket_w, math.ceil(width * cover)), max(bucket_h, math.ceil(height * cover)))
    left = _offset(resize[0] - bucket_w, dataset.crop_style, name + "|x")
    top = _offset(resize[1] - bucket_h, dataset.crop_style, name + "|y")
    return Plan(resize, (left, top, left + bucket_w, top + bucket_h))
