"""The step loop: one straight story from the first micro-batch to the last checkpoint."""

from __future__ import annotations

import contextlib
import time

import torch
import torch.nn.functional as F

from tuneforge.data.plan import epoch_batches
from tuneforge.events import Progress
from tuneforge.trainer import control as control_codes
from tuneforge.trainer.batches import load_batch, prefetched, step_generator
from tuneforge.trainer.outputs import save_checkpoint
from tuneforge.trainer.setup import Run
from tuneforge.trainer.validation import configured as validation_configured, validate

PROGRESS_EVERY_S = 1.0


def pending_actions(run: Run) -> set[str]:
    """Control requests, agreed by all ranks (rank 0 reads the folder; any rank may have caught SIGTERM)."""
    local = run.control.pending() if run.is_main else ({"cancel"} if run.control.cancel_requested else set())
    if run.accelerator.num_processes == 1:
        return local
    flags = torch.tensor(control_codes.encode(local), device=run.accelerator.device)
    return control_codes.decode(run.accelerator.reduce(flags, "sum").clamp(max=1).tolist())


def train_loop(run: Run) -> str:
    """Train until total_steps; returns "completed", "stopped" or "cancelled"."""
    options, accelerator, events = run.options, run.accelerator, run.events
    rank, world = accelerator.process_index, accelerator.num_processes
    accumulation, batch_size = options.gradient_accumulation_steps, options.train_batch_size
    objective = run.adapter.objective
    last_report, samples_since, time_since = 0.0, 0, time.monotonic()
    events.status("running", f"training from step {run.global_step} to {run.total_steps}",
                  step=run.global_step, total_steps=run.total_steps)

    while run.global_step < run.total_steps:
        batches = epoch_batches(run.prepared, batch_size, run.seed, run.epoch, rank, world)
        usable = len(batches) // accumulation * accumulation
        start = run.step_in_epoch * accumulation
        step = run.global_step

        def load(index: int):
            micro = (index - start) % accumulation
            step_of_batch = step + (index - start) // accumulation
            caption_rng = step_generator(run.seed, step_of_batch, micro, rank, "caption")
            return load_batch(run, batches[index], caption_rng)

        stream = prefetched(list(range(start, usable)), load, options.dataloader_prefetch)
        for _ in range(start, usable, accumulation):
            loss_sum = torch.zeros((), device=accelerator.device)
            for micro in range(accumulation):
                batch = next(stream)
                sync = contextlib.nullcontext() if micro == accumulation - 1 else accelerator.no_sync(run.model)
                generator = step_generator(run.seed, run.global_step, micro, rank)
                noise = torch.randn(batch.latents.shape, generator=generator).to(batch.latents)
                noisy = objective.noisy(batch.latents, noise, generator)
                with sync:
                    with accelerator.autocast():
                        prediction = run.adapter.predict(run.model, noisy, batch)
                    loss = F.mse_loss(prediction.float(), noisy.target.float())
                    accelerator.backward(loss / accumulation)
                loss_sum += loss.detach()
            if options.max_grad_norm:
                accelerator.clip_grad_norm_(run.params, options.max_grad_norm)
            run.optimizer.step()
            run.scheduler.step()
            run.optimizer.zero_grad(set_to_none=True)
            run.global_step += 1
            run.step_in_epoch += 1
            samples_since += batch_size * accumulation * world

            loss_value = accelerator.reduce(loss_sum / accumulation, "mean").item()
            run.losses.append(loss_value)
            learning_rate = run.scheduler.get_last_lr()[0]
            accelerator.log({"train/loss": loss_value, "train/learning_rate": learning_rate}, step=run.global_step)
            now = time.monotonic()
            final = run.global_step >= run.total_steps
            if now - last_report >= PROGRESS_EVERY_S or final or run.global_step == 1:
                speed = samples_since / max(now - time_since, 1e-9)
                events("training.progress", "Training progress", f"step {run.global_step}/{run.total_steps}",
                       progress=Progress(step=run.global_step, total_steps=run.total_steps, epoch=run.epoch + 1,
                                         total_epochs=run.total_epochs, loss=loss_value,
                                         learning_rate=learning_rate, samples_per_second=round(speed, 3),
                                         percent=round(100.0 * run.global_step / run.total_steps, 2)))
                last_report, samples_since, time_since = now, 0, now

            actions = pending_actions(run)
            if "cancel" in actions:
                run.control.handled("cancel")
                return "cancelled"
            interval = options.checkpoint_step_interval
            if "checkpoint" in actions or "stop" in actions or (interval and run.global_step % interval == 0):
                reason = "stop" if "stop" in actions else "requested" if "checkpoint" in actions else "scheduled"
                save_checkpoint(run, reason)
                run.control.handled("checkpoint")
            if "stop" in actions:
                run.control.handled("stop")
                return "stopped"
            every = options.validation_step_interval
            if "validate" in actions or (validation_configured(options) and every and run.global_step % every == 0):
                validate(run)
                run.control.handled("validate")
            if final:
                return "completed"
        run.epoch, run.step_in_epoch = run.epoch + 1, 0
    return "completed"
