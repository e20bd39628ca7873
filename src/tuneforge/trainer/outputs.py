"""Writing checkpoints (all ranks take part) and the final model (rank 0)."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from tuneforge.events import CheckpointInfo
from tuneforge.options import trained
from tuneforge.trainer import checkpoints
from tuneforge.trainer.scripts import context_for, run_hook
from tuneforge.trainer.setup import Run


def _state(run: Run, reason: str) -> dict:
    return {
        "global_step": run.global_step, "epoch": run.epoch, "step_in_epoch": run.step_in_epoch,
        "seed": run.seed, "total_steps": run.total_steps, "model_family": run.options.model_family,
        "model_type": run.options.model_type, "reason": reason, "saved_at": time.time(),
        "job_id": run.spec.job_id, "trained": trained.layout(run.options, run.spec.lycoris),
    }


def hook_reporter(run: Run):
    def report(severity: str, message: str, data: dict) -> None:
        run.events.log(message, severity=severity, **data)
    return report


def save_checkpoint(run: Run, reason: str) -> Path | None:
    """Save into a temporary folder, mark complete, rename, rotate; then the post-checkpoint hook."""
    accelerator, output_dir, step = run.accelerator, run.output_dir, run.global_step
    if run.last_saved_step == step:
        return None  # this run already saved (or resumed from) this step, e.g. the last scheduled one
    if run.is_main:
        checkpoints.begin(output_dir, step)
    accelerator.wait_for_everyone()
    temporary = checkpoints.temporary_path(output_dir, step)
    accelerator.save_state(str(temporary))
    if run.is_main:
        run.trainable.save_in_checkpoint(run.unwrapped(), temporary)  # an adapter's checkpoint is also usable
    accelerator.wait_for_everyone()
    final = checkpoints.final_path(output_dir, step)
    if run.is_main:
        checkpoints.commit(output_dir, step, _state(run, reason))
        checkpoints.rotate(output_dir, run.options.checkpoints_total_limit, keep=final)
        run.events("training.checkpoint", "Checkpoint saved", f"saved {final.name} ({reason})",
                   severity="success", data={"reason": reason},
                   checkpoint=CheckpointInfo(name=final.name, path=str(final), step=step))
        if run.options.post_checkpoint_script:
            run_hook("post_checkpoint_script", run.options.post_checkpoint_script,
                     context_for(run.options, step, str(final)), background=True, report=hook_reporter(run),
                     spec=run.spec)
    accelerator.wait_for_everyone()
    run.last_saved_step = step
    return final


def save_final(run: Run) -> Path | None:
    """The run's output, written aside and then moved into place: an adapter's files into output_dir (e.g.
    `pytorch_lora_weights.safetensors`), a full fine-tune's pipeline as output_dir/pipeline."""
    if not run.is_main:
        return None
    output_dir, trainable = run.output_dir, run.trainable
    temporary = output_dir / ".final.tmp"
    shutil.rmtree(temporary, ignore_errors=True)
    written = trainable.save(run.unwrapped(), temporary)
    if trainable.output_folder is None:
        for item in temporary.iterdir():
            os.replace(item, output_dir / item.name)
        temporary.rmdir()
        return output_dir / written.relative_to(temporary)
    final = output_dir / trainable.output_folder
    if final.exists():
        shutil.rmtree(final)
    os.replace(temporary, final)
    return final
