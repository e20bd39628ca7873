"""Throughput of the server's event pipeline on a real SQLite file, with the real scheduler classes.

Four numbers, one line each:
1. ingest:   N `training.progress` events appended to a run's events.jsonl with the trainer's EventWriter, then
             `Monitor.tick()` (the server's watch loop) repeated until it stores nothing new; events/s, and the
             size of the database and its WAL afterwards.
2. read:     `job_events.since` paging through the whole log 500 at a time, one session per page, as
             GET /api/training/events does; events/s.
3. fan-out:  the same job has one raw webhook target and `webhook_reporting_interval=0`, so every event becomes a
             delivery row; `Outbox.fan_out` repeated until it sees nothing new; rows/s.
4. delivery: a second database and job with a smaller log, already fanned out; `Outbox.deliver_due` passes
             (batch of 20, the server's default) back to back, as the server's sender does, until none is due,
             each delivery a real HTTP POST to a local receiver; deliveries/s.

The bench process stands in for the trainer (the job's pid is its own), so `tick()` treats the job as alive.
Nothing is asserted: the script prints numbers. Everything lives in a temporary folder that is removed at the end.

Usage, from the repository root:
    HF_HUB_OFFLINE=1 .venv/bin/python bench/event_pipeline.py [--events 20000] [--delivery-events 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, func, select, text
from sqlalchemy.orm import Session, sessionmaker

from tuneforge.db.engine import make_engine, make_session_factory
from tuneforge.db.migrate import upgrade_to_head
from tuneforge.db.models import WebhookDelivery
from tuneforge.events import EventWriter, Progress
from tuneforge.runfolder import EVENTS_FILE
from tuneforge.scheduler import launcher
from tuneforge.scheduler.monitor import Monitor
from tuneforge.scheduler.outbox import Outbox
from tuneforge.services import job_events, jobs
from tuneforge.services.outbound import OutboundPolicy
from tuneforge.services.principal import Principal

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from webhook_receiver import Receiver

MIB = 1024 * 1024
LOOPBACK = OutboundPolicy((ipaddress.ip_network("127.0.0.0/8"),))  # the receiver listens here; a server refuses it
PAGE = 500
OWNER = Principal(user_id=None, username="bench", permissions=frozenset(), method="server-env")


@dataclass
class Pipeline:
    """One database file, one live job, and the scheduler parts that work on them."""

    folder: Path
    database: Path
    engine: Engine
    session_factory: sessionmaker[Session]
    monitor: Monitor
    outbox: Outbox
    job_id: str

    @property
    def events_file(self) -> Path:
        return self.folder / "runs" / self.job_id / EVENTS_FILE


def open_pipeline(folder: Path, job_id: str, webhook_url: str) -> Pipeline:
    """A migrated SQLite database with one `starting` job whose trainer is this process."""
    database = folder / "state.db"
    engine = make_engine(f"sqlite:///{database}")
    upgrade_to_head(engine)
    session_factory = make_session_factory(engine)
    run_dir = folder / "runs" / job_id
    run_dir.mkdir(parents=True)
    config = {"webhook_config": [{"webhook_type": "raw", "callback_url": webhook_url, "log_level": "info"}],
              "webhook_reporting_interval": 0}
    with session_factory() as db:
        job = jobs.create(db, job_id=job_id, owner=OWNER, env_name=None, config=config, run_dir=str(run_dir),
                          output_dir=str(folder / "output"), num_processes=1)
        jobs.transition(db, job.id, "starting")
        job.pid, job.pid_started_at = os.getpid(), launcher.started_at(os.getpid())
        db.commit()
    outbox = Outbox(session_factory, b"bench-signing-key", LOOPBACK)
    return Pipeline(folder, database, engine, session_factory, Monitor(session_factory, folder, outbox), outbox, job_id)


def write_progress_events(path: Path, count: int) -> float:
    """Append `count` progress events the way the trainer does (one EventWriter call each); returns seconds."""
    writer = EventWriter(path)
    started = time.perf_counter()
    for step in range(1, count + 1):
        progress = Progress(step=step, total_steps=count, epoch=1, total_epochs=1, loss=0.1 + 1 / step,
                            learning_rate=1e-4, samples_per_second=12.345, percent=round(100 * step / count, 2))
        writer("training.progress", "Training progress", f"step {step}/{count}", progress=progress)
    return time.perf_counter() - started


def stored_count(pipeline: Pipeline) -> int:
    with pipeline.session_factory() as db:
        return jobs.get(db, pipeline.job_id).next_index


def ingest_all(pipeline: Pipeline) -> tuple[int, float]:
    """`Monitor.tick()` until it stores nothing new; returns (events stored, seconds)."""
    before = stored_count(pipeline)
    started = time.perf_counter()
    while pipeline.monitor.tick():
        pass
    elapsed = time.perf_counter() - started
    return stored_count(pipeline) - before, elapsed


def read_all(pipeline: Pipeline) -> tuple[int, float]:
    """Page through the job's whole event log like a client of GET /api/training/events; (events, seconds)."""
    read, start = 0, 0
    started = time.perf_counter()
    while True:
        with pipeline.session_factory() as db:
            page = job_events.since(db, pipeline.job_id, start, limit=PAGE)
        if not page:
            break
        read += len(page)
        start = page[-1]["index"] + 1
    return read, time.perf_counter() - started


