"""Deep checks of an edit model's training pairs, as the trainer forms them (`tuneforge.data.conditioning`).

An edit image trains only with a reference of the same `pair_key` in every conditioning set it links; the trainer
skips the others. So: no pairs at all is an error, unpaired edits a warning, two images under one key (a.png beside
a.jpg) an error, `reference_strict` pairs of other aspect ratios an error, a conditioning set nothing links an error,
and settings a conditioning set does not use a warning.
"""

from __future__ import annotations

from pathlib import Path

from PIL import UnidentifiedImageError

from tuneforge.errors import FieldError
from tuneforge.options.capabilities import needs_conditioning
from tuneforge.options.dataloader import DatasetConfig, by_pair_key, read_size, same_aspect
from tuneforge.options.registry import TrainingOptions

PAIRS_MEASURED = 1000  # reference_strict pairs whose sizes are compared (the trainer skips any later misfit)
# Settings a conditioning set takes from its edit set (strict: the crop plan too) and so never uses itself.
_UNUSED_BY_CONDITIONING = ("repeats", "probability", "caption_strategy", "instance_prompt")
_UNUSED_BY_STRICT = ("resolution", "resolution_type", "crop", "crop_style", "crop_aspect", "minimum_image_size",
                     "maximum_image_size", "target_downsample_size")


def field_of(entry: DatasetConfig, key: str) -> str:
    return f"--data_backend_config[{entry.id}].{key}"


def sample_of(paths: list[str]) -> str:
    shown = ", ".join(paths[:3])
    return shown + (f" and {len(paths) - 3} more" if len(paths) > 3 else "")


class PairChecker:
    def __init__(self, options: TrainingOptions, images: dict[str, tuple[Path, list[Path]]],
                 errors: list[FieldError], warnings: list[FieldError]) -> None:
        self.options = options
        self.images = images  # dataset id → (folder, its images), of the datasets whose folders are fine
        self.errors = errors
        self.warnings = warnings
        self.paired: dict[str, int] = {}  # edit dataset id → how many of its images train

    def check(self, enabled: list[DatasetConfig]) -> None:
        by_id = {d.id: d for d in enabled}
        keyed = {d.id: self._keyed(d) for d in enabled if d.dataset_type != "text_embeds" and d.id in self.images}
        for entry in enabled:
            links = [by_id[link] for link in entry.conditioning_data if link in by_id]
            if links and entry.id in keyed and all(link.id in keyed for link in links):
                self._check_edits(entry, links, keyed)
        self._check_links(enabled)
        for entry in enabled:
            if entry.dataset_type == "conditioning":
                self._check_unused_settings(entry)

    def _keyed(self, entry: DatasetConfig) -> dict[str, Path]:
        folder, images = self.images[entry.id]
        found, shared = by_pair_key(folder, images)
        if shared:
            self.errors.append(FieldError(field_of(entry, "instance_data_dir"),
                                          f"dataset '{entry.id}': several images share a name ({sample_of(shared)}, "
                                          "e.g. a.png and a.jpg), so pairs would be ambiguous; keep one of each"))
        return found

    def _check_edits(self, entry: DatasetConfig, links: list[DatasetConfig],
                     keyed: dict[str, dict[str, Path]]) -> None:
        edits = keyed[entry.id]
        paired = set(edits).intersection(*(keyed[link.id] for link in links))
        self.paired[entry.id] = len(paired)
        sets = " and ".join(f"'{link.id}'" for link in links)
        field = field_of(links[0], "instance_data_dir")
        if not paired:
            example = sample_of(sorted(edits))
            self.errors.append(FieldError(field, f"dataset '{entry.id}': none of its {len(edits)} images has a "
                                                 f"reference of the same name in {sets} (e.g. {example}); name each "
                                                 "pair alike"))
            return
        unpaired = sorted(set(edits) - paired)
        if unpaired:
            self.warnings.append(FieldError(field, f"dataset '{entry.id}': {len(unpaired)} of {len(edits)} images "
                                                   f"have no reference of the same name in {sets} "
                                                   f"({sample_of(unpaired)}); they are skipped"))
        for link in links:
            extra = sorted(set(keyed[link.id]) - set(edits))
            if extra:
                self.warnings.append(FieldError(field_of(link, "instance_data_dir"),
                                                f"dataset '{link.id}': {len(extra)} reference images have no image of "
                                                f"the same name in '{entry.id}' ({sample_of(extra)}); unused"))
            if link.conditioning_type == "reference_strict":
                pairs = [(edits[key], keyed[link.id][key]) for key in sorted(paired)[:PAIRS_MEASURED]]
                self._check_aspects(link, pairs)

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
            self.errors.append(FieldError(field_of(reference, "conditioning_type"),
                                          f"dataset '{reference.id}': reference_strict crops each pair alike, but "
                                          f"{len(mismatched)} pairs differ in aspect ratio ({sample_of(mismatched)}); "
                                          "use conditioning_type reference_loose, or crop the pairs alike"))

    def _check_links(self, enabled: list[DatasetConfig]) -> None:
        linked = {link for entry in enabled for link in entry.conditioning_data}
        for entry in enabled:
            if entry.dataset_type == "conditioning" and entry.id not in linked:
                self.errors.append(FieldError(field_of(entry, "id"), f"dataset '{entry.id}' is a conditioning "
                                                                     "dataset no image dataset names in its "
                                                                     "conditioning_data; link it or remove it"))
        most = max((len(e.conditioning_data) for e in enabled if e.dataset_type == "image"), default=0)
        edit_model = needs_conditioning(self.options.model_family, self.options.model_flavour)
        if edit_model and most > 1 and self.options.conditioning_multidataset_sampling == "combined":
            self.errors.append(FieldError("--conditioning_multidataset_sampling", f"combined feeds {most} references "
                                          "at once, but an edit pipeline (FluxKontextPipeline) takes one: use random, "
                                          "which draws one conditioning set per batch"))

    def _check_unused_settings(self, entry: DatasetConfig) -> None:
        unused = list(_UNUSED_BY_CONDITIONING)
        if entry.conditioning_type == "reference_strict":
            unused += _UNUSED_BY_STRICT
        given = sorted(key for key in unused if key in entry.model_fields_set)
        if given:
            how = ("crops each reference with its edit image's plan" if entry.conditioning_type == "reference_strict"
                   else "takes these from the edit dataset")
            self.warnings.append(FieldError(field_of(entry, given[0]), f"dataset '{entry.id}': {', '.join(given)} "
                                                                       f"not used: a conditioning set {how}"))
