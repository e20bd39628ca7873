"""Writing weight files that other programs can read."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors.torch import save_file


def _read_umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


UMASK = _read_umask()  # read once at import: setting it again later would race with threads starting processes


def save_tensors(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None) -> None:
    """safetensors writes its files 0600; outputs get the usual mode (0644 under umask 022), so that a ComfyUI or a
    web server running as another user can read them."""
    save_file({name: t.detach().cpu().contiguous() for name, t in tensors.items()}, str(path), metadata=metadata)
    os.chmod(path, 0o666 & ~UMASK)


def share(folder: Path) -> None:
    """Give every file written into `folder` (by safetensors, through diffusers' save_pretrained) the usual mode."""
    mode = 0o666 & ~UMASK
    for path in Path(folder).rglob("*"):
        if path.is_file() and not path.is_symlink():
            os.chmod(path, mode)
