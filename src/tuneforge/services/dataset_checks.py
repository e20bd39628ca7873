"""Deep checks of the datasets a dataloader file names: folders, images, captions, pairs, cache folders.

The datasets' paths are already resolved (absolute, defaults filled in). Reads the file system only; writes
nothing. Problems name the dataset and the fix.
"""

from __future__ import annotations

import os
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from tuneforge.errors import FieldError
from tuneforge.options.dataloader import IMAGE_SUFFIXES, DatasetConfig, list_images
from tuneforge.options.registry import TrainingOptions
from tuneforge.services.config_files import writable_problem
from tuneforge.services.pair_checks import PairChecker, field_of, sample_of

IMAGES_OPENED = 20  # enough to catch a folder of broken files without reading a whole dataset


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
        pairs = PairChecker(self.options, self.images, self.errors, self.warnings)
        pairs.check(enabled)
        self._check_size(enabled, pairs.paired)

    def _check_folder(self, entry: DatasetConfig) -> None:
        assert entry.instance_data_dir is not None
        folder = Path(entry.instance_data_dir)
        field = field_of(entry, "instance_data_dir")
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
            self.errors.append(FieldError(field_of(entry, "instance_data_dir"),
                                          f"dataset '{entry.id}': not readable as images: {sample_of(broken)}; "
                                          "replace or remove them"))

    def _check_captions(self, entry: DatasetConfig, folder: Path, images: list[Path]) -> None:
        missing = [str(p.relative_to(folder)) for p in images if not _has_caption(p)]
        if missing:
            self.errors.append(FieldError(field_of(entry, "caption_strategy"),
                                          f"dataset '{entry.id}': caption_strategy=textfile but {len(missing)} of "
                                          f"{len(images)} images have no non-empty .txt caption beside them "
                                          f"({sample_of(missing)}); add the .txt files or use caption_strategy "
                                          "filename or instanceprompt"))

    def _check_writable(self, entry: DatasetConfig, key: str, value: str | None) -> None:
        if not value:
            return
        problem = writable_problem(Path(value))
        if problem:
            self.errors.append(FieldError(field_of(entry, key), f"dataset '{entry.id}': {problem}; choose a "
                                                              f"writable {key}"))

    def _check_size(self, enabled: list[DatasetConfig], paired: dict[str, int]) -> None:
        """Enough training images for one batch (an edit dataset counts its paired images only)."""
        total = sum(paired.get(d.id, len(self.images[d.id][1])) for d in enabled
                    if d.dataset_type == "image" and d.id in self.images)
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



