"""Trainer events: the envelope, the types, a line-per-event writer and a reader.

Torch-free on purpose: the server imports this module to parse `events.jsonl`. The trainer writes events
without `index` or `job_id`; the server adds both when it tails the file.
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from tuneforge import runfolder

EventType = Literal[
    "lifecycle.stage",
    "training.status",
    "training.progress",
    "training.checkpoint",
    "training.validation",
    "validation.image",
    "notification",
    "error",
    "log.message",
]
Severity = Literal["debug", "info", "success", "warning", "error"]
TrainingStatus = Literal["started", "running", "completed", "stopped", "cancelled", "failed"]
StageStatus = Literal["pending", "running", "completed", "skipped", "failed"]


class Stage(BaseModel):
    key: str
    label: str
    status: StageStatus
    percent: float = 0.0
    current: int = 0
    total: int = 0


class Telemetry(BaseModel):
    """What the steps since the previous report cost: seconds per step and where they went, throughput, memory."""

    step_seconds: float
    data_seconds: float  # waiting for the next batch
    forward_seconds: float
    backward_seconds: float
    optimizer_seconds: float  # clipping, the optimizer and the schedule
    other_seconds: float  # between steps: control requests, scheduled checkpoints and validation, reports
    samples_per_second: float
    image_tokens_per_second: float
    model_tflops_per_step: float
    achieved_tflops: float
    mfu: float | None = None  # model FLOPs / (time × the GPU's dense bf16 peak); None on the CPU
    peak_memory_mb: float
    memory_kind: Literal["rss", "cuda_allocated"]


class Progress(BaseModel):
    step: int
    total_steps: int
    epoch: int
    total_epochs: int
    loss: float | None = None
    learning_rate: float | None = None
    samples_per_second: float | None = None
    percent: float = 0.0
    # Every step since the previous report, this one last: reports are throttled, a loss curve needs each step.
    steps: list[int] | None = None
    losses: list[float | None] | None = None
    learning_rates: list[float | None] | None = None
    telemetry: Telemetry | None = None


class CheckpointInfo(BaseModel):
    name: str
    path: str
    step: int


class Image(BaseModel):
    src: str
    mime_type: str = "image/png"


class Event(BaseModel):
    """One trainer event. Extra keys are kept so that newer trainers stay readable by older servers."""

    # A NaN or infinite loss is written as null: JSON has no such numbers, and browsers and databases refuse them.
    model_config = ConfigDict(extra="allow", ser_json_inf_nan="null")

    type: EventType
    severity: Severity = "info"
    timestamp: str
    title: str = ""
    message: str = ""
    data: dict[str, Any] = {}
    progress: Progress | None = None
    stage: Stage | None = None
    checkpoint: CheckpointInfo | None = None
    images: list[Image] | None = None
    videos: list[Image] | None = None

    def to_json(self) -> str:
        return self.model_dump_json(exclude_none=True)

    def to_dict(self) -> dict[str, Any]:
        """As stored and sent: what `to_json` writes, read back."""
        return json.loads(self.to_json())


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def make(event_type: EventType, title: str = "", message: str = "", **fields: Any) -> Event:
    return Event(type=event_type, timestamp=now(), title=title, message=message, **fields)


class EventWriter:
    """Appends one event per line and flushes it. `enabled=False` (ranks other than 0) writes nothing."""

    def __init__(self, path: Path | None, enabled: bool = True) -> None:
        self.path = Path(path) if path is not None else None
        self.enabled = enabled and path is not None
        self._lock = threading.Lock()
        self._listeners: list = []

    def add_listener(self, callback) -> None:
        """`callback(event)` is called for every event (the CLI draws progress bars with it)."""
        self._listeners.append(callback)

    def emit(self, event: Event) -> Event:
        if self.enabled:
            line = event.to_json() + "\n"
            with self._lock, open(self.path, "a", encoding="utf-8") as handle:
                handle.write(line)
                handle.flush()
        for callback in self._listeners:
            callback(event)
        return event

    def __call__(self, event_type: EventType, title: str = "", message: str = "", **fields: Any) -> Event:
        return self.emit(make(event_type, title, message, **fields))

    # Shorthands used all over the trainer.
    def stage(self, key: str, label: str, status: StageStatus, current: int = 0, total: int = 0) -> Event:
        percent = 100.0 if status == "completed" else (100.0 * current / total if total else 0.0)
        stage = Stage(key=key, label=label, status=status, percent=round(percent, 1), current=current, total=total)
        return self("lifecycle.stage", label, f"{label}: {status}", stage=stage)

    def status(self, status: TrainingStatus, message: str = "", severity: Severity = "info", **data: Any) -> Event:
        return self("training.status", f"Training {status}", message, severity=severity,
                    data={"status": status, **data})

    def log(self, message: str, severity: Severity = "info", **data: Any) -> Event:
        return self("log.message", message[:120], message, severity=severity, data=data)

    def error(self, title: str, message: str, **data: Any) -> Event:
        return self("error", title, message, severity="error", data=data)


def describe_telemetry(telemetry: Telemetry | dict[str, Any] | None) -> str:
    """One line for people: step time and its split, throughput, peak memory, MFU ('' without telemetry)."""
    if not telemetry:
        return ""
    t = telemetry if isinstance(telemetry, Telemetry) else Telemetry.model_validate(telemetry)
    step = t.step_seconds or 1e-12
    split = " · ".join(f"{name} {100 * getattr(t, f'{name}_seconds') / step:.0f}%"
                       for name in ("data", "forward", "backward", "optimizer", "other"))
    memory = "RSS" if t.memory_kind == "rss" else "allocated"
    mfu = f", MFU {100 * t.mfu:.1f}%" if t.mfu is not None else ""
    return (f"{1000 * t.step_seconds:.1f} ms/step ({split}), {t.samples_per_second:.3g} samples/s, "
            f"{t.image_tokens_per_second:.4g} image tokens/s, peak {t.peak_memory_mb:.0f} MiB {memory}{mfu}")


def log_line(event: Event) -> str:
    """One human-readable line per event for the trainer's log (`trainer.log`, the source of a job's log tail)."""
    if event.progress is not None:
        p = event.progress
        loss = f" loss {p.loss:.4f}" if p.loss is not None else ""
        rate = f" lr {p.learning_rate:.2e}" if p.learning_rate is not None else ""
        cost = f" | {describe_telemetry(p.telemetry)}" if p.telemetry else ""
        return f"{event.timestamp} step {p.step}/{p.total_steps} epoch {p.epoch}{loss}{rate}{cost}"
    text = f"{event.timestamp} {event.severity.upper()} {event.type}: {event.title}"
    if event.message and event.message != event.title and not event.images:
        text += f" - {event.message}"
    trace = event.data.get("traceback") if event.type == "error" else None
    return f"{text}\n{trace.rstrip()}" if trace else text


def read_new_events(path: Path, offset: int = 0) -> tuple[list[Event], int]:
    """Events appended to a run's events file after byte `offset`, and the offset to read from next time.

    A torn last line (the trainer is mid-write) is left for the next call; an unparsable line is skipped."""
    lines, offset, _ = runfolder.read_lines(path, offset)
    events = []
    for line in lines:
        try:
            events.append(Event.model_validate_json(line))
        except ValueError:
            continue
    return events, offset
