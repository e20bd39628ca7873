"""Experiment trackers (TensorBoard, Weights & Biases) through accelerate: the run's config, its metrics and its
validation images."""

from __future__ import annotations

import netrc
import os
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
from PIL import Image

from tuneforge.trainer.setup import Run

WANDB_HOST = "https://api.wandb.ai"


def wandb_mode(environ: Mapping[str, str] = os.environ) -> str | None:
    """"offline" when wandb has no credentials (it then writes a run folder that `wandb sync` uploads later);
    None, leaving the mode to wandb, when WANDB_MODE is set, an API key is in the environment, or `wandb login`
    stored one in the netrc file."""
    if environ.get("WANDB_MODE") or environ.get("WANDB_API_KEY"):
        return None
    host = urlparse(environ.get("WANDB_BASE_URL") or WANDB_HOST).hostname or ""
    path = Path(environ.get("NETRC") or Path(environ.get("HOME") or Path.home()) / ".netrc")
    try:
        return None if netrc.netrc(str(path)).authenticators(host) else "offline"
    except (OSError, netrc.NetrcParseError):
        return "offline"


def start(run: Run) -> None:
    options = run.options
    if options.report_to in (None, "none"):
        return
    config = {k: v for k, v in options.model_dump().items() if isinstance(v, int | float | str | bool)}
    init_kwargs = {}
    if options.report_to == "wandb":
        settings: dict = {"name": options.tracker_run_name, "dir": str(run.output_dir)}
        mode = wandb_mode()
        if mode:
            settings["mode"] = mode
        init_kwargs["wandb"] = settings
    run.accelerator.init_trackers(options.tracker_project_name, config=config, init_kwargs=init_kwargs)


def log_images(run: Run, images: dict[str, Image.Image], step: int) -> None:
    """Validation images, one tag each, to every tracker that takes images."""
    for tracker in run.accelerator.trackers:
        if tracker.name == "tensorboard":
            tracker.log_images({tag: np.stack([np.asarray(image)]) for tag, image in images.items()}, step,
                               dataformats="NHWC")
        elif tracker.name == "wandb":
            tracker.log_images({tag: [image] for tag, image in images.items()}, step)
