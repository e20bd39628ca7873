"""From dataset configs to cached training samples: discover, plan, encode what is missing.

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
from tuneforge.data.discovery import DatasetError, discover
from tuneforge.data.images import load_pixels

Progress = Callable[[int, int], None]


@dataclass
class Sample:
    dataset_id: str
    path: Path
    caption: str
    plan: Plan
    latent_key: str = ""
    text_key: str = ""

    @property
    def bucket(self) -> tuple[int, int]:
        return self.plan.bucket


@dataclass
class Prepared:
    datasets: dict[str, Any]  # id -> DatasetConfig (enabled image datasets)
    samples: dict[str, list[Sample]]
    latent_caches: dict[str, TensorCache]
    text_cache: TensorCache
    skipped: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    encoded_latents: int = 0
    encoded_texts: int = 0
    prompt_keys: dict[str, str] = field(default_factory=dict)  # extra prompts (validation, "") -> text key
    text_batch_size: int = 32  # the text_embeds dataset's write_batch_size

    def all_samples(self) -> list[Sample]:
        return [s for items in self.samples.values() for s in items]


def _text_dataset(datasets: list[Any]) -> Any:
    return next((d for d in datasets if d.dataset_type == "text_embeds" and d.default and not d.disabled), None)


def _cache_dirs(options: Any, datasets: list[Any], output: Path) -> tuple[dict[str, Path], Path]:
    text = _text_dataset(datasets)
    text_dir = Path(text.cache_dir) if text and text.cache_dir else output / "cache" / "text_embeds"
    latent_dirs = {}
    for d in datasets:
        if d.dataset_type == "image" and not d.disabled:
            base = d.cache_dir_vae or (Path(options.cache_dir_vae) / d.id if options.cache_dir_vae else None)
            latent_dirs[d.id] = Path(base) if base else output / "cache" / "vae" / d.id
    return latent_dirs, text_dir


def discover_all(options: Any, datasets: list[Any], output_dir: Path, progress: Progress | None = None) -> Prepared:
    """Find images and captions, plan every crop; raises DatasetError when a dataset has nothing usable.

    Caches without a configured folder live in `output_dir/cache` (the run's resolved output folder)."""
    latent_dirs, text_dir = _cache_dirs(options, datasets, Path(output_dir))
    images = [d for d in datasets if d.dataset_type == "image" and not d.disabled]
    prepared = Prepared({d.id: d for d in images}, {}, {k: TensorCache(v) for k, v in latent_dirs.items()},
                        TensorCache(text_dir))
    text = _text_dataset(datasets)
    if text is not None:
        prepared.text_batch_size = text.write_batch_size
    for number, dataset in enumerate(images, 1):
        found = discover(dataset)
        prepared.skipped += found.skipped
        prepared.warnings += found.warnings
        samples = []
        for item in found.items:
            try:
                plan = plan_image(item.width, item.height, dataset, options, item.path.name)
            except TooSmall as exc:
                prepared.skipped.append((str(item.path), str(exc)))
                continue
            samples.append(Sample(dataset.id, item.path, item.caption, plan))
        if not samples:
            reasons = [f"{Path(p).name}: {r}" for p, r in prepared.skipped if Path(p).is_relative_to(
                Path(dataset.instance_data_dir).expanduser())]
            why = f" (skipped {len(reasons)}: {'; '.join(reasons[:3])})" if reasons else ""
            raise DatasetError(f"dataset '{dataset.id}': no usable images in {dataset.instance_data_dir}{why}. "
                               "Add images, or lower minimum_image_size")
        prepared.samples[dataset.id] = samples
        if progress:
            progress(number, len(images))
    return prepared


def cache_latents(prepared: Prepared, adapter: Any, rank: int = 0, world: int = 1, batch_size: int = 8,
                  progress: Progress | None = None) -> None:
    """Encode this rank's share of the images whose latents are not cached; unreadable files are skipped."""
    vae_id = adapter.vae_fingerprint()
    todo: dict[tuple[str, tuple[int, int]], list[Sample]] = defaultdict(list)
    for sample in prepared.all_samples():
        sample.latent_key = entry_key(file_digest(sample.path), vae_id, sample.plan.key())
        if not prepared.latent_caches[sample.dataset_id].has(sample.latent_key):
            todo[(sample.dataset_id, sample.bucket)].append(sample)
    mine = [s for group in todo.values() for s in group][rank::world]
    groups: dict[tuple[str, tuple[int, int]], list[Sample]] = defaultdict(list)
    for sample in mine:
        groups[(sample.dataset_id, sample.bucket)].append(sample)
    done = 0
    for (dataset_id, _), samples in groups.items():
        for start in range(0, len(samples), batch_size):
            chunk, pixels = [], []
            for sample in samples[start:start + batch_size]:
                try:
                    pixels.append(load_pixels(sample.path, sample.plan))
                    chunk.append(sample)
                except (OSError, ValueError, SyntaxError) as exc:
                    prepared.skipped.append((str(sample.path), f"unreadable image: {exc}"))
            if chunk:
                # The posterior sample is seeded by the entry's key: a cached latent never depends on run order.
                generators = [torch.Generator().manual_seed(int(s.latent_key[:15], 16)) for s in chunk]
                latents = adapter.encode_images(torch.stack(pixels), generators)
                for sample, latent in zip(chunk, latents, strict=True):
                    prepared.latent_caches[dataset_id].put(sample.latent_key, {"latent": latent})
            done += len(samples[start:start + batch_size])
            prepared.encoded_latents += len(chunk)
            if progress:
                progress(done, len(mine))


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
    """Keep only samples whose latents exist (another rank may have found a file unreadable)."""
    for dataset_id, samples in list(prepared.samples.items()):
        cache = prepared.latent_caches[dataset_id]
        kept = [s for s in samples if cache.has(s.latent_key)]
        if not kept:
            raise DatasetError(f"dataset '{dataset_id}': every image failed to load; check the files")
        prepared.samples[dataset_id] = kept
