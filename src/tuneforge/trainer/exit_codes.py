"""Exit codes of `python -m tuneforge.trainer` (torch-free: the server imports this)."""

from __future__ import annotations

COMPLETED = 0
FAILED = 1
INVALID_CONFIG = 2
CANCELLED = 3
STOPPED = 4
OUT_OF_MEMORY = 5

NAMES = {
    COMPLETED: "completed",
    FAILED: "failed",
    INVALID_CONFIG: "invalid_config",
    CANCELLED: "cancelled",
    STOPPED: "stopped",
    OUT_OF_MEMORY: "out_of_memory",
}

