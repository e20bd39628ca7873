"""Load an image and apply its plan: EXIF rotation, RGB, resize, crop, to a tensor in [-1, 1]."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from tuneforge.data.buckets import Plan


def load_image(path: Path, plan: Plan) -> Image.Image:
    """The image as training sees it: EXIF-rotated, RGB, resized and cropped by its plan; raises OSError for
    truncated or unreadable files."""
    with Image.open(path) as image:
        image.load()
        image = ImageOps.exif_transpose(image).convert("RGB")
    return image.resize(plan.resize, Image.Resampling.LANCZOS).crop(plan.box)


def load_pixels(path: Path, plan: Plan) -> torch.Tensor:
    """(3, H, W) float tensor in [-1, 1]."""
    image = load_image(path, plan)
    array = 2.0 * (np.asarray(image, dtype=np.float32) / 255.0) - 1.0  # as diffusers' image processor computes it
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()
