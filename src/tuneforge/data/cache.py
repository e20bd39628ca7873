"""On-disk caches of VAE latents and text embeddings.

A cache entry is one safetensors file named by a key: sha256 of (source content, encoder fingerprint, transform).
A changed image, caption, encoder or crop therefore gets a new key and is encoded again; an unchanged one is
reused across runs and restarts. Files are written to a temporary name and renamed, so a crash never leaves a
half-written entry under a valid name.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

_HASH_CHUNK = 1 << 20


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_HASH_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def entry_key(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()


class TensorCache:
    """A folder of `<key>.safetensors` files, each a dict of tensors."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.safetensors"

    def has(self, key: str) -> bool:
        return self.path(key).is_file()

    def put(self, key: str, tensors: dict[str, torch.Tensor]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        final = self.path(key)
        temporary = final.with_name(f".{final.name}.{os.getpid()}.tmp")
        save_file({name: t.detach().cpu().contiguous() for name, t in tensors.items()}, str(temporary))
        os.replace(temporary, final)

    def get(self, key: str) -> dict[str, torch.Tensor]:
        return load_file(str(self.path(key)))

