"""The trainer's steady optimizer-step time against the floor: a bare loop in this file on the same model, LoRA,
batches (cached latents and text embeddings), optimizer and threads, doing forward, backward, clip, step and
zero_grad and nothing else. And the trainer's step time with one core kept busy against a quiet machine.

The machine drifts by ±10 % between minutes, so every figure is a ratio of interleaved measurements: a stretch of
trainer steps, then the same number of bare steps (or busy, then quiet), repeated; the table shows the median ratio
and its spread (lowest–highest). Targets: trainer/bare ≤ 1.2 on the tiny models and ≤ 1.05 on the small ones;
busy/quiet ≤ 1.5. Nothing is asserted: the script prints numbers, the last line one JSON object.

Usage, from the repository root:
    HF_HUB_OFFLINE=1 .venv/bin/python bench/step_overhead.py [--quick]
"""

from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from engine_helpers import make_spec, write_images
from tuneforge.models.tiny import make_tiny_model
from tuneforge.trainer.loop import epoch_stream, train_loop
from tuneforge.trainer.run import build_run, prepare

TARGETS = {"tiny": 1.2, "small": 1.05, "busy": 1.5}
# A bigger transformer than the tiny one, on the tiny pipeline's other parts (whose widths it must keep).
SMALL = {
    "pixart_sigma": {"num_layers": 4, "num_attention_heads": 8, "attention_head_dim": 32, "cross_attention_dim": 256,
                     "sample_size": 16},
    "flux": {"num_layers": 2, "num_single_layers": 4, "num_attention_heads": 4, "attention_head_dim": 32,
             "axes_dims_rope": (8, 12, 12)},
}
PIXELS = {"tiny": 64, "small": 128}


@dataclass
class Case:
    family: str
    size: str
    batch: int
    threads: int | None = None  # the trainer's choice when None (see `trainer_threads`)

    @property
    def name(self) -> str:
        threads = f", {self.threads} threads" if self.threads else ""
        return f"{self.family} {self.size} batch {self.batch}{threads}"


def make_model(family: str, size: str, folder: Path) -> Path:
    model = make_tiny_model(family, folder)
    if size == "small":
        from diffusers import FluxTransformer2DModel, PixArtTransformer2DModel

        cls = PixArtTransformer2DModel if family == "pixart_sigma" else FluxTransformer2DModel
        config = {**cls.load_config(model / "transformer"), **SMALL[family]}
        torch.manual_seed(0)
        cls.from_config(config).save_pretrained(model / "transformer")
    return model


def prepared_run(case: Case, root: Path):
    model = make_model(case.family, case.size, root / "model")
    pixels = PIXELS[case.size]
    data = write_images(root / "data", 8, sizes=((pixels, pixels),))
    datasets = [{"id": "images", "instance_data_dir": str(data), "resolution": pixels, "resolution_type": "pixel"},
                {"id": "text", "dataset_type": "text_embeds", "default": True, "cache_dir": str(root / "text")}]
    spec = make_spec(root, model, datasets=datasets, model_family=case.family, max_train_steps=10**6,
                     train_batch_size=case.batch, resolution=pixels, lora_rank=16, lora_alpha=16,
                     trainer_threads=case.threads)
    run = build_run(spec, None)
    prepare(run, None)
    return run


def trainer_seconds(run, steps: int) -> float:
    """The trainer's own loop for `steps` more steps, per step."""
    run.total_steps = run.global_step + steps
    started = time.perf_counter()
    train_loop(run)
    return (time.perf_counter() - started) / steps


