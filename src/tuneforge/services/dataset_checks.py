"""Deep checks of the datasets a dataloader file names: folders, images, captions, pairs, cache folders.

The datasets' paths are already resolved (absolute, defaults filled in). Reads the file system only; writes
nothing. Problems name the dataset and the fix.
"""

from __future__ import annotations

import os
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from tuneforge.errors import FieldError
from tuneforge.options.dataloader import IMAGE_SUFFIXES, DatasetConfig, list_images, pair_key, read_size, same_aspect
from tuneforge.options.registry import TrainingOptions
from tuneforge.services.config_files import writable_problem

IMAGES_OPENED = 20  # enough to catch a folder of broken files without reading a whole dataset
PAIRS_MEASURED = 1000  # reference_strict pairs whose sizes are compared (the trainer skips any later misfit)


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
        self._check_unreferenced(enabled)
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
        """Edit images pair with references of the same relative name (`pair_key`, as the trainer pairs them); the
        trainer skips an edit image without one. `reference_strict` pairs must share an aspect ratio."""
        if entry.id not in self.images or reference.id not in self.images:
            return
        edits = _by_key(*self.images[entry.id])
        references = _by_key(*self.images[reference.id])
        field = _field(reference, "instance_data_dir")
        paired = sorted(edits.keys() & references.keys())
        if not paired:
            self.errors.append(FieldError(field, f"dataset '{entry.id}': none of its {len(edits)} images has a "
                                                 f"reference of the same name in '{reference.id}' (e.g. "
                                                 f"{_sample(sorted(edits))}); name each pair alike"))
            return
        unpaired = sorted(edits.keys() - references.keys())
        if unpaired:
            self.warnings.append(FieldError(field, f"dataset '{entry.id}': {len(unpaired)} of {len(edits)} images "
                                                   f"have no reference of the same name in '{reference.id}' "
                                                   f"({_sample(unpaired)}); they are skipped"))
        extra = sorted(references.keys() - edits.keys())
        if extra:
            self.warnings.append(FieldError(field, f"dataset '{reference.id}': {len(extra)} reference images have no "
                                                   f"image of the same name in '{entry.id}' ({_sample(extra)}); "
                                                   "unused"))
        if reference.conditioning_type == "reference_strict":
            self._check_aspects(reference, [(edits[key], references[key]) for key in paired[:PAIRS_MEASURED]])

    def _check_aspects(self, reference: DatasetConfig, pairs: list[tuple[Path, Path]]) -> None:
        mismatched = []
        for edit, ref in pairs:
            try:
                sizes = read_size(edit), read_size(ref)
            except (OSError, UnidentifiedImageError, SyntaxError, ValueError):
                continue  # an unreadable file is reported by the readability check
            if not same_aspect(*sizes):
                mismatched.append(f"{edit.name} {sizes[0][0]}x{sizes[0][1]} vs {sizes[1][0]}x{sizes[1][1]}")
        if mismatched:
            self.errors.append(FieldError(_field(reference, "conditioning_type"),
                                          f"dataset '{reference.id}': reference_strict crops each pair alike, but "
                                          f"{len(mismatched)} pairs differ in aspect ratio ({_sample(mismatched)}); "
                                          "use conditioning_type reference_loose, or crop the pairs alike"))

    def _check_unreferenced(self, enabled: list[DatasetConfig]) -> None:
        linked = {link for entry in enabled for link in entry.conditioning_data}
        for entry in enabled:
            if entry.dataset_type == "conditioning" and entry.id not in linked:
                self.errors.append(FieldError(_field(entry, "id"), f"dataset '{entry.id}' is a conditioning "
                                                                   "dataset no image dataset names in its "
                                                                   "conditioning_data; link it or remove it"))

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


def _by_key(folder: Path, images: list[Path]) -> dict[str, Path]:
    return {pair_key(folder, p): p for p in images}
