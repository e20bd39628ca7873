"""Turn a micro-batch of samples into tensors on the device, and seed the per-step randomness."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import torch

from tuneforge.models.base import TrainBatch


def step_generator(seed: int, step: int, micro: int, rank: int, salt: str = "noise") -> torch.Generator:
    """Noise, timesteps and caption dropout depend only on (seed, step, micro-batch, rank): resume is exact."""
    digest = hashlib.sha256(f"{seed}|{step}|{micro}|{rank}|{salt}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))


def _latents(prepared, entries) -> torch.Tensor:
    return torch.stack([prepared.latent_caches[e.dataset_id].get(e.latent_key)["latent"] for e in entries])


def references(run, samples, generator: torch.Generator) -> list[torch.Tensor]:
    """The batch's reference latents: every linked conditioning set (`combined`), or one of them for the whole
    batch (`random`, drawn from the step's generator so that resume draws the same)."""
    count = len(samples[0].references)
    chosen = range(count)
    if count > 1 and run.options.conditioning_multidataset_sampling == "random":
        chosen = [int(torch.randint(count, (1,), generator=generator))]
    device = run.accelerator.device
    return [_latents(run.prepared, [s.references[i] for s in samples]).to(device) for i in chosen]


def load_batch(run, samples, generator: torch.Generator) -> TrainBatch:
    prepared, adapter = run.prepared, run.adapter
    conditioning = references(run, samples, generator)
    latents = _latents(prepared, samples)
    dropout = run.options.caption_dropout_probability
    texts = []
    for sample in samples:
        key = sample.text_key
        if dropout and torch.rand((), generator=generator).item() < dropout:
            key = prepared.prompt_keys[""]
        texts.append(prepared.text_cache.get(key))
    text = {name: value.to(run.accelerator.device) for name, value in adapter.collate_text(texts).items()}
    return TrainBatch(latents=latents.to(run.accelerator.device), text=text, conditioning=conditioning)


def prefetched(items: list, load, enabled: bool) -> Iterator:
    """Yield `load(item)` for each item, loading the next one in a background thread when enabled."""
    if not enabled:
        for item in items:
            yield load(item)
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="prefetch") as pool:
        future = pool.submit(load, items[0]) if items else None
        for index in range(len(items)):
            current = future.result()
            future = pool.submit(load, items[index + 1]) if index + 1 < len(items) else None
            yield current
