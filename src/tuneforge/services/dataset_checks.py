"""Deep checks of the datasets a dataloader file names: folders, images, captions, pairs, cache folders.

The datasets' paths are already resolved (absolute, defaults filled in). Reads the file system only; writes
nothing. Problems name the dataset and the fix.
"""

from __future__ import annotations

import os
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from tuneforge.errors import FieldError
from tuneforge.options.dataloader import IMAGE_SUFFIXES, DatasetConfig, list_images, pair_key
from tuneforge.options.registry import TrainingOptions
from tuneforge.services.config_files import writable_problem

IMAGES_OPENED = 20  # enough to catch a folder of broken files without reading a whole dataset


def _field(entry: DatasetConfig, key: str) -> str:
    return f"--data_backend_config[{entry.id}].{key}"


def _sample(paths: list[str]) -> str:
    shown = ", ".join(paths[:3])
    return shown + (f" and {len(paths) - 3} more" if len(paths) > 3 else "")


class DatasetChecker:
    """Collects errors and warnings for one dataloader; `images` maps dataset id → its image files."""

    def __init__(self, options: TrainingOptions) -> None:
        self.options = options
        self.errors: list[FieldError] = []
        self.warnings: list[FieldError] = []
        self.images: dict[str, tuple[Path, list[Path]]] = {}

    def check(self, datasets: list[DatasetConfig]) -> None:
        enabled = [d for d in datasets if not d.disabled]
        for entry in enabled:
            if entry.dataset_type == "text_embeds":
                self._check_writable(entry, "cache_dir", entry.cache_dir)
                continue
            self._check_folder(entry)
            self._check_writable(entry, "cache_dir_vae", entry.cache_dir_vae)
        by_id = {d.id: d for d in enabled}
        for entry in enabled:
            for link in entry.conditioning_data:
                if link in by_id:
                    self._check_pairs(entry, by_id[link])
        self._check_size(enabled)

    def _check_folder(self, entry: DatasetConfig) -> None:
        assert entry.instance_data_dir is not None
        folder = Path(entry.instance_data_dir)
        field = _field(entry, "instance_data_dir")
        if not folder.is_dir():
            self.errors.append(FieldError(field, f"dataset '{entry.id}': folder {folder} not found; create it "
                                                 "and add images, or fix instance_data_dir"))
            return
        if not os.access(folder, os.R_OK | os.X_OK):
            self.errors.append(FieldError(field, f"dataset '{entry.id}': folder {folder} is not readable"))
            return
        images = list_images(folder)
        if not images:
            kinds = ", ".join(sorted(e.lstrip(".") for e in IMAGE_SUFFIXES))
            self.errors.append(FieldError(field, f"dataset '{entry.id}': {folder} holds no images ({kinds})"))
            return
        self.images[entry.id] = (folder, images)
        self._check_readable(entry, folder, images[:IMAGES_OPENED])
        if entry.caption_strategy == "textfile" and entry.dataset_type == "image":
            self._check_captions(entry, folder, images)

    def _check_readable(self, entry: DatasetConfig, folder: Path, images: list[Path]) -> None:
        broken = []
        for path in images:
            try:
                with Image.open(path) as image:
                    image.verify()
            except (OSError, UnidentifiedImageError, SyntaxError, ValueError):
                broken.append(str(path.relative_to(folder)))
        if broken:
            self.errors.append(FieldError(_field(entry, "instance_data_dir"),
                                          f"dataset '{entry.id}': not readable as images: {_sample(broken)}; "
                                          "replace or remove them"))

    def _check_captions(self, entry: DatasetConfig, folder: Path, images: list[Path]) -> None:
        missing = [str(p.relative_to(folder)) for p in images if not _has_caption(p)]
        if missing:
            self.errors.append(FieldError(_field(entry, "caption_strategy"),
                                          f"dataset '{entry.id}': caption_strategy=textfile but {len(missing)} of "
                                          f"{len(images)} images have no non-empty .txt caption beside them "
                                          f"({_sample(missing)}); add the .txt files or use caption_strategy "
                                          "filename or instanceprompt"))

    def _check_pairs(self, entry: DatasetConfig, reference: DatasetConfig) -> None:
        """Kontext pairs match by relative file name (without extension)."""
        if entry.id not in self.images or reference.id not in self.images:
            return
        edits = _stems(*self.images[entry.id])
        references = _stems(*self.images[reference.id])
        unpaired = sorted(edits - references)
        strict = reference.conditioning_type == "reference_strict"
        if unpaired:
            message = (f"dataset '{entry.id}': {len(unpaired)} of {len(edits)} images have no reference image "
                       f"of the same name in '{reference.id}' ({_sample(unpaired)}); add them"
                       + (" or use conditioning_type reference_loose" if strict else " or they train unpaired"))
            target = self.errors if strict else self.warnings
            target.append(FieldError(_field(reference, "instance_data_dir"), message))
        extra = sorted(references - edits)
        if extra:
            self.warnings.append(FieldError(_field(reference, "instance_data_dir"),
                                            f"dataset '{reference.id}': {len(extra)} reference images have no "
                                            f"image of the same name in '{entry.id}' ({_sample(extra)}); unused"))

    def _check_writable(self, entry: DatasetConfig, key: str, value: str | None) -> None:
        if not value:
            return
        problem = writable_problem(Path(value))
        if problem:
            self.errors.append(FieldError(_field(entry, key), f"dataset '{entry.id}': {problem}; choose a "
                                                              f"writable {key}"))

    def _check_size(self, enabled: list[DatasetConfig]) -> None:
        total = sum(len(self.images[d.id][1]) for d in enabled if d.dataset_type == "image" and d.id in self.images)
        batch = self.options.train_batch_size * self.options.gradient_accumulation_steps * self.options.num_processes
        if 0 < total < batch:
            self.warnings.append(FieldError("--train_batch_size", f"only {total} training images for an effective "
                                            f"batch of {batch}: lower the batch size or add images"))


def _has_caption(image: Path) -> bool:
    caption = image.with_suffix(".txt")
    try:
        return caption.is_file() and bool(caption.read_text(encoding="utf-8", errors="replace").strip())
    except OSError:
        return False


def _stems(folder: Path, images: list[Path]) -> set[str]:
    return {pair_key(folder, p) for p in images}
