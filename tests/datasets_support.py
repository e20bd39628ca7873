"""Helpers for the dataset tests: real images, hand-built multipart bodies and zips, and tree checks."""

from __future__ import annotations

import io
import os
import struct
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from PIL import Image
from starlette.testclient import TestClient

from tuneforge.api.app import create_app
from tuneforge.settings import Settings


@contextmanager
def client_with(workspace: Path, **overrides: Any) -> Iterator[TestClient]:
    """A local client of the real app with some settings changed (the limits), its datasets root created."""
    app = create_app(Settings(workspace=workspace, **overrides))
    (workspace / "datasets").mkdir(parents=True, exist_ok=True)
    with TestClient(app, base_url="http://localhost:8001", client=("127.0.0.1", 1),
                    raise_server_exceptions=False) as client:
        yield client


def png_bytes(size: tuple[int, int] = (8, 8), color: str = "red", format: str = "PNG") -> bytes:
    """An image file; color "noise" gives random pixels, which compress badly (a JPEG with a real scan to cut)."""
    image = Image.effect_noise(size, 64).convert("RGB") if color == "noise" else Image.new("RGB", size, color)
    buffer = io.BytesIO()
    image.save(buffer, format=format)
    return buffer.getvalue()


def bomb_png() -> bytes:
    """A real 1-bit PNG of 90 million pixels (11 KB), just over Pillow's decompression-bomb limit."""
    buffer = io.BytesIO()
    Image.new("1", (9500, 9500)).save(buffer, format="PNG")
    return buffer.getvalue()


def multipart(parts: list[tuple[str, str | None, bytes]], boundary: str = "tfboundary1234") -> tuple[bytes, str]:
    """A multipart body with parts in exactly the given order: (field, filename or None, content)."""
    chunks = []
    for field, filename, content in parts:
        disposition = f'form-data; name="{field}"' + (f'; filename="{filename}"' if filename is not None else "")
        chunks.append(f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + content + b"\r\n")
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks), f"multipart/form-data; boundary={boundary}"


def make_zip(entries: dict[str, bytes], symlinks: dict[str, str] | None = None, links_first: bool = False) -> bytes:
    """A zip of files and symbolic links (after the files, or before them with `links_first`)."""
    files = []
    for name, data in entries.items():
        info = zipfile.ZipInfo(name)  # ZipInfo keeps hostile names ('../x', '/etc/x') as given
        info.compress_type = zipfile.ZIP_DEFLATED
        files.append((info, data))
    links = []
    for name, target in (symlinks or {}).items():
        info = zipfile.ZipInfo(name)
        info.create_system = 3
        info.external_attr = (0o120777 << 16)
        links.append((info, target.encode()))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for info, data in links + files if links_first else files + links:
            archive.writestr(info, data)
    return buffer.getvalue()


def encrypt_first_entry(archive: bytes) -> bytes:
    """Mark the first entry as encrypted (flag bit 0, in its local and central headers): zipfile cannot write
    encrypted entries, and only the flag matters to the server."""
    data = bytearray(archive)
    central = data.index(b"PK\x01\x02")
    data[6] |= 1  # local header: signature, version needed, flags
    data[central + 8] |= 1  # central record: signature, version made by, version needed, flags
    return bytes(data)


def lying_zip(records: int, claimed: int) -> bytes:
    """A zip whose end record claims `claimed` entries while its central directory holds `records` records (the
    same one repeated: a parser reads them all the same)."""
    name = b"a.txt"
    local = struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, 0, 0, 0, 0, 0, 0, len(name), 0) + name
    record = struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, 0, 0, 0, 0, 0, 0, len(name), 0, 0, 0, 0, 0,
                         0) + name
    directory = record * records
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, claimed, claimed, len(directory), len(local), 0)
    return local + directory + end


def zeros_zip(count: int, size: int) -> bytes:
    """`count` entries of `size` zero bytes, deflated once and repeated (quick to build however large it expands)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    stream = compressor.compress(bytes(size)) + compressor.flush()
    crc = zlib.crc32(bytes(size))
    local, central = [], []
    offset = 0
    for index in range(count):
        name = f"{index}.txt".encode()
        header = struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, 8, 0, 0, crc, len(stream), size, len(name), 0)
        central.append(struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, 8, 0, 0, crc, len(stream), size,
                                   len(name), 0, 0, 0, 0, 0, offset) + name)
        local.append(header + name + stream)
        offset += len(local[-1])
    directory = b"".join(central)
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, count, count, len(directory), offset, 0)
    return b"".join(local) + directory + end


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


def outside(workspace: Path) -> set[str]:
    """Everything in the test's folder except the datasets root and the server's own state: what an upload must
    never change."""
    return {p for p in tree(workspace.parent) if not p.startswith("workspace/datasets") and ".tuneforge" not in p}


def leftovers(root: Path) -> list[str]:
    """Temporary upload files anywhere under root (there must be none after a request)."""
    return sorted(p for p in tree(root) if ".tf-upload-" in p)
