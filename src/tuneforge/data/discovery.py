"""Find the images of a local dataset and their captions; unreadable files are skipped and reported."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import UnidentifiedImageError

from tuneforge.options.dataloader import list_images, read_size


@dataclass
class ImageItem:
    path: Path
    caption: str
    dataset_id: str
    width: int
    height: int


@dataclass
class Discovery:
    dataset_id: str
    items: list[ImageItem] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)
    warnings: list[str] = field(default_factory=list)


class DatasetError(Exception):
    """A dataset cannot be used at all (missing folder, no usable image); the message names the fix."""


def caption_for(path: Path, dataset: Any, discovery: Discovery) -> str:
    strategy = dataset.caption_strategy
    if strategy == "instanceprompt":
        return dataset.instance_prompt or ""
    if strategy == "textfile":
        text_file = path.with_suffix(".txt")
        if text_file.is_file():
            return text_file.read_text(encoding="utf-8", errors="replace").strip()
        discovery.warnings.append(f"{path.name}: no {text_file.name}; using the file name as caption")
    return path.stem.replace("_", " ").strip()


def discover(dataset: Any) -> Discovery:
    """All images in `dataset.instance_data_dir` (recursively, sorted for a stable order)."""
    root = Path(dataset.instance_data_dir or "").expanduser()
    if not root.is_dir():
        raise DatasetError(f"dataset '{dataset.id}': instance_data_dir {root} is not a folder; create it or fix "
                           "the path")
    result = Discovery(dataset.id)
    for path in list_images(root):
        try:
            width, height = read_size(path)
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            result.skipped.append((str(path), f"unreadable image: {exc.__class__.__name__}"))
            continue
        try:  # a conditioning image (an edit model's reference) has no caption of its own
            caption = "" if dataset.dataset_type == "conditioning" else caption_for(path, dataset, result)
        except OSError as exc:
            reason = f"unreadable caption {path.with_suffix('.txt').name}: {exc.strerror or exc}"
            result.skipped.append((str(path), reason))
            continue
        result.items.append(ImageItem(path, caption, dataset.id, width, height))
    return result