def fan_out_all(pipeline: Pipeline) -> tuple[int, int, float]:
    """`Outbox.fan_out` until it sees nothing new; returns (events seen, delivery rows, seconds)."""
    seen = 0
    started = time.perf_counter()
    while True:
        with pipeline.session_factory() as db:
            step = pipeline.outbox.fan_out(db)
        if not step:
            break
        seen += step
    elapsed = time.perf_counter() - started
    return seen, count_deliveries(pipeline), elapsed


def count_deliveries(pipeline: Pipeline, status: str | None = None) -> int:
    query = select(func.count()).select_from(WebhookDelivery)
    if status is not None:
        query = query.where(WebhookDelivery.status == status)
    with pipeline.session_factory() as db:
        return db.scalar(query)


async def deliver_until_idle(outbox: Outbox) -> int:
    """Back-to-back `deliver_due` passes, like the server's sender loop, until a pass finds nothing; passes run."""
    passes = 0
    while await outbox.deliver_due():  # senders work in the background: a pass ends when they have settled
        await outbox.settle()
        passes += 1
    return passes


def database_size(database: Path) -> tuple[int, int]:
    """Bytes of the SQLite file and of its write-ahead log."""
    wal = database.with_name(database.name + "-wal")
    return database.stat().st_size, wal.stat().st_size if wal.exists() else 0


def checkpoint(engine: Engine) -> None:
    """Move the WAL's pages into the database file, so that the file alone holds everything."""
    with engine.connect() as connection:
        connection.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))


def bench_log(folder: Path, count: int, webhook_url: str) -> dict[str, float]:
    """Stages 1-3 on one job with `count` progress events."""
    pipeline = open_pipeline(folder, "bench-log", webhook_url)
    written = write_progress_events(pipeline.events_file, count)
    file_size = pipeline.events_file.stat().st_size
    print(f"setup     wrote {count} events ({file_size / MIB:.1f} MiB events.jsonl) with EventWriter "
          f"in {written:.2f} s")

    stored, elapsed = ingest_all(pipeline)
    ingest_seconds = elapsed
    db_bytes, wal_bytes = database_size(pipeline.database)
    checkpoint(pipeline.engine)  # not timed: SQLite does this in the background of later writes
    settled, _ = database_size(pipeline.database)
    print(f"ingest    {stored} events in {elapsed:.2f} s = {stored / elapsed:,.0f} events/s; "
          f"database {db_bytes / MIB:.1f} MiB + WAL {wal_bytes / MIB:.1f} MiB right after, "
          f"{settled / MIB:.1f} MiB after a checkpoint ({settled / stored_count(pipeline):.0f} bytes/event)")

    read, elapsed = read_all(pipeline)
    read_seconds = elapsed
    print(f"read      {read} events in pages of {PAGE} in {elapsed:.2f} s = {read / elapsed:,.0f} events/s "
          f"({1000 * elapsed / max(read / PAGE, 1):.1f} ms/page)")

    seen, rows, elapsed = fan_out_all(pipeline)
    print(f"fan-out   {seen} events -> {rows} delivery rows in {elapsed:.2f} s = {rows / elapsed:,.0f} rows/s")
    pipeline.engine.dispose()
    return {"ingest_events_per_second": stored / ingest_seconds, "read_events_per_second": read / read_seconds,
            "fan_out_rows_per_second": rows / elapsed, "bytes_per_event": settled / max(stored, 1)}


def bench_delivery(folder: Path, count: int, receiver: Receiver) -> dict[str, float]:
    """Stage 4 on its own database, so the first job's rows do not join the queue."""
    pipeline = open_pipeline(folder, "bench-delivery", receiver.url)
    write_progress_events(pipeline.events_file, count)
    ingest_all(pipeline)
    _, rows, _ = fan_out_all(pipeline)

    started = time.perf_counter()
    passes = asyncio.run(deliver_until_idle(pipeline.outbox))
    elapsed = time.perf_counter() - started
    delivered = count_deliveries(pipeline, "delivered")
    left = rows - delivered
    received = len(receiver.deliveries)
    print(f"delivery  {delivered}/{rows} rows delivered ({received} POSTs received) in {passes} passes, "
          f"{elapsed:.2f} s = {delivered / elapsed:,.0f} deliveries/s" + (f"; {left} not delivered" if left else ""))
    pipeline.engine.dispose()
    return {"deliveries_per_second": delivered / elapsed, "not_delivered": left}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000, help="progress events for ingest, read and fan-out")
    parser.add_argument("--delivery-events", type=int, default=2_000, help="progress events for the delivery run")
    parser.add_argument("--quick", action="store_true", help="2,000 and 200 events")
    args = parser.parse_args()
    events, deliveries = (2_000, 200) if args.quick else (args.events, args.delivery_events)
    workspace = Path(tempfile.mkdtemp(prefix="tuneforge-bench-events-"))
    started = time.perf_counter()
    try:
        with Receiver() as receiver:
            figures = bench_log(workspace / "log", events, receiver.url)
            figures |= bench_delivery(workspace / "delivery", deliveries, receiver)
    finally:
        shutil.rmtree(workspace, ignore_errors=True)
    print(f"total     {time.perf_counter() - started:.1f} s")
    print(json.dumps({"bench": "event_pipeline", "quick": args.quick, "events": events, **figures}))


if __name__ == "__main__":
    main()
