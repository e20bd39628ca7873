"""From dataset configs to cached training samples: discover, pair, plan, encode what is missing.

The trainer calls `discover_all`, then `cache_latents` and `cache_text` (each rank encodes its share of the
missing entries; the trainer waits for all ranks, then calls `finalize` on every rank so that all agree on the
sample list). After that the training loop reads only cached tensors.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from tuneforge.data.buckets import Plan, TooSmall, plan_image
from tuneforge.data.cache import TensorCache, entry_key, file_digest
from tuneforge.data.conditioning import Partners, Reference
from tuneforge.data.discovery import DatasetError, discover
from tuneforge.data.images import load_pixels

Progress = Callable[[int, int], None]
LATENTS_PER_BATCH = 8


@dataclass
class Sample:
    dataset_id: str
    path: Path
    caption: str
    plan: Plan
    latent_key: str = ""
    text_key: str = ""
    references: list[Reference] = field(default_factory=list)  # one per linked conditioning dataset, in order

    @property
    def bucket(self) -> tuple[int, int]:
        return self.plan.bucket

    @property
    def batch_key(self) -> tuple:
        """Samples that can share a batch: same size, and references of the same sizes."""
        return (self.plan.bucket, *(reference.plan.bucket for reference in self.references))


@dataclass
class Prepared:
    datasets: dict[str, Any]  # id -> DatasetConfig (enabled image datasets)
    samples: dict[str, list[Sample]]
    latent_caches: dict[str, TensorCache]  # image and conditioning dataset id -> its latent cache
    text_cache: TensorCache
    skipped: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    encoded_latents: int = 0
    encoded_texts: int = 0
    prompt_keys: dict[str, str] = field(default_factory=dict)  # extra prompts (validation, "") -> text key
    text_batch_size: int = 32  # the text_embeds dataset's write_batch_size

    def all_samples(self) -> list[Sample]:
        return [s for items in self.samples.values() for s in items]

    @property
    def pairs(self) -> int:
        return sum(1 for sample in self.all_samples() if sample.references)


def _enabled(datasets: list[Any], kind: str) -> list[Any]:
    return [d for d in datasets if d.dataset_type == kind and not d.disabled]


def _cache_dirs(options: Any, datasets: list[Any], output: Path) -> tuple[dict[str, Path], Path]:
    text = next((d for d in _enabled(datasets, "text_embeds") if d.default), None)
    text_dir = Path(text.cache_dir) if text and text.cache_dir else output / "cache" / "text_embeds"
    latent_dirs = {}
    for d in _enabled(datasets, "image") + _enabled(datasets, "conditioning"):
        base = d.cache_dir_vae or (Path(options.cache_dir_vae) / d.id if options.cache_dir_vae else None)
        latent_dirs[d.id] = Path(base) if base else output / "cache" / "vae" / d.id
    return latent_dirs, text_dir


def discover_all(options: Any, datasets: list[Any], output_dir: Path, progress: Progress | None = None) -> Prepared:
    """Find images, captions and references, plan every crop; raises DatasetError when a dataset has nothing usable.

    Caches without a configured folder live in `output_dir/cache` (the run's resolved output folder)."""
    latent_dirs, text_dir = _cache_dirs(options, datasets, Path(output_dir))
    images = _enabled(datasets, "image")
    prepared = Prepared({d.id: d for d in images}, {}, {k: TensorCache(v) for k, v in latent_dirs.items()},
                        TensorCache(text_dir))
    text = next((d for d in _enabled(datasets, "text_embeds") if d.default), None)
    if text is not None:
        prepared.text_batch_size = text.write_batch_size
    by_id = {d.id: d for d in _enabled(datasets, "conditioning")}
    partners: dict[str, Partners] = {}
    for number, dataset in enumerate(images, 1):
        linked = []
        for link in dataset.conditioning_data:
            if link not in partners:
                partners[link] = Partners(by_id[link])
                prepared.skipped += partners[link].skipped
            linked.append(partners[link])
        prepared.samples[dataset.id] = _samples(options, dataset, linked, prepared)
        if progress:
            progress(number, len(images))
    return prepared


def _samples(options: Any, dataset: Any, linked: list[Partners], prepared: Prepared) -> list[Sample]:
    found = discover(dataset)
    prepared.skipped += found.skipped
    prepared.warnings += found.warnings
    root = Path(dataset.instance_data_dir).expanduser()
    samples = []
    for item in found.items:
        try:
            plan = plan_image(item.width, item.height, dataset, options, item.path.name)
        except TooSmall as exc:
            prepared.skipped.append((str(item.path), str(exc)))
            continue
        references = [partner.reference_for(item, root, plan, options) for partner in linked]
        missing = [why for why in references if isinstance(why, str)]
        if missing:
            prepared.skipped.append((str(item.path), missing[0]))
            continue
        samples.append(Sample(dataset.id, item.path, item.caption, plan, references=references))
    if not samples:
        reasons = [f"{Path(p).name}: {r}" for p, r in prepared.skipped if Path(p).is_relative_to(root)]
        why = f" (skipped {len(reasons)}: {'; '.join(reasons[:3])})" if reasons else ""
        raise DatasetError(f"dataset '{dataset.id}': no usable images in {dataset.instance_data_dir}{why}. "
                           "Add images, or lower minimum_image_size")
    return samples


def cache_latents(prepared: Prepared, adapter: Any, rank: int = 0, world: int = 1, batch_size: int = LATENTS_PER_BATCH,
                  progress: Progress | None = None) -> None:
    """Encode this rank's share of the images and references whose latents are not cached; unreadable files are
    skipped. Targets are posterior samples (seeded by their key); references are the posterior mode, as an edit
    pipeline encodes them."""
    vae_id = adapter.vae_fingerprint()
    # Every entry once, in the same order on every rank; each rank then encodes its share of those not cached.
    # (Deciding the shares after looking at the cache would shift them while a faster rank is already writing.)
    entries: dict[tuple[str, str], Sample | Reference] = {}
    for sample in prepared.all_samples():
        sample.latent_key = entry_key(file_digest(sample.path), vae_id, sample.plan.key())
        entries.setdefault((sample.dataset_id, sample.latent_key), sample)
        for reference in sample.references:
            reference.latent_key = entry_key(file_digest(reference.path), vae_id, reference.plan.key(), "reference")
            entries.setdefault((reference.dataset_id, reference.latent_key), reference)
    ordered = sorted(entries.values(), key=lambda e: (e.dataset_id, e.plan.bucket, isinstance(e, Reference)))
    mine = [e for e in ordered[rank::world] if not prepared.latent_caches[e.dataset_id].has(e.latent_key)]
    groups: dict[tuple[str, tuple[int, int], bool], list[Sample | Reference]] = defaultdict(list)
    for entry in mine:
        groups[(entry.dataset_id, entry.plan.bucket, isinstance(entry, Reference))].append(entry)
    done = 0
    for (dataset_id, _, is_reference), entries in groups.items():
        for start in range(0, len(entries), batch_size):
            chunk = entries[start:start + batch_size]
            prepared.encoded_latents += _encode(prepared, adapter, dataset_id, chunk, is_reference)
            done += len(chunk)
            if progress:
                progress(done, len(mine))


def _encode(prepared: Prepared, adapter: Any, dataset_id: str, chunk: list[Sample | Reference],
            is_reference: bool) -> int:
    loaded, pixels = [], []
    for entry in chunk:
        try:
            pixels.append(load_pixels(entry.path, entry.plan))
            loaded.append(entry)
        except (OSError, ValueError, SyntaxError) as exc:
            prepared.skipped.append((str(entry.path), f"unreadable image: {exc}"))
    if not loaded:
        return 0
    if is_reference:
        latents = adapter.encode_references(torch.stack(pixels))
    else:  # the posterior sample is seeded by the entry's key: a cached latent never depends on run order
        generators = [torch.Generator().manual_seed(int(e.latent_key[:15], 16)) for e in loaded]
        latents = adapter.encode_images(torch.stack(pixels), generators)
    for entry, latent in zip(loaded, latents, strict=True):
        prepared.latent_caches[dataset_id].put(entry.latent_key, {"latent": latent})
    return len(loaded)


def text_keys(prepared: Prepared, adapter: Any, extra_prompts: list[str]) -> dict[str, str]:
    """Caption (or prompt) -> cache key, for every sample caption and the extra prompts."""
    encoder_id = adapter.text_encoder_fingerprint()
    prompts = {s.caption for s in prepared.all_samples()} | set(extra_prompts)
    return {prompt: entry_key(prompt, encoder_id) for prompt in sorted(prompts)}


def cache_text(prepared: Prepared, adapter: Any, extra_prompts: list[str], rank: int = 0, world: int = 1,
               progress: Progress | None = None) -> None:
    """Encode this rank's share of the prompts that are not cached yet, `write_batch_size` at a time."""
    batch_size = prepared.text_batch_size
    keys = text_keys(prepared, adapter, extra_prompts)
    for sample in prepared.all_samples():
        sample.text_key = keys[sample.caption]
    prepared.prompt_keys = {p: keys[p] for p in extra_prompts}
    todo = [p for p, key in keys.items() if not prepared.text_cache.has(key)][rank::world]
    for start in range(0, len(todo), batch_size):
        chunk = todo[start:start + batch_size]
        for prompt, tensors in zip(chunk, adapter.encode_prompts(chunk), strict=True):
            prepared.text_cache.put(keys[prompt], tensors)
        prepared.encoded_texts += len(chunk)
        if progress:
            progress(start + len(chunk), len(todo))


def finalize(prepared: Prepared) -> None:
    """Keep only samples whose latents (and references' latents) exist: another rank may have found a file
    unreadable."""
    for dataset_id, samples in list(prepared.samples.items()):
        cache = prepared.latent_caches[dataset_id]
        kept = [s for s in samples if cache.has(s.latent_key) and all(
            prepared.latent_caches[r.dataset_id].has(r.latent_key) for r in s.references)]
        if not kept:
            raise DatasetError(f"dataset '{dataset_id}': every image failed to load; check the files")
        prepared.samples[dataset_id] = kept
