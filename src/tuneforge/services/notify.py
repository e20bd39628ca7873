"""Telling listeners (event streams) that something new was stored; the scheduler publishes, streams wait."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Protocol

from tuneforge.services.devices import Gpu


class EventBus:
    """Listeners wait here for 'something new was stored'; they then read the database themselves.

    `version` counts the publishes: a listener notes it before reading the database and passes it to `wait`,
    so that a publish between its read and its wait is not missed."""

    def __init__(self) -> None:
        self._condition = asyncio.Condition()
        self.closing = False
        self.version = 0

    async def publish(self) -> None:
        async with self._condition:
            self.version += 1
            self._condition.notify_all()

    async def wait(self, timeout: float, seen: int | None = None) -> None:
        """Until the next publish (at once if there was one since version `seen`), or `timeout` seconds."""
        async with self._condition:
            if seen is not None and self.version != seen:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._condition.wait(), timeout)


class Scheduling(Protocol):
    """What the HTTP side may ask of the scheduler (`scheduler.runner.Scheduler`), without importing it."""

    bus: EventBus
    gpus: tuple[Gpu, ...]

    def wake(self) -> None: ...

    async def wait_for_launch(self, job_id: str, timeout: float) -> tuple[str, str | None]: ...
