"""Checks that the engine will do what a config asks: its LyCORIS settings, what this machine can run, and that a
resume continues the same kind of training. Torch-free; the options are resolved (absolute paths)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from tuneforge import runfolder
from tuneforge.errors import FieldError, TuneforgeError
from tuneforge.options import trained
from tuneforge.options.capabilities import PRECISIONS
from tuneforge.options.lycoris import LycorisConfig, parse_lycoris, with_run_options
from tuneforge.options.registry import TrainingOptions
from tuneforge.services.config_files import read_json
from tuneforge.services.devices import cuda_device_count

LYCORIS_FIELD = "--lycoris_config"


def load_lycoris(config: TrainingOptions, path: Path | None, errors: list[FieldError],
                 warnings: list[FieldError]) -> LycorisConfig | None:
    """The LyCORIS settings of a LyCORIS run: the file, validated and completed by the run's LoRA options."""
    if config.model_type != "lora" or config.lora_type != "lycoris":
        return None
    if not config.lycoris_config:
        errors.append(FieldError(LYCORIS_FIELD, "required for --lora_type=lycoris: point it at a LyCORIS JSON file "
                                                "such as config/<env>/lycoris_config.json"))
        return None
    if path is None:
        return None  # outside the workspace: reported with the other config files
    if not path.is_file():
        errors.append(FieldError(LYCORIS_FIELD, f"file {path} not found; write it or fix the path"))
        return None
    try:
        data = read_json(path, LYCORIS_FIELD)
    except TuneforgeError as exc:
        errors.extend(exc.errors)
        return None
    parsed, problems = parse_lycoris(data)
    errors.extend(problems)
    if parsed is None:
        return None
    completed, notes = with_run_options(parsed, config)
    warnings.extend(notes)
    return completed


def check_machine(config: TrainingOptions, errors: list[FieldError]) -> None:
    """A precision that needs a package or an NVIDIA GPU this machine lacks is refused before any job starts."""
    for field in ("base_model_precision", "text_encoder_precision"):
        precision = PRECISIONS[getattr(config, field)]
        missing = [need for need in precision.needs if not _has(need)]
        if missing:
            lacking = " and ".join(_describe(need) for need in missing)
            errors.append(FieldError(f"--{field}", f"{precision.name} needs {lacking}, which this machine lacks: "
                                                   "use int8-quanto or int4-quanto (optimum-quanto, on any device)"))


def _has(need: str) -> bool:
    if need == "cuda":
        return cuda_device_count() > 0
    return importlib.util.find_spec(need) is not None


def _describe(need: str) -> str:
    return "an NVIDIA GPU" if need == "cuda" else f"the {need} package (pip install {need})"


def check_resume(config: TrainingOptions, lycoris: LycorisConfig | None, errors: list[FieldError]) -> None:
    """`resume_from_checkpoint` must name a complete checkpoint that trained the same layout as this run."""
    if not config.resume_from_checkpoint or not config.output_dir:
        return
    try:
        checkpoint = runfolder.find_checkpoint(Path(config.output_dir), config.resume_from_checkpoint)
    except ValueError as exc:
        errors.append(FieldError("--resume_from_checkpoint", str(exc)))
        return
    if checkpoint is None:
        return  # `latest` before the first checkpoint: a fresh start
    try:
        saved = runfolder.checkpoint_state(checkpoint).get("trained")
    except (OSError, ValueError) as exc:
        errors.append(FieldError("--resume_from_checkpoint", f"{checkpoint} cannot be read ({exc}); remove it or "
                                                             "resume from another checkpoint"))
        return
    if isinstance(saved, dict):  # checkpoints written before layouts were recorded are checked by the trainer
        errors.extend(trained.mismatches(saved, trained.layout(config, lycoris), checkpoint.name))
