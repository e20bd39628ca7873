"""One training run from a RunSpec: start-up stages, the loop, the final save. Used by `__main__` and the CLI."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import torch

from tuneforge import runfolder
from tuneforge.errors import FieldError, Invalid
from tuneforge.events import EventWriter
from tuneforge.models import get_adapter
from tuneforge.trainer import checkpoints, trackers
from tuneforge.trainer.control import Control
from tuneforge.trainer.loop import train_loop
from tuneforge.trainer.outputs import save_checkpoint, save_final
from tuneforge.trainer.scripts import wait_for_hooks
from tuneforge.trainer.setup import (
    Run,
    choose_seed,
    choose_threads,
    choose_trainable,
    make_accelerator,
    prepare_data,
    prepare_model,
    prepare_training,
)
from tuneforge.trainer.validation import configured as validation_configured
from tuneforge.trainer.validation import validate

HOOK_WAIT_S = 600.0  # how long the end of a run waits for background hooks (post_checkpoint_script, ...)


def build_run(spec: Any, run_dir: Path | None, events: EventWriter | None = None) -> Run:
    options = spec.config
    # The one place the output folder is decided: caches default to living inside it too.
    output_dir = Path(options.output_dir or (spec.workspace / "output" / (spec.job_id or "run")))
    torch.set_num_threads(choose_threads(options))
    accelerator = make_accelerator(spec, output_dir)
    if events is None:
        path = Path(run_dir) / runfolder.EVENTS_FILE if run_dir else None
        events = EventWriter(path, enabled=accelerator.is_main_process)
    else:
        events.enabled = events.enabled and accelerator.is_main_process
    if accelerator.is_main_process:
        try:
            output_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # a file in the way, no permission: the config's problem, not a crash
            why = "it is a file, not a folder" if output_dir.is_file() else exc.strerror
            message = f"output_dir: cannot use {output_dir} ({why}); choose another output_dir"
            raise Invalid(message, [FieldError("output_dir", message)]) from exc
    return Run(spec=spec, output_dir=output_dir, accelerator=accelerator, events=events, control=Control(run_dir))


def weights_checksums(run: Run) -> list[float]:
    """One checksum of the trainable weights per rank: equal values show the replicas stayed in sync."""

    total = sum(p.detach().double().sum() for p in run.params).reshape(1).to(run.accelerator.device)
    return [float(x) for x in run.accelerator.gather(total).cpu()]


def prepare(run: Run, resume: Path | None) -> None:
    """Everything before the first step: seed, model adapter, what is trained, cached data, the model, optimizer and
    schedule (from `resume` when given). `bench/step_overhead.py` starts from here too."""
    from accelerate.utils import set_seed

    run.seed = choose_seed(run, resume)
    run.adapter = get_adapter(run.options, run.accelerator.device)
    choose_trainable(run)
    prepare_data(run)
    set_seed(run.seed)  # before the LoRA is initialised, so a fresh run is reproducible
    prepare_model(run)
    prepare_training(run, resume)


def execute(run: Run) -> str:
    """All stages and the loop; returns "completed", "stopped" or "cancelled". Errors propagate; the trackers are
    closed however the run ends (the trainer's process ends without Python's exit handlers)."""
    try:
        return _stages(run)
    finally:
        with contextlib.suppress(Exception):
            run.accelerator.end_training()


def _stages(run: Run) -> str:
    options = run.options
    run.events.status("started", f"{options.model_family} {options.model_type} run starting",
                      output_dir=str(run.output_dir), cpu_threads=torch.get_num_threads())
    prepare(run, checkpoints.resolve(run.output_dir, options.resume_from_checkpoint))
    trackers.start(run)
    outcome = train_loop(run)
    final = None
    if outcome == "completed":
        save_checkpoint(run, "final")
        if validation_configured(options) and run.last_validated_step != run.global_step:
            validate(run)
        final = save_final(run)
    # Collective work first: only rank 0 runs hooks, the other ranks must not wait on a gather meanwhile.
    checksums = weights_checksums(run) if outcome == "completed" else None
    if outcome != "cancelled":  # cancel is immediate: running hooks are left to finish on their own
        still_running = wait_for_hooks(HOOK_WAIT_S)
        if still_running:
            run.events.log(f"not waiting longer than {HOOK_WAIT_S:.0f}s for {', '.join(still_running)}",
                           severity="warning", hooks=still_running)
    if outcome == "completed":
        run.events.status("completed", f"finished at step {run.global_step}", severity="success",
                          step=run.global_step, output_path=str(final) if final else None,
                          weights_checksums=checksums)
    elif outcome == "stopped":
        run.events.status("stopped", f"stopped at step {run.global_step}; resume with resume_from_checkpoint=latest",
                          step=run.global_step)
    else:
        run.events.status("cancelled", f"cancelled at step {run.global_step}", severity="warning",
                          step=run.global_step)
    return outcome
