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


def load_batch(run, samples, generator: torch.Generator) -> TrainBatch:
    prepared, adapter = run.prepared, run.adapter
    latents = torch.stack([prepared.latent_caches[s.dataset_id].get(s.latent_key)["latent"] for s in samples])
    dropout = run.options.caption_dropout_probability
    texts = []
    for sample in samples:
        key = sample.text_key
        if dropout and torch.rand((), generator=generator).item() < dropout:
            key = prepared.prompt_keys[""]
        texts.append(prepared.text_cache.get(key))
    text = {name: value.to(run.accelerator.device) for name, value in adapter.collate_text(texts).items()}
    return TrainBatch(latents=latents.to(run.accelerator.device), text=text)


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
