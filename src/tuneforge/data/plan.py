"""The order of batches in an epoch: a pure function of (seed, epoch), so resume lands on the same batch.

Each batch holds samples of one dataset and one bucket (the sizes of the image and its references). A dataset
contributes `1 + repeats` passes per epoch; `probability` keeps each of its batches with that chance. Batches of
all datasets are shuffled together, trimmed to a multiple of the number of processes, and dealt out round-robin:
rank r gets batches r, r+W, ...
A bucket whose size is not a multiple of the batch size is filled up with its own samples (never dropped).
"""

from __future__ import annotations

import random
from collections import defaultdict
from typing import Any

from tuneforge.data.prepare import Prepared, Sample


def _rng(seed: int, epoch: int, salt: str) -> random.Random:
    return random.Random(f"{seed}|{epoch}|{salt}")


def _dataset_batches(samples: list[Sample], dataset: Any, batch_size: int, seed: int, epoch: int) -> list[list[Sample]]:
    rng = _rng(seed, epoch, dataset.id)
    buckets: dict[tuple, list[Sample]] = defaultdict(list)
    for sample in samples:
        buckets[sample.batch_key].append(sample)
    batches = []
    for _ in range(1 + dataset.repeats):
        for bucket in sorted(buckets):
            items = list(buckets[bucket])
            rng.shuffle(items)
            while len(items) % batch_size:
                items.append(items[len(items) % len(buckets[bucket])])
            batches += [items[i:i + batch_size] for i in range(0, len(items), batch_size)]
    if dataset.probability < 1.0:
        batches = [b for b in batches if rng.random() < dataset.probability]
    return batches


def epoch_batches(prepared: Prepared, batch_size: int, seed: int, epoch: int, rank: int,
                  world: int) -> list[list[Sample]]:
    """This rank's micro-batches for `epoch`."""
    batches = []
    for dataset_id in sorted(prepared.samples):
        dataset = prepared.datasets[dataset_id]
        batches += _dataset_batches(prepared.samples[dataset_id], dataset, batch_size, seed, epoch)
    _rng(seed, epoch, "interleave").shuffle(batches)
    usable = len(batches) - len(batches) % world
    return batches[:usable][rank::world]


def epoch_steps(prepared: Prepared, batch_size: int, seed: int, accumulation: int, world: int, epoch: int) -> int:
    """Optimizer steps in `epoch` (every rank gets the same number of batches)."""
    return len(epoch_batches(prepared, batch_size, seed, epoch, 0, world)) // accumulation


def schedule(prepared: Prepared, batch_size: int, seed: int, accumulation: int, world: int, max_steps: int | None,
             epochs: int) -> tuple[int, int]:
    """(total steps, total epochs): `max_steps` if set, else `epochs` whole epochs.

    Epochs are counted one by one: with probability < 1 their lengths differ. This costs far less than training
    the same epochs.
    """
    def steps(epoch: int) -> int:
        return epoch_steps(prepared, batch_size, seed, accumulation, world, epoch)

    if not max_steps:
        return sum(steps(epoch) for epoch in range(epochs)), epochs
    total, epoch = 0, 0
    while total < max_steps:
        total, epoch = total + steps(epoch), epoch + 1
    return max_steps, epoch
