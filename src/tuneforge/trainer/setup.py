"""Start-up of a run, stage by stage: accelerator, data discovery, caches, model, optimizer, resume.

Each stage reports a `lifecycle.stage` event. The result is a `Run` that the step loop (`loop.py`) drives.
"""

from __future__ import annotations

import os
import random
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from tuneforge import runfolder
from tuneforge.data import plan as data_plan
from tuneforge.data import prepare as data_prepare
from tuneforge.errors import Invalid
from tuneforge.events import EventWriter
from tuneforge.models.precision import quantise
from tuneforge.models.trainable import Trainable, make_trainable
from tuneforge.options import trained
from tuneforge.trainer import checkpoints
from tuneforge.trainer.control import Control
from tuneforge.trainer.optim import build_optimizer, build_scheduler

EMPTY_PROMPT = ""


@dataclass
class Run:
    spec: Any
    output_dir: Path
    accelerator: Any
    events: EventWriter
    control: Control
    adapter: Any = None
    prepared: Any = None
    model: Any = None  # the prepared (possibly DDP-wrapped) transformer
    params: list[torch.nn.Parameter] = field(default_factory=list)
    trainable: Trainable | None = None  # what is trained: full, LoRA or LyCORIS
    optimizer: Any = None
    scheduler: Any = None
    seed: int = 0
    global_step: int = 0
    epoch: int = 0  # where the data stands: epochs differ in length, so global_step alone cannot say
    step_in_epoch: int = 0
    total_steps: int = 0
    total_epochs: int = 0
    resumed_from: Path | None = None
    last_validated_step: int = -1
    last_saved_step: int = -1
    losses: list[float] = field(default_factory=list)

    @property
    def options(self) -> Any:
        return self.spec.config

    @property
    def is_main(self) -> bool:
        return self.accelerator.is_main_process

    def unwrapped(self) -> torch.nn.Module:
        return self.accelerator.unwrap_model(self.model)


