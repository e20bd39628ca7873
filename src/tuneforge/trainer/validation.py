"""Validation images (built-in pipeline or an external script) and per-step previews.

Prompts are never re-encoded here: the caching stage stored the validation and negative prompt embeddings, so
the text encoder stays unloaded during training. Rank 0 samples; the other ranks wait.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

import torch
from PIL import Image, ImageOps

from tuneforge import runfolder
from tuneforge.data.images import load_image
from tuneforge.events import Image as EventImage
from tuneforge.options.registry import made_size, validation_sizes
from tuneforge.trainer import checkpoints, trackers
from tuneforge.trainer.outputs import hook_reporter
from tuneforge.trainer.scripts import context_for, run_hook
from tuneforge.trainer.setup import Run

EVENT_IMAGE_MAX_EDGE = 512  # finished validation images in events (full size on disk)
PREVIEW_MAX_EDGE = 256  # mid-sampling previews: one per sampling step, so they must stay small on the event line


def resolutions(options) -> list[tuple[int, int]]:
    """The validation images' sizes, as the pipelines make them (validate warns when that differs from the asked)."""
    return [made_size(size) for size in validation_sizes(options)]


def data_uri(image: Image.Image, max_edge: int = EVENT_IMAGE_MAX_EDGE) -> str:
    image = image.copy()
    image.thumbnail((max_edge, max_edge))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _tensor_to_pil(image: torch.Tensor) -> Image.Image:
    """The first image of a (B, 3, H, W) batch in [0, 1], rounded to 8 bits as diffusers' postprocessing does."""
    array = (image[0].permute(1, 2, 0).float().cpu().numpy() * 255).round().clip(0, 255).astype("uint8")
    return Image.fromarray(array)


class Interrupted(Exception):
    """A stop or cancel arrived while sampling: validation gives way at the next sampling step."""

    def __init__(self, step: int, total: int) -> None:
        super().__init__(f"interrupted at sampling step {step}/{total}")
        self.step, self.total = step, total


def _step_hook(run: Run, prompt: str, size: tuple[int, int], total: int):
    """Called at every sampling step: gives way to a stop or cancel, and sends previews when asked for."""
    preview = _preview_hook(run, prompt, size, total) if run.options.validation_preview else None

    def on_step(step_index: int, timestep: float, latents: torch.Tensor) -> None:
        if run.control.interrupting():
            raise Interrupted(step_index + 1, total)
        if preview is not None:
            preview(step_index, timestep, latents)

    return on_step


def _preview_hook(run: Run, prompt: str, size: tuple[int, int], total: int):
    every = run.options.validation_preview_steps

    def on_latents(step_index: int, timestep: float, latents: torch.Tensor) -> None:
        step = step_index + 1  # the first step is always sent, then every `every`-th, and the last
        if (step - 1) % every and step != total:
            return
        picture = _tensor_to_pil(run.adapter.decode_preview(latents[:1]))
        picture.thumbnail((PREVIEW_MAX_EDGE, PREVIEW_MAX_EDGE))
        relative = f"{_step_folder(run)}/{runfolder.PREVIEW_DIR}/{size[0]}x{size[1]}-{step:04d}.png"
        (run.output_dir / relative).parent.mkdir(parents=True, exist_ok=True)
        picture.save(run.output_dir / relative)
        run.events("validation.image", f"Validation (step {step}/{total}): {prompt[:40]}", prompt, body=prompt,
                   data={"step": step, "timestep": timestep, "resolution": list(size),
                         "validation_type": "intermediary", "prompt": prompt, "step_label": f"{step}/{total}",
                         "global_step": run.global_step, "relative_path": relative},
                   images=[EventImage(src=data_uri(picture, PREVIEW_MAX_EDGE))])

    return on_latents


def _step_folder(run: Run) -> str:
    """Where a validation's images go, relative to the output folder (the files API serves them from there)."""
    return runfolder.validation_folder(run.global_step)


def _embeds(run: Run, prompt: str) -> dict[str, torch.Tensor]:
    tensors = run.prepared.text_cache.get(run.prepared.prompt_keys[prompt])
    return {name: value.unsqueeze(0).to(run.accelerator.device) for name, value in tensors.items()}


