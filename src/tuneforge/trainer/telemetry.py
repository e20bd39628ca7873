"""What the steps cost, measured without stalling the device: where each step's time goes, throughput, peak memory
and model FLOPs utilisation, summed over the steps between two progress reports.

On a GPU the phase marks are CUDA events recorded on the stream and read back only when reporting, so the loop
never waits for the device to measure it; on the CPU they are clock readings.
"""

from __future__ import annotations

import os
import resource
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from tuneforge.events import Telemetry

PHASES = ("data", "forward", "backward", "optimizer", "other")
# Dense bf16 tensor throughput, TFLOP/s, by the device name CUDA reports (longest names first: "H100 PCIe" before
# "H100"). `TUNEFORGE_GPU_PEAK_TFLOPS` names it for a device not listed.
PEAK_BF16_TFLOPS = (("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H800 PCIe", 756.0), ("H100", 989.4),
                    ("GH200", 989.4), ("H200", 989.4), ("H800", 989.4),
                    ("B200", 2250.0), ("A100", 312.0), ("A800", 312.0), ("L40S", 362.1), ("L40", 181.0),
                    ("L4", 121.0), ("A10G", 70.0), ("A10", 125.0))


def peak_tflops(device: torch.device) -> float | None:
    if given := os.environ.get("TUNEFORGE_GPU_PEAK_TFLOPS"):
        return float(given)
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in PEAK_BF16_TFLOPS if key in name), None)


def peak_memory_bytes(device: torch.device) -> tuple[int, str]:
    """The most the run has held: allocated tensors on a GPU, the process's resident memory on the CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device), "cuda_allocated"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "rss"  # Linux reports KiB


@dataclass
class StepMeter:
    """Marks the phases of each step (`begin`, then `lap(phase)` after each) and sums them with the step's samples,
    image tokens and model FLOPs until `report` takes the totals."""

    device: torch.device
    laps: list[tuple[str, Any, Any]] = field(default_factory=list)
    steps: int = 0
    samples: int = 0
    image_tokens: int = 0
    flops: int = 0
    _last: Any = None

    def __post_init__(self) -> None:
        if self.device.type == "cuda":  # the run's peak, not that of loading and caching before it
            torch.cuda.reset_peak_memory_stats(self.device)

    def _mark(self) -> Any:
        if self.device.type == "cuda":
            event = torch.cuda.Event(enable_timing=True)
            event.record(torch.cuda.current_stream(self.device))
            return event
        return time.perf_counter()

    def begin(self) -> None:
        """A step starts: what happened since the previous one ended (control requests, checkpoints, validation,
        reports) counts as that one's `other`."""
        if self._last is None:
            self._last = self._mark()
        else:
            self.lap("other")

    def lap(self, phase: str) -> None:
        now = self._mark()
        self.laps.append((phase, self._last, now))
        self._last = now

    def count(self, samples: int, image_tokens: int, flops: int) -> None:
        self.samples += samples
        self.image_tokens += image_tokens
        self.flops += flops

    def end_step(self) -> None:
        self.steps += 1

    def report(self, wall_seconds: float) -> Telemetry | None:
        """The steps since the last report, per step and per second; None before any step."""
        if not self.steps:
            return None
        phases = dict.fromkeys(PHASES, 0.0)
        if self.device.type == "cuda":
            self.laps[-1][2].synchronize()  # the one wait: the last mark, once per report
        for phase, start, end in self.laps:
            phases[phase] += start.elapsed_time(end) / 1000 if self.device.type == "cuda" else end - start
        step_seconds = sum(phases.values()) / self.steps
        memory, memory_kind = peak_memory_bytes(self.device)
        peak = peak_tflops(self.device)
        achieved = self.flops / max(step_seconds * self.steps, 1e-9)  # while stepping: reports do not count
        wall = max(wall_seconds, 1e-9)
        telemetry = Telemetry(
            step_seconds=_figures(step_seconds),
            **{f"{phase}_seconds": _figures(total / self.steps) for phase, total in phases.items()},
            samples_per_second=_figures(self.samples / wall),
            image_tokens_per_second=_figures(self.image_tokens / wall),
            model_tflops_per_step=_figures(self.flops / self.steps / 1e12), achieved_tflops=_figures(achieved / 1e12),
            mfu=_figures(achieved / (peak * 1e12)) if peak else None,
            peak_memory_mb=round(memory / 2**20, 1), memory_kind=memory_kind,
        )
        self.laps, self.steps, self.samples, self.image_tokens, self.flops = [], 0, 0, 0, 0
        return telemetry


def _figures(value: float, digits: int = 4) -> float:
    """Rounded to `digits` significant figures: a tiny model's TFLOPs are not zero."""
    return float(f"{value:.{digits}g}")
