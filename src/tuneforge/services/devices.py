"""The accelerators of this machine, found without torch (NVML through nvidia-ml-py)."""

from __future__ import annotations

import os


def cuda_device_count() -> int:
    """NVIDIA GPUs this server's processes may use (honouring CUDA_VISIBLE_DEVICES); 0 without a driver."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return 0
    try:
        import pynvml
    except ImportError:
        return 0
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return 0
    try:
        count = pynvml.nvmlDeviceGetCount()
    finally:
        pynvml.nvmlShutdown()
    if visible is not None:
        count = min(count, len([part for part in visible.split(",") if part.strip()]))
    return count
