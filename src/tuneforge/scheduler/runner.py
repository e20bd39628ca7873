"""The scheduler's event loop side: runs the monitor and the webhook sender, and wakes event listeners."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from tuneforge.scheduler.monitor import Monitor
from tuneforge.scheduler.outbox import Outbox
from tuneforge.services import jobs
from tuneforge.services.devices import Gpu
from tuneforge.services.notify import EventBus
from tuneforge.services.outbound import OutboundPolicy
from tuneforge.services.secrets import stored_key

log = logging.getLogger("tuneforge.scheduler")
TICK_SECONDS = 0.25
EVENT_POLL_SECONDS = 0.02  # how soon a trainer's new events reach the database and the streams


class Scheduler:
    def __init__(self, session_factory: sessionmaker[Session], workspace: Path, state_dir: Path,
                 outbound: OutboundPolicy, gpus: Sequence[Gpu] = ()) -> None:
        self.gpus = tuple(gpus)  # found once at start-up: placement needs stable indexes, not live memory figures
        self.outbox = Outbox(session_factory, _signing_key(state_dir), outbound)
        self.monitor = Monitor(session_factory, workspace, self.outbox, self.gpus)
        self.bus = EventBus()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task] = []

    async def start(self) -> None:
        await asyncio.to_thread(self.monitor.adopt_all)
        self._tasks = [asyncio.create_task(self._watch()), asyncio.create_task(self._send_webhooks())]

    async def stop(self) -> None:
        self.bus.closing = True
        await self.bus.publish()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.outbox.close()

    def wake(self) -> None:
        self._wake.set()

    async def wait_for_launch(self, job_id: str, timeout: float) -> tuple[str, str | None]:
        """The job's state and reason once it has left `queued` (or still `queued` after `timeout`). The monitor
        publishes on the bus when it launches a job (or fails to), so the database is read once per publish."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            seen = self.bus.version
            state, reason = await asyncio.to_thread(self._state_of, job_id)
            left = deadline - loop.time()
            if state != "queued" or left <= 0:
                return state, reason
            await self.bus.wait(left, seen)

    def _state_of(self, job_id: str) -> tuple[str, str | None]:
        with self.monitor.session_factory() as db:
            job = jobs.get(db, job_id)
            return job.state, job.reason

    async def _watch(self) -> None:
        while True:
            try:
                if await asyncio.to_thread(self.monitor.tick):
                    await self.bus.publish()
                await self._until_due()
            except Exception:  # keep watching: one bad tick must not stop the server's view of its jobs
                log.exception("scheduler tick failed")
                await asyncio.sleep(TICK_SECONDS)  # not at once again: the news that failed is still there
            self._wake.clear()

    async def _until_due(self) -> None:
        """Until the next tick: TICK_SECONDS, less when woken (a job queued or steered) or when a trainer has
        written new events (checked every EVENT_POLL_SECONDS with a stat per live job)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + TICK_SECONDS
        while (left := deadline - loop.time()) > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), min(left, EVENT_POLL_SECONDS))
                return
            if self.monitor.has_news():
                return

    async def _send_webhooks(self) -> None:
        while True:
            try:
                sent = await self.outbox.deliver_due()
            except Exception:
                log.exception("webhook delivery pass failed")
                sent = 0
            if not sent:
                await asyncio.sleep(0.5)


def _signing_key(state_dir: Path) -> bytes:
    """The HMAC key for webhooks without their own auth_token, kept in `.tuneforge/webhook_secret`."""
    return stored_key(state_dir / "webhook_secret")
