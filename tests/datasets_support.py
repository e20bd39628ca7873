"""Helpers for the dataset tests: real images, hand-built multipart bodies and zips, and tree checks."""

from __future__ import annotations

import io
import os
import struct
import zipfile
import zlib
from pathlib import Path

from PIL import Image


def png_bytes(size: tuple[int, int] = (8, 8), color: str = "red") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def multipart(parts: list[tuple[str, str | None, bytes]], boundary: str = "tfboundary1234") -> tuple[bytes, str]:
    """A multipart body with parts in exactly the given order: (field, filename or None, content)."""
    chunks = []
    for field, filename, content in parts:
        disposition = f'form-data; name="{field}"' + (f'; filename="{filename}"' if filename is not None else "")
        chunks.append(f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + content + b"\r\n")
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks), f"multipart/form-data; boundary={boundary}"


def make_zip(entries: dict[str, bytes], symlinks: dict[str, str] | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            info = zipfile.ZipInfo(name)  # ZipInfo keeps hostile names ('../x', '/etc/x') as given
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.create_system = 3
            info.external_attr = (0o120777 << 16)
            archive.writestr(info, target)
    return buffer.getvalue()


def many_entries_zip(count: int) -> bytes:
    """A genuine zip64 archive of `count` empty stored files, built with struct (zipfile takes seconds)."""
    local, central = [], []
    offset = 0
    for index in range(count):
        name = f"{index}.txt".encode()
        header = struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, 0, 0, 0, 0, 0, 0, len(name), 0) + name
        central.append(struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, 0, 0, 0, 0, 0, 0, len(name), 0, 0,
                                   0, 0, 0, offset) + name)
        local.append(header)
        offset += len(header)
    directory = b"".join(central)
    end64 = struct.pack("<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, count, count, len(directory), offset)
    locator = struct.pack("<4sLQL", b"PK\x06\x07", 0, offset + len(directory), 1)
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    return b"".join(local) + directory + end64 + locator + end


def zip_bomb(size: int = 2 * 1024**3) -> bytes:
    """One entry of `size` zero bytes in about 2 KB per MiB, built without holding `size` bytes.

    After a full flush deflate restarts from an empty window, so one flushed 1 MiB segment can be repeated.
    """
    block = bytes(1024 * 1024)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    segment = compressor.compress(block) + compressor.flush(zlib.Z_FULL_FLUSH)
    count = size // len(block)
    stream = segment * count + zlib.compressobj(9, zlib.DEFLATED, -15).flush()
    crc = 0
    for _ in range(count):
        crc = zlib.crc32(block, crc)
    name = b"bomb.txt"
    header = struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, 8, 0, 0, crc, len(stream), size, len(name), 0)
    central = struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, 8, 0, 0, crc, len(stream), size, len(name), 0,
                          0, 0, 0, 0, 0) + name
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 1, 1, len(central), len(header) + len(name) + len(stream), 0)
    return header + name + stream + central + end


def tree(root: Path) -> set[str]:
    """Every path under root (links not followed), relative."""
    found = set()
    for current, dirs, files in os.walk(root):
        for name in dirs + files:
            found.add(os.path.relpath(os.path.join(current, name), root))
    return found


def leftovers(root: Path) -> list[str]:
    """Temporary upload files anywhere under root (there must be none after a request)."""
    return sorted(p for p in tree(root) if ".tf-upload-" in p)
