"""The accelerators of this machine, found without torch (NVML through nvidia-ml-py).

A GPU's `index` is its place among the GPUs this server may use (all of them, or those its own
`CUDA_VISIBLE_DEVICES` names, in that order); `cuda_id` is what a trainer's `CUDA_VISIBLE_DEVICES` must say to get
exactly that GPU.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

GIB = 1024**3
log = logging.getLogger("tuneforge.devices")


@dataclass(frozen=True)
class Gpu:
    index: int
    cuda_id: str
    name: str
    memory_total: int  # bytes
    memory_free: int | None = None
    utilization_percent: int | None = None

    @property
    def memory_gb(self) -> float:
        return round(self.memory_total / GIB, 1)


def discover() -> list[Gpu]:
    """The GPUs this server may use, with their memory and load now; [] without an NVIDIA driver."""
    visible = _visible()
    if visible == []:
        return []
    with _nvml() as nvml:
        if nvml is None:
            return []
        try:
            found = [_describe(nvml, physical) for physical in range(nvml.nvmlDeviceGetCount())]
        except nvml.NVMLError as exc:  # a GPU fallen off the bus, no permission: say so, serve without GPUs
            log.warning("NVML could not describe this machine's GPUs, treating it as having none: %s", exc)
            return []
    if visible is None:
        return [Gpu(i, str(i), *rest) for i, (_, _, *rest) in enumerate(found)]
    by_id = {key: gpu for gpu in found for key in gpu[:2]}  # an entry may name a GPU by index or by UUID
    return [Gpu(i, entry, *by_id[entry][2:]) for i, entry in enumerate(visible) if entry in by_id]


def cuda_device_count() -> int:
    return len(discover())


def _visible() -> list[str] | None:
    value = os.environ.get("CUDA_VISIBLE_DEVICES")
    if value is None:
        return None
    entries = [part.strip() for part in value.split(",") if part.strip()]
    return [] if entries in ([], ["-1"]) else entries


@contextmanager
def _nvml() -> Iterator[object | None]:
    try:
        import pynvml
    except ImportError:
        yield None
        return
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        yield None
        return
    try:
        yield pynvml
    finally:
        pynvml.nvmlShutdown()


def _describe(nvml, physical: int) -> tuple:
    """(index, uuid, name, total, free, utilisation) of one GPU as NVML numbers them."""
    handle = nvml.nvmlDeviceGetHandleByIndex(physical)
    memory = nvml.nvmlDeviceGetMemoryInfo(handle)
    try:
        utilization = nvml.nvmlDeviceGetUtilizationRates(handle).gpu
    except nvml.NVMLError:
        utilization = None
    return (str(physical), _text(nvml.nvmlDeviceGetUUID(handle)), _text(nvml.nvmlDeviceGetName(handle)),
            memory.total, memory.free, utilization)


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value  # older NVML bindings answer bytes
