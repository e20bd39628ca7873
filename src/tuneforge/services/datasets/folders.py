"""Dataset folders: create one, and browse the tree with image and caption counts."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tuneforge.errors import BadRequest, Conflict
from tuneforge.services.datasets import kinds
from tuneforge.services.datasets.paths import display, existing_folder, form_name_problem, real_root


def create_folder(root: Path, parent_path: str | None, folder_name: str | None) -> dict[str, str]:
    """Create `parent_path/folder_name`; 409 when it exists (as a folder, file or link)."""
    parent = existing_folder(root, parent_path, "parent_path")
    name = folder_name or ""
    problem = form_name_problem(name)
    if problem:
        raise BadRequest(f"folder_name: {problem}; send a single folder name such as 'pixart-upload'")
    folder = parent / name
    try:
        folder.mkdir()
    except FileExistsError as exc:
        raise Conflict(f"'{display(folder, root)}' already exists in the datasets root: pick another name") from exc
    return {"path": str(folder), "name": name}


def browse(root: Path, path: str | None) -> dict[str, Any]:
    """The folder at `path` (default: the root) with its counts and those of each sub-folder."""
    base = real_root(root)
    folder = existing_folder(base, path, "path")
    images, captions, subfolders = _scan(folder)
    return {
        "path": str(folder),
        "relative_path": display(folder, base),
        "parent": str(folder.parent) if folder != base else None,
        "image_count": images,
        "caption_count": captions,
        "folders": [_summary(sub, base) for sub in subfolders],
    }


def _summary(folder: Path, base: Path) -> dict[str, Any]:
    images, captions, subfolders = _scan(folder)
    return {
        "name": folder.name,
        "path": str(folder),
        "relative_path": display(folder, base),
        "image_count": images,
        "caption_count": captions,
        "folder_count": len(subfolders),
    }


def _scan(folder: Path) -> tuple[int, int, list[Path]]:
    """Counts in one folder (not recursive). Hidden entries and links are left out: links are never followed."""
    images = captions = 0
    subfolders: list[Path] = []
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.name.startswith(".") or entry.is_symlink():
                continue
            if entry.is_dir(follow_symlinks=False):
                subfolders.append(Path(entry.path))
            elif kinds.is_image(entry.name):
                images += 1
            elif kinds.is_caption(entry.name):
                captions += 1
    return images, captions, sorted(subfolders, key=lambda p: p.name)
