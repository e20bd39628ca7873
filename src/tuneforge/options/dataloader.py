"""The dataloader file (`multidatabackend.json`): a typed schema of its entries and the rules between them."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tuneforge.errors import FieldError, Invalid
from tuneforge.options.names import suggest
from tuneforge.options.registry import PathText

DatasetType = Literal["image", "text_embeds", "conditioning"]
# The one list of image files a dataset may hold: uploads accept them, validation counts them, the trainer reads them.
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"})


def list_images(folder: Path) -> list[Path]:
    """The images of a dataset folder, recursively, sorted; hidden files and folders (`._a.png`, `.thumbs/`) are
    skipped. The one lister: validation counts what the trainer will read."""
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found.extend(Path(root) / f for f in files
                     if not f.startswith(".") and Path(f).suffix.lower() in IMAGE_SUFFIXES)
    return sorted(found)


def pair_key(folder: Path, image: Path) -> str:
    """What pairs an edit image with its reference: the path relative to its dataset folder, without extension."""
    return str(image.relative_to(folder).with_suffix(""))


def by_pair_key(folder: Path, images: list[Path]) -> tuple[dict[str, Path], list[str]]:
    """Images by pair key, and the keys two images share (`a.png` beside `a.jpg`): a pair must be one to one."""
    found: dict[str, Path] = {}
    shared = []
    for image in images:
        key = pair_key(folder, image)
        if key in found:
            shared.append(key)
        found.setdefault(key, image)
    return found, sorted(set(shared))


def read_size(path: Path) -> tuple[int, int]:
    """Width and height from the image header, after EXIF rotation (a rotated photo swaps them)."""
    from PIL import Image

    with Image.open(path) as image:
        width, height = image.size
        orientation = image.getexif().get(0x0112, 1)
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def same_aspect(first: tuple[int, int], second: tuple[int, int], tolerance: float = 0.01) -> bool:
    """Whether two (width, height) sizes share an aspect ratio, as `reference_strict` pairs must."""
    return abs(first[0] / first[1] - second[0] / second[1]) <= tolerance * first[0] / first[1]


class DatasetConfig(BaseModel):
    """One entry of the dataloader file. Unknown keys are errors (a typo would otherwise be silently ignored)."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._-]+$",
                    description="Unique name of this backend")
    type: Literal["local"] = Field("local", description="Storage backend (local files)")
    dataset_type: DatasetType = "image"
    instance_data_dir: PathText | None = Field(None, description="Folder of images (image/conditioning)")
    caption_strategy: Literal["textfile", "filename", "instanceprompt"] = "textfile"
    instance_prompt: str | None = Field(None, description="Caption of every image for caption_strategy=instanceprompt")
    resolution: float | None = Field(None, gt=0, description="Pixels, or megapixels for resolution_type=area")
    resolution_type: Literal["pixel", "area", "pixel_area"] | None = None
    minimum_image_size: float | None = Field(None, ge=0)
    maximum_image_size: float | None = Field(None, gt=0)
    target_downsample_size: float | None = Field(None, gt=0)
    crop: bool = False
    crop_style: Literal["random", "center", "corner"] = "random"
    crop_aspect: Literal["square", "preserve", "closest"] = "square"
    cache_dir_vae: PathText | None = Field(None, description="Cached VAE latents of this dataset")
    cache_dir: PathText | None = Field(None, description="Cached text embeddings (text_embeds)")
    default: bool = Field(False, description="The text-embeds backend used for validation prompts")
    write_batch_size: int = Field(32, ge=1, le=65536, description="Captions encoded per batch (text_embeds)")
    metadata_backend: Literal["discovery"] = "discovery"
    conditioning_data: list[str] = Field(default_factory=list, description="ids of conditioning datasets")
    conditioning_type: Literal["reference_strict", "reference_loose"] | None = None
    repeats: int = Field(0, ge=0, description="Extra passes over this dataset per epoch")
    probability: float = Field(1.0, ge=0, le=1, description="Chance of sampling from this dataset")
    disabled: bool = False

    @field_validator("conditioning_data", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _per_type(self) -> DatasetConfig:
        """Keys that only make sense for some dataset types, and resolution units."""
        kind = self.dataset_type
        if kind in ("image", "conditioning") and not self.instance_data_dir:
            raise ValueError(f"instance_data_dir is required for a {kind} dataset: set it to the image folder")
        if kind == "text_embeds" and self.instance_data_dir:
            raise ValueError("instance_data_dir does not apply to text_embeds: use cache_dir")
        if self.default and kind != "text_embeds":
            raise ValueError("default: true applies only to a text_embeds dataset")
        if self.conditioning_data and kind != "image":
            raise ValueError("conditioning_data applies only to an image dataset")
        if self.conditioning_type and kind != "conditioning":
            raise ValueError("conditioning_type applies only to a conditioning dataset")
        if self.caption_strategy == "instanceprompt" and not self.instance_prompt:
            raise ValueError("caption_strategy=instanceprompt needs instance_prompt")
        if kind == "conditioning" and self.conditioning_type is None:
            self.conditioning_type = "reference_strict"
        self._check_units()
        return self

    def _check_units(self) -> None:
        if self.resolution is None or self.resolution_type is None:
            return
        if self.resolution_type == "area" and self.resolution > 16:
            raise ValueError(f"resolution {self.resolution} with resolution_type=area is read as megapixels: "
                             "use e.g. 1.0, or resolution_type=pixel_area for pixels")
        if self.resolution_type != "area" and self.resolution < 64:
            raise ValueError(f"resolution {self.resolution} with resolution_type={self.resolution_type} is in "
                             "pixels: use e.g. 1024, or resolution_type=area for megapixels")


KEYS = list(DatasetConfig.model_fields)


def parse_dataloader(data: Any) -> list[DatasetConfig]:
    """Validate a decoded dataloader file; raises `Invalid` with one FieldError per problem.

    Fields are named `[index].key` (or `[index]` for a whole entry), so callers can prefix them.
    """
    if not isinstance(data, list):
        raise Invalid("The dataloader file must hold a JSON list of datasets",
                      [FieldError("dataloader", "expected a JSON list of dataset objects")])
    entries: list[DatasetConfig] = []
    problems: list[FieldError] = []
    for index, item in enumerate(data):
        if not isinstance(item, dict):
            problems.append(FieldError(f"[{index}]", "each dataset must be a JSON object"))
            continue
        try:
            entries.append(DatasetConfig.model_validate(item))
        except ValidationError as exc:
            problems.extend(_entry_error(index, item, problem) for problem in exc.errors())
            continue
        if "write_batch_size" in item and entries[-1].dataset_type != "text_embeds":
            problems.append(FieldError(f"[{index}].write_batch_size", f"dataset '{item.get('id')}': applies only to "
                                       "the text_embeds dataset (captions encoded per batch); remove it here"))
    if not problems:
        problems = cross_check(entries)
    if problems:
        raise Invalid("Invalid dataloader configuration", problems)
    return entries


def _entry_error(index: int, item: dict[str, Any], problem: Any) -> FieldError:
    location = [str(part) for part in problem["loc"]]
    label = f"[{index}]" + "".join(f".{part}" for part in location[:1])
    who = f"dataset '{item.get('id')}'" if item.get("id") else f"dataset #{index}"
    if problem["type"] == "extra_forbidden":
        return FieldError(label, f"{who}: unknown key '{location[0]}'{suggest(location[0], KEYS)}")
    message = str(problem["msg"]).removeprefix("Value error, ")
    got = problem.get("input")
    if location and not isinstance(got, dict | list) and problem["type"] != "missing":
        message += f" (got {got!r})"
    return FieldError(label, f"{who}: {location[0] + ': ' if location else ''}{message}")


def cross_check(entries: list[DatasetConfig]) -> list[FieldError]:
    """Rules between entries: unique ids, one default text-embeds backend, links to existing conditioning sets."""
    problems: list[FieldError] = []
    seen: dict[str, int] = {}
    for index, entry in enumerate(entries):
        if entry.id in seen:
            problems.append(FieldError(f"[{index}].id", f"duplicate id '{entry.id}' (also dataset #{seen[entry.id]}):"
                                                        " give each dataset its own id"))
        seen.setdefault(entry.id, index)
    active = [e for e in entries if not e.disabled]
    defaults = [e.id for e in active if e.dataset_type == "text_embeds" and e.default]
    if len(defaults) != 1:
        got = f"found {len(defaults)}" + (f" ({', '.join(defaults)})" if defaults else "")
        problems.append(FieldError("dataloader", "exactly one enabled text_embeds dataset must have "
                                                 f"\"default\": true; {got}"))
    if not any(e.dataset_type == "image" for e in active):
        problems.append(FieldError("dataloader", "no enabled image dataset: add one with dataset_type image"))
    conditioning = {e.id for e in entries if e.dataset_type == "conditioning"}
    disabled = {e.id for e in entries if e.disabled}
    for index, entry in enumerate(entries):
        for link in entry.conditioning_data:
            if link in conditioning and link in disabled and not entry.disabled:
                problems.append(FieldError(f"[{index}].conditioning_data",
                                           f"dataset '{entry.id}': '{link}' is disabled; enable it or unlink it"))
            elif link not in conditioning:
                problems.append(FieldError(f"[{index}].conditioning_data",
                                           f"dataset '{entry.id}': '{link}' is not the id of a conditioning "
                                           f"dataset{suggest(link, sorted(conditioning))}"))
    return problems