def bare_seconds(run, batches, steps: int) -> float:
    """The floor: nothing but the arithmetic of a step, per step."""
    model, optimizer, objective = run.model, run.optimizer.optimizer, run.adapter.objective
    generator = torch.Generator().manual_seed(0)
    started = time.perf_counter()
    for index in range(steps):
        batch = batches[index % len(batches)]
        noise = torch.randn(batch.latents.shape, generator=generator)
        noisy = objective.noisy(batch.latents, noise, generator)
        loss = F.mse_loss(run.adapter.predict(model, noisy, batch).float(), noisy.target.float())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(run.params, run.options.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return (time.perf_counter() - started) / steps


def _spin(busy) -> None:
    """A core kept busy while `busy` is set, as a `while True: pass` loop would."""
    while True:
        busy.wait()
        while busy.is_set():
            pass


def measure(case: Case, rounds: int, steps: int, busy) -> dict:
    with tempfile.TemporaryDirectory(prefix="tuneforge-bench-") as scratch:
        run = prepared_run(case, Path(scratch))
        _, stream = epoch_stream(run)
        batches = list(itertools.islice(stream, 4))  # an epoch of batch 4 holds two
        trainer_seconds(run, 3), bare_seconds(run, batches, 3)  # warm up
        trainer, bare, quiet, loaded = [], [], [], []
        for _ in range(rounds):
            trainer.append(trainer_seconds(run, steps))
            bare.append(bare_seconds(run, batches, steps))
        for _ in range(rounds):
            quiet.append(trainer_seconds(run, steps))
            busy.set()
            time.sleep(0.05)
            loaded.append(trainer_seconds(run, steps))
            busy.clear()
    overhead = [t / b for t, b in zip(trainer, bare, strict=True)]
    contention = [b / q for b, q in zip(loaded, quiet, strict=True)]
    return {"case": case.name, "threads": torch.get_num_threads(), "quiet_ms": 1000 * statistics.median(quiet),
            "trainer_ms": 1000 * statistics.median(trainer), "bare_ms": 1000 * statistics.median(bare),
            "overhead": statistics.median(overhead), "overhead_low": min(overhead), "overhead_high": max(overhead),
            "overhead_target": TARGETS[case.size], "busy_ms": 1000 * statistics.median(loaded),
            "busy_ratio": statistics.median(contention), "busy_low": min(contention),
            "busy_high": max(contention), "busy_target": TARGETS["busy"]}


def cases(quick: bool) -> list[Case]:
    """The trainer's own thread choice, and once with a thread per CPU (torch's default) to show what it avoids."""
    every_cpu = Case("pixart_sigma", "tiny", 1, threads=len(os.sched_getaffinity(0)))
    if quick:
        return [Case("pixart_sigma", "tiny", 1), Case("flux", "tiny", 1), every_cpu]
    return [*(Case(family, size, batch) for family in ("pixart_sigma", "flux") for size in ("tiny", "small")
              for batch in (1, 4)), every_cpu]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="two tiny cases, fewer rounds (under two minutes)")
    args = parser.parse_args()
    rounds, steps = (3, 10) if args.quick else (7, 20)
    busy = multiprocessing.Event()
    spinner = multiprocessing.Process(target=_spin, args=(busy,), daemon=True)
    spinner.start()
    try:
        results = [measure(case, rounds, steps, busy) for case in cases(args.quick)]
    finally:
        spinner.terminate()
    print(f"{'case':<37} {'threads':>7} {'trainer ms':>10} {'bare ms':>8} {'trainer/bare':>18} {'target':>6} "
          f"{'quiet ms':>8} {'busy ms':>8} {'busy/quiet':>16} {'target':>6}")
    for r in results:
        print(f"{r['case']:<37} {r['threads']:>7} {r['trainer_ms']:>10.2f} {r['bare_ms']:>8.2f} "
              f"{r['overhead']:>6.3f} ({r['overhead_low']:.2f}–{r['overhead_high']:.2f}) {r['overhead_target']:>6} "
              f"{r['quiet_ms']:>8.2f} {r['busy_ms']:>8.2f} {r['busy_ratio']:>5.2f} "
              f"({r['busy_low']:.2f}–{r['busy_high']:.2f}) {r['busy_target']:>6}")
    print(json.dumps({"bench": "step_overhead", "quick": args.quick, "results": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
