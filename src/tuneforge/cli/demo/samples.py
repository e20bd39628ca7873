"""What the demo trains on: a tiny random-weight model built locally, and a drawn dataset uploaded over the API
(pictures of shapes with captions; for an edit model, pairs of a shape and the same shape recoloured)."""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from rich.markup import escape

from tuneforge.cli.client import CliError, check
from tuneforge.cli.datasets import ensure_folder, send_all
from tuneforge.cli.demo.api import console

DATASET_NAME = "demo-shapes"
EDITS_NAME, REFERENCES_NAME = "demo-edits", "demo-references"


@dataclass(frozen=True)
class DemoModel:
    """A tiny random-weight model of one family, and the environment the demo trains it in."""

    family: str
    flavour: str | None
    label: str
    folder: Path
    env: str
    edits: bool = False  # trains on (edit, reference) pairs


@dataclass(frozen=True)
class DemoData:
    """The uploaded dataset's folders on the server."""

    images: Path
    references: Path | None = None


MODELS = {
    "pixart_sigma": DemoModel("pixart_sigma", None, "PixArt Sigma", Path("models") / "tiny-pixart", "demo"),
    "flux": DemoModel("flux", "dev", "Flux.1 dev", Path("models") / "tiny-flux-dev", "demo-flux"),
    "kontext": DemoModel("flux", "kontext", "Flux.1 Kontext", Path("models") / "tiny-flux-kontext", "demo-kontext",
                         edits=True),
}

# Simple shapes, so the captions describe exactly what is in each picture.
COLOURS = {"red": (220, 40, 40), "green": (40, 170, 70), "blue": (40, 80, 220), "yellow": (235, 200, 40)}
BACKGROUNDS = {"white": (245, 245, 245), "black": (20, 20, 20)}
SHAPES = ("circle", "square", "triangle")


def make_model(workspace: Path, model: DemoModel) -> Path:
    folder = workspace / model.folder
    if (folder / "model_index.json").is_file():
        console.print(f"[green]✓[/green] Reusing the tiny {model.label} model in {escape(str(folder))}")
        return folder
    started = time.monotonic()
    with console.status(f"Building a tiny random-weight {model.label} model (no download)…"):
        _build_model(folder, model)
    console.print(f"[green]✓[/green] Tiny {model.label} model in {escape(str(folder))} "
                  f"({time.monotonic() - started:.1f} s)")
    return folder


def _build_model(folder: Path, model: DemoModel) -> None:
    # These import torch: only now, not whenever the CLI starts.
    from transformers.utils import logging as transformers_logging

    from tuneforge.models.tiny import make_tiny_model

    transformers_logging.disable_progress_bar()  # its bar would fight with the spinner
    # Built aside and renamed, so an interrupted build is never mistaken for a model to reuse.
    building = folder.with_name(folder.name + ".partial")
    shutil.rmtree(building, ignore_errors=True)
    make_tiny_model(model.family, building, flavour=model.flavour)
    shutil.rmtree(folder, ignore_errors=True)  # a leftover without model_index.json is no model
    building.rename(folder)


def _picture(index: int, colour_shift: int = 0):
    """The index-th shape picture (its colour moved on by `colour_shift`), its file stem and its words."""
    from PIL import Image, ImageDraw

    colours, backgrounds = list(COLOURS.items()), list(BACKGROUNDS.items())
    colour_name, colour = colours[(index + colour_shift) % len(colours)]
    background_name, background = backgrounds[index // len(colours)]
    shape = SHAPES[index % len(SHAPES)]
    size = (64, 64) if index % 2 == 0 else (96, 64)
    picture = Image.new("RGB", size, background)
    _draw_shape(ImageDraw.Draw(picture), shape, size, colour)
    return picture, f"{index:02d}-{shape}", (colour_name, shape, background_name)


def draw_samples(folder: Path) -> list[Path]:
    """Eight small pictures of coloured shapes, each with a `.txt` caption; returns the files written."""
    written: list[Path] = []
    for index in range(8):
        picture, stem, (colour, shape, background) = _picture(index)
        stem = f"{index:02d}-{colour}-{shape}"
        picture.save(folder / f"{stem}.png")
        (folder / f"{stem}.txt").write_text(f"a {colour} {shape} on a {background} background")
        written += [folder / f"{stem}.png", folder / f"{stem}.txt"]
    return written


def draw_pairs(edits: Path, references: Path) -> tuple[list[Path], list[Path]]:
    """Eight edit pairs: a shape (the reference) and the same shape in the next colour (the edit, captioned with the
    instruction), under the same name in the two folders; returns the files written to each."""
    written: tuple[list[Path], list[Path]] = ([], [])
    for index in range(8):
        before, stem, _ = _picture(index)
        after, _, (colour, shape, _) = _picture(index, colour_shift=1)
        before.save(references / f"{stem}.png")
        after.save(edits / f"{stem}.png")
        (edits / f"{stem}.txt").write_text(f"make the {shape} {colour}")
        written[0].extend([edits / f"{stem}.png", edits / f"{stem}.txt"])
        written[1].append(references / f"{stem}.png")
    return written


def _draw_shape(draw: Any, shape: str, size: tuple[int, int], colour: tuple[int, int, int]) -> None:
    width, height = size
    box = (width // 2 - 22, height // 2 - 22, width // 2 + 22, height // 2 + 22)
    if shape == "circle":
        draw.ellipse(box, fill=colour)
    elif shape == "square":
        draw.rectangle(box, fill=colour)
    else:
        draw.polygon([(width // 2, box[1]), (box[0], box[3]), (box[2], box[3])], fill=colour)


def upload_dataset(client: httpx.Client, demo: DemoModel) -> DemoData:
    """Draw the samples in a temporary folder and upload them as `tuneforge datasets upload` does; returns the
    folders on the server."""
    with tempfile.TemporaryDirectory(prefix="tuneforge-demo-") as temporary:
        if not demo.edits:
            return DemoData(_upload(client, DATASET_NAME, draw_samples(Path(temporary))))
        edits, references = Path(temporary) / "edits", Path(temporary) / "references"
        edits.mkdir()
        references.mkdir()
        edit_files, reference_files = draw_pairs(edits, references)
        return DemoData(_upload(client, EDITS_NAME, edit_files), _upload(client, REFERENCES_NAME, reference_files))


def _upload(client: httpx.Client, name: str, files: list[Path]) -> Path:
    target = ensure_folder(client, name)  # already there after a previous run: that is fine
    # "skip": files from a previous run come back unchanged, not renamed copies.
    result = send_all(client, "/api/datasets/upload", target, "skip", [[("files[]", p.name, p) for p in files]])
    if result["errors"]:
        raise CliError(f"The sample dataset {name} was not fully stored", result["errors"])
    listing = check(client.get("/api/datasets/browse", params={"path": name}), "listing the dataset")
    console.print(f"[green]✓[/green] Uploaded {name}: {result['files_uploaded']} files sent, "
                  f"{result['files_unchanged']} already there → {escape(listing['path'])} "
                  f"({listing['image_count']} images, {listing['caption_count']} captions)")
    return Path(listing["path"])
