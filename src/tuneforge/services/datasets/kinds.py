"""Which files a dataset may hold: images, captions and metadata. Shared by the server and the CLI."""

from __future__ import annotations

from pathlib import PurePosixPath

from tuneforge.options.dataloader import IMAGE_SUFFIXES

CAPTION_SUFFIXES = frozenset({".txt"})
METADATA_SUFFIXES = frozenset({".json", ".jsonl", ".csv", ".parquet"})
ALLOWED_SUFFIXES = IMAGE_SUFFIXES | CAPTION_SUFFIXES | METADATA_SUFFIXES


def suffix(name: str) -> str:
    return PurePosixPath(name).suffix.lower()


def is_image(name: str) -> bool:
    return suffix(name) in IMAGE_SUFFIXES


def is_caption(name: str) -> bool:
    return suffix(name) in CAPTION_SUFFIXES


def rejection(name: str) -> str | None:
    """Why a file of this name is not accepted, or None."""
    ext = suffix(name)
    if ext in ALLOWED_SUFFIXES:
        return None
    kind = f"'{ext}' files are" if ext else "files without an extension are"
    return f"{kind} not accepted (allowed: images, .txt, .json, .jsonl, .csv, .parquet)"


def is_macos_junk(name: str) -> bool:
    """Finder adds `__MACOSX/` and `._name` resource forks to zips; they are never dataset files."""
    parts = name.replace("\\", "/").strip("/").split("/")
    return parts[0] == "__MACOSX" or parts[-1].startswith("._") or parts[-1] == ".DS_Store"