def choose_threads(options: Any) -> int:
    """torch's intra-op threads: `trainer_threads`, else `OMP_NUM_THREADS` when set, else the CPUs this process may
    use (its affinity, within its container's CPU quota, shared among the ranks on this machine) less one for the
    server and data loading. A pool as wide as the machine spins against whatever else runs on it: on two cores,
    one busy core made each tiny step about four times slower."""
    if options.trainer_threads:
        return options.trainer_threads
    if (given := os.environ.get("OMP_NUM_THREADS", "")).isdecimal() and int(given) > 0:
        return int(given)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    cpus = min(cpus, _cpu_quota() or cpus)
    ranks = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    return max(1, cpus // max(1, ranks) - 1)


def _cpu_quota() -> int | None:
    """The CPUs a cgroup v2 quota allows (`docker run --cpus`), rounded up; None without a quota."""
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        return max(1, -(-int(quota) // int(period))) if quota != "max" else None
    except (OSError, ValueError):
        return None


def make_accelerator(spec: Any, output_dir: Path) -> Any:
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, GradientState
    from accelerate.utils import DistributedDataParallelKwargs, ProjectConfiguration

    options = spec.config
    # Several runs in one Python process (tests, the CLI) must not inherit the previous run's precision.
    AcceleratorState._reset_state()
    GradientState._reset_state()
    trackers = None if options.report_to in (None, "none") else options.report_to
    # Launched as several processes on a machine without GPUs: accelerate only picks gloo with cpu=True.
    several = int(os.environ.get("WORLD_SIZE", "1")) > 1
    # LyCORIS module dropout leaves whole layers out of a step, whose parameters DDP must then not wait for.
    skips_layers = bool(spec.lycoris and spec.lycoris.module_dropout)
    return Accelerator(
        cpu=several and not torch.cuda.is_available(),
        mixed_precision=options.mixed_precision,
        log_with=trackers,
        project_config=ProjectConfiguration(project_dir=str(output_dir), logging_dir=str(output_dir / "logs")),
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=skips_layers)],
    )


@contextmanager
def stage(run: Run, key: str, label: str):
    """Report a stage as running, then completed (or failed); yields a `progress(current, total)` callback."""
    run.events.stage(key, label, "running")
    try:
        yield lambda current, total: run.events.stage(key, label, "running", current, total)
    except BaseException:
        run.events.stage(key, label, "failed")
        raise
    run.events.stage(key, label, "completed")


def choose_seed(run: Run, resume: Path | None) -> int:
    """The run's seed: from the checkpoint when resuming, the option, or a fresh random one (then recorded)."""
    if resume is not None:
        return int(runfolder.checkpoint_state(resume)["seed"])
    if run.options.seed is not None:
        return int(run.options.seed)
    seed = torch.tensor([random.SystemRandom().randrange(2**31)], device=run.accelerator.device)
    return int(run.accelerator.reduce(seed, "sum").item()) if run.accelerator.num_processes > 1 else int(seed.item())


def prepare_data(run: Run) -> None:
    options, accelerator = run.options, run.accelerator
    rank, world = accelerator.process_index, accelerator.num_processes
    with stage(run, "discovering_data", "Discovering data") as progress:
        prepared = data_prepare.discover_all(options, run.spec.datasets, run.output_dir, progress)
        if prepared.warnings:
            run.events.log(f"{len(prepared.warnings)} caption warning(s); first: {prepared.warnings[0]}",
                           severity="warning", warnings=prepared.warnings[:50])
    with stage(run, "caching_latents", "Caching latents") as progress:
        data_prepare.cache_latents(prepared, run.adapter, rank, world, progress=progress)
        skipped = prepared.skipped  # found unusable by discovery, or while this rank encoded its share
        if world > 1:
            from accelerate.utils import gather_object

            skipped = list(dict.fromkeys(gather_object(skipped)))
        for path, reason in skipped:
            run.events.log(f"skipped {path}: {reason}", severity="warning", file=path, reason=reason)
        accelerator.wait_for_everyone()
        data_prepare.finalize(prepared)
        run.adapter.unload_vae()
    with stage(run, "caching_text_embeds", "Caching text embeddings") as progress:
        extra = [EMPTY_PROMPT, options.validation_negative_prompt or EMPTY_PROMPT]
        if options.validation_prompt:
            extra.append(options.validation_prompt)
        data_prepare.cache_text(prepared, run.adapter, extra, rank, world, progress=progress)
        accelerator.wait_for_everyone()
        run.adapter.unload_text_encoders()
    run.prepared = prepared
    pairs = f" ({prepared.pairs} with their references)" if prepared.pairs else ""
    run.events.log(f"data ready: {len(prepared.all_samples())} images{pairs}; encoded {prepared.encoded_latents} "
                   f"latents and {prepared.encoded_texts} captions (the rest from cache)",
                   images=len(prepared.all_samples()), pairs=prepared.pairs, encoded_latents=prepared.encoded_latents,
                   encoded_texts=prepared.encoded_texts)


def choose_trainable(run: Run) -> None:
    """What is trained, checked against the transformer's layers before any slow work."""
    run.trainable = make_trainable(run.options, run.spec.lycoris, run.adapter)
    run.trainable.check(run.adapter.transformer_skeleton())


def prepare_model(run: Run) -> None:
    """Load the transformer, quantise its frozen base if asked, then make it trainable the configured way."""
    options = run.options
    with stage(run, "loading_model", "Loading model"):
        transformer = run.adapter.load_transformer().to(run.accelerator.device)
        quantise(transformer, options.base_model_precision)
        run.params = run.trainable.attach(transformer)
        if options.gradient_checkpointing:
            transformer.enable_gradient_checkpointing()
        if options.compile_transformer:
            compile_blocks(transformer)
        transformer.train()
        run.model = transformer


def compile_blocks(transformer: torch.nn.Module) -> int:
    """torch.compile each repeated block in place (after any adapter is attached, so it is compiled in): blocks
    compile once and are reused, where the whole model would recompile for every new shape. Returns how many."""
    blocks = [block for name in ("transformer_blocks", "single_transformer_blocks")
              for block in getattr(transformer, name, None) or ()]
    for block in blocks:
        block.compile()
    return len(blocks)


def plan_schedule(run: Run) -> None:
    options = run.options
    sizes = (run.prepared, options.train_batch_size, run.seed, options.gradient_accumulation_steps,
             run.accelerator.num_processes)
    if data_plan.epoch_steps(*sizes, epoch=0) < 1:
        raise Invalid(
            "train_batch_size x gradient_accumulation_steps x processes is larger than the dataset gives in one "
            "epoch; lower them or add images")
    run.total_steps, run.total_epochs = data_plan.schedule(*sizes, options.max_train_steps, options.num_train_epochs)


def register_state_hooks(run: Run) -> None:
    """Checkpoints hold only the trainable tensors (the LoRA or LyCORIS network, or the whole transformer)."""
    from safetensors.torch import load_file

    from tuneforge.models.files import save_tensors

    def named_trainable() -> dict[str, torch.nn.Parameter]:
        return {name: p for name, p in run.unwrapped().named_parameters() if p.requires_grad}

    def save_hook(models, weights, output_dir):
        if run.is_main:
            save_tensors(dict(named_trainable()), Path(output_dir) / "trainable.safetensors")
        weights.clear()

    def load_hook(models, input_dir):
        saved = load_file(str(Path(input_dir) / "trainable.safetensors"))
        current = named_trainable()
        name = Path(input_dir).name
        if set(saved) != set(current) or any(saved[k].shape != p.shape for k, p in current.items()):
            reason = run.trainable.explain_mismatch(saved, current) if set(saved) == set(current) else None
            raise checkpoints.ResumeError(reason or f"checkpoint {name} was saved from another model or adapter "
                                                    "setup than this run's; resume with the settings it was trained "
                                                    "with, or start a fresh run")
        with torch.no_grad():
            for key, param in current.items():
                param.copy_(saved[key].to(param.device, param.dtype))
        models.clear()

    run.accelerator.register_save_state_pre_hook(save_hook)
    run.accelerator.register_load_state_pre_hook(load_hook)


def check_resume_layout(run: Run, checkpoint: Path) -> None:
    """The checkpoint must have trained what this run trains (validate checks it too, before the job starts)."""
    saved = runfolder.checkpoint_state(checkpoint).get("trained")
    if isinstance(saved, dict):
        problems = trained.mismatches(saved, trained.layout(run.options, run.spec.lycoris), checkpoint.name)
        if problems:
            raise checkpoints.ResumeError("; ".join(f"{p.field}: {p.message}" for p in problems))


def prepare_training(run: Run, resume: Path | None) -> None:
    options, accelerator = run.options, run.accelerator
    with stage(run, "preparing_training", "Preparing training"):
        plan_schedule(run)
        optimizer = build_optimizer(options.optimizer, run.params, options.learning_rate)
        run.scheduler = build_scheduler(options, optimizer, run.total_steps)
        # The scheduler is not passed to prepare(): accelerate would step it once per process.
        run.model, run.optimizer = accelerator.prepare(run.model, optimizer)
        accelerator.register_for_checkpointing(run.scheduler)
        register_state_hooks(run)
        if resume is not None:
            check_resume_layout(run, resume)
            accelerator.load_state(str(resume))
            state = runfolder.checkpoint_state(resume)
            run.global_step = run.last_saved_step = int(state["global_step"])
            if "epoch" in state:
                run.epoch, run.step_in_epoch = int(state["epoch"]), int(state["step_in_epoch"])
            else:  # written before epochs were recorded: exact unless a dataset has probability < 1
                run.epoch, run.step_in_epoch = divmod(run.global_step, int(state["steps_per_epoch"]))
            run.resumed_from = resume
            run.events.log(f"resumed from {resume.name} at step {run.global_step}", checkpoint=str(resume))