@torch.no_grad()
def sample(run: Run, size: tuple[int, int]) -> Image.Image:
    """One validation image with the current weights (also used by tests to compare against a saved LoRA)."""
    options = run.options
    model = run.unwrapped()
    was_training = model.training
    model.eval()
    pipeline = run.adapter.build_pipeline(model)
    pipeline.set_progress_bar_config(disable=True)
    positive = _embeds(run, options.validation_prompt)
    negative = _embeds(run, options.validation_negative_prompt or "")
    steps = options.validation_num_inference_steps
    seed = options.validation_seed if options.validation_seed is not None else run.seed
    kwargs = run.adapter.pipeline_call_kwargs(*size)
    kwargs.update(run.adapter.pipeline_inputs(positive, negative, options.validation_guidance))
    kwargs.update(run.adapter.reference_inputs(reference_image(run, size)))
    kwargs.update(run.adapter.preview_kwargs(_step_hook(run, options.validation_prompt, size, steps), *size))
    try:
        with run.accelerator.autocast():
            result = pipeline(num_inference_steps=steps, generator=torch.Generator().manual_seed(seed),
                              output_type="latent", **kwargs)
        pixels = run.adapter.decode_sample(result.images, *size)
    finally:
        model.train(was_training)
    return _tensor_to_pil(pixels)


def _first_reference(run: Run):
    paired = next((s for s in run.prepared.all_samples() if s.references), None)
    return paired.references[0] if paired else None


def reference_path(run: Run) -> Path | None:
    """What an edit model's validation edits: `validation_reference_image`, else the first pair's reference."""
    if not run.adapter.flavour.needs_conditioning:
        return None
    if run.options.validation_reference_image:
        return Path(run.options.validation_reference_image)
    first = _first_reference(run)
    return first.path if first else None


def reference_image(run: Run, size: tuple[int, int]) -> Image.Image | None:
    """The validation reference at the validation size, its aspect kept (covered, then centre-cropped): the first
    pair's reference as training crops it, or `validation_reference_image` as it is."""
    path = reference_path(run)
    if path is None:
        return None
    first = None if run.options.validation_reference_image else _first_reference(run)
    if first is not None:
        image = load_image(first.path, first.plan)
    else:
        with Image.open(path) as opened:
            image = ImageOps.exif_transpose(opened).convert("RGB")
    return ImageOps.fit(image, size, Image.Resampling.LANCZOS)


def configured(options) -> bool:
    """Scheduled validation happens: a prompt for the built-in sampler, or an external script."""
    if options.validation_method == "external-script":
        return bool(options.validation_external_script)
    return bool(options.validation_prompt)


def validate(run: Run) -> None:
    options = run.options
    run.last_validated_step = run.global_step
    if options.validation_method == "external-script":
        if run.is_main and options.validation_external_script:
            checkpoint = checkpoints.final_path(run.output_dir, run.global_step)
            context = context_for(options, run.global_step, str(checkpoint) if checkpoint.is_dir() else "")
            run_hook("validation_external_script", options.validation_external_script,
                     context, background=options.validation_external_background,
                     report=hook_reporter(run), spec=run.spec)
        run.accelerator.wait_for_everyone()
        return
    if not options.validation_prompt:
        run.events.log("validation requested but validation_prompt is empty; nothing to sample", severity="warning")
        return
    if run.is_main:
        try:
            _sample_all(run)
        except Interrupted as interrupted:
            run.events.log(f"Validation at step {run.global_step} {interrupted}: a stop or cancel was requested",
                           severity="warning", step=run.global_step, interrupted=True)
    run.accelerator.wait_for_everyone()


def _sample_all(run: Run) -> None:
    """Rank 0: an image per validation resolution, saved under `validation/step-N/`, sent as one event."""
    options = run.options
    folder = run.output_dir / _step_folder(run)
    folder.mkdir(parents=True, exist_ok=True)
    images, paths, relative, pictures = [], [], [], {}
    for index, size in enumerate(resolutions(options)):
        picture = sample(run, size)
        path = folder / f"{index}-{size[0]}x{size[1]}.png"
        picture.save(path)
        paths.append(str(path))
        relative.append(path.relative_to(run.output_dir).as_posix())
        images.append(EventImage(src=data_uri(picture)))
        pictures[f"validation/{index}-{size[0]}x{size[1]}"] = picture
    trackers.log_images(run, pictures, run.global_step)
    reference = reference_path(run)
    extra = {"reference": str(reference)} if reference else {}
    run.events("training.validation", f"Validation at step {run.global_step}", options.validation_prompt,
               data={"step": run.global_step, "prompt": options.validation_prompt, "paths": paths,
                     "relative_paths": relative, **extra},
               images=images)
