"""The step loop: one straight story from the first micro-batch to the last checkpoint."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from tuneforge import runfolder
from tuneforge.data.plan import epoch_batches
from tuneforge.events import Progress
from tuneforge.models.base import TrainBatch
from tuneforge.models.flops import training_flops
from tuneforge.trainer.batches import load_batch, prefetched, step_generator
from tuneforge.trainer.outputs import save_checkpoint
from tuneforge.trainer.setup import Run
from tuneforge.trainer.telemetry import StepMeter
from tuneforge.trainer.validation import configured as validation_configured
from tuneforge.trainer.validation import validate

PROGRESS_EVERY_S = 1.0


def pending_actions(run: Run) -> set[str]:
    """Control requests, agreed by all ranks (rank 0 reads the folder; any rank may have caught SIGTERM)."""
    local = run.control.take() if run.is_main else ({"cancel"} if run.control.cancel_requested else set())
    if run.accelerator.num_processes == 1:
        return local
    flags = torch.tensor(runfolder.encode(local), device=run.accelerator.device)
    return runfolder.decode(run.accelerator.reduce(flags, "sum").clamp(max=1).tolist())


def epoch_stream(run: Run) -> tuple[int, Iterator[TrainBatch]]:
    """This epoch's optimizer steps, and the rest of its micro-batches from where the run stands (prefetched if
    asked)."""
    options, rank = run.options, run.accelerator.process_index
    accumulation = options.gradient_accumulation_steps
    batches = epoch_batches(run.prepared, options.train_batch_size, run.seed, run.epoch, rank,
                            run.accelerator.num_processes)
    first = run.step_in_epoch * accumulation
    usable = len(batches) // accumulation * accumulation
    step = run.global_step

    def load(index: int) -> TrainBatch:
        offset = index - first  # caption dropout is seeded by the batch's own step, wherever prefetching is
        caption_rng = step_generator(run.seed, step + offset // accumulation, offset % accumulation, rank, "caption")
        return load_batch(run, batches[index], caption_rng)

    return usable // accumulation, prefetched(list(range(first, usable)), load, options.dataloader_prefetch)


@dataclass
class Reporter:
    """Progress events at most once a second (and at the first and last step). Each lists every step's loss and
    learning rate since the previous one and what those steps cost (`telemetry`). Losses stay on the device until
    then: reading one back makes the host wait for the device, so it happens once a report, not once a step."""

    meter: StepMeter
    last: float = 0.0
    since: float = field(default_factory=time.monotonic)
    steps: list[int] = field(default_factory=list)
    losses: list[torch.Tensor] = field(default_factory=list)
    rates: list[float] = field(default_factory=list)

    def step(self, run: Run, loss: torch.Tensor, learning_rate: float) -> None:
        self.steps.append(run.global_step)
        self.losses.append(loss)
        self.rates.append(learning_rate)
        if time.monotonic() - self.last >= PROGRESS_EVERY_S or run.global_step in (1, run.total_steps):
            self.flush(run)

    def flush(self, run: Run) -> None:
        """Report the steps since the last report, if any (also when a run stops, is cancelled or fails)."""
        if not self.steps:
            return
        now = time.monotonic()
        losses = torch.stack(self.losses).tolist()
        run.losses.extend(losses)
        for step, value, rate in zip(self.steps, losses, self.rates, strict=True):
            run.accelerator.log({"train/loss": value, "train/learning_rate": rate}, step=step)
        telemetry = self.meter.report(now - self.since)
        if telemetry is not None:
            figures = {f"perf/{key}": value for key, value in telemetry.model_dump().items()
                       if isinstance(value, float)}
            run.accelerator.log({"train/samples_per_second": telemetry.samples_per_second,
                                 "train/epoch": run.epoch + 1, **figures}, step=run.global_step)
        run.events("training.progress", "Training progress", f"step {run.global_step}/{run.total_steps}",
                   progress=Progress(step=run.global_step, total_steps=run.total_steps, epoch=run.epoch + 1,
                                     total_epochs=run.total_epochs, loss=losses[-1], learning_rate=self.rates[-1],
                                     samples_per_second=telemetry.samples_per_second if telemetry else None,
                                     percent=round(100.0 * run.global_step / run.total_steps, 2),
                                     steps=self.steps, losses=losses, learning_rates=self.rates,
                                     telemetry=telemetry))
        self.last, self.since = now, now
        self.steps, self.losses, self.rates = [], [], []


def step_cost(run: Run, config: Any, batch: TrainBatch) -> tuple[int, int, int]:
    """Samples and image tokens of one micro-batch on all ranks (as if each rank's were this one), and its model
    FLOPs on this rank (MFU is per device)."""
    samples, world = batch.latents.shape[0], run.accelerator.num_processes
    image_tokens, text_tokens = run.adapter.token_counts(config, batch)
    forward = run.adapter.forward_flops(config, image_tokens, text_tokens).times(samples)
    return (samples * world, image_tokens * samples * world,
            training_flops(forward, trains_base=run.options.model_type == "full"))


def after_step(run: Run) -> str | None:
    """Control requests and scheduled work at an optimizer-step boundary; the outcome when the run ends here."""
    options = run.options
    actions = pending_actions(run)
    if "cancel" in actions:
        run.control.done("cancel")
        return "cancelled"
    interval = options.checkpoint_step_interval
    if {"checkpoint", "stop"} & actions or (interval and run.global_step % interval == 0):
        reason = "stop" if "stop" in actions else "requested" if "checkpoint" in actions else "scheduled"
        save_checkpoint(run, reason)
        run.control.done("checkpoint")
    if "stop" in actions:  # a validation asked for too is left: the server reports it as not carried out
        run.control.done("stop")
        return "stopped"
    every = options.validation_step_interval
    if "validate" in actions or (validation_configured(options) and every and run.global_step % every == 0):
        validate(run)
        run.control.done("validate")
    return "completed" if run.global_step >= run.total_steps else None


def train_loop(run: Run) -> str:
    """Train until total_steps; returns "completed", "stopped" or "cancelled". The steps reported last are never
    lost: on a stop, a cancel or an error the report is made before the loop returns or raises."""
    reporter = Reporter(StepMeter(run.accelerator.device))
    try:
        return _steps(run, reporter)
    except BaseException:
        with contextlib.suppress(Exception):  # after a device error the losses may not be readable any more
            reporter.flush(run)
        raise


def _steps(run: Run, reporter: Reporter) -> str:
    options, accelerator, meter = run.options, run.accelerator, reporter.meter
    rank = accelerator.process_index
    accumulation = options.gradient_accumulation_steps
    objective, config = run.adapter.objective, run.unwrapped().config
    run.events.status("running", f"training from step {run.global_step} to {run.total_steps}",
                      step=run.global_step, total_steps=run.total_steps)

    while run.global_step < run.total_steps:
        steps, stream = epoch_stream(run)
        for _ in range(run.step_in_epoch, steps):
            meter.begin()
            loss_sum = torch.zeros((), device=accelerator.device)
            for micro in range(accumulation):
                batch = next(stream)
                meter.lap("data")
                meter.count(*step_cost(run, config, batch))
                sync = contextlib.nullcontext() if micro == accumulation - 1 else accelerator.no_sync(run.model)
                generator = step_generator(run.seed, run.global_step, micro, rank)
                noise = torch.randn(batch.latents.shape, generator=generator).to(batch.latents)
                noisy = objective.noisy(batch.latents, noise, generator)
                with sync:
                    with accelerator.autocast():
                        prediction = run.adapter.predict(run.model, noisy, batch)
                    loss = F.mse_loss(prediction.float(), noisy.target.float())
                    meter.lap("forward")
                    accelerator.backward(loss / accumulation)
                    meter.lap("backward")
                loss_sum += loss.detach()
            if options.max_grad_norm:
                accelerator.clip_grad_norm_(run.params, options.max_grad_norm)
            run.optimizer.step()
            run.scheduler.step()
            run.optimizer.zero_grad(set_to_none=True)
            meter.lap("optimizer")
            meter.end_step()
            run.global_step += 1
            run.step_in_epoch += 1

            loss_value = accelerator.reduce(loss_sum / accumulation, "mean")  # still on the device
            if run.is_main:
                run.control.report_step(run.global_step)
            reporter.step(run, loss_value, run.scheduler.get_last_lr()[0])  # losses reach trackers before images
            outcome = after_step(run)
            if outcome is not None:
                reporter.flush(run)
                return outcome
        run.epoch, run.step_in_epoch = run.epoch + 1, 0
    return "completed"
