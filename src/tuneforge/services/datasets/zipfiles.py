"""Zip extraction that a hostile archive cannot abuse.

Before anything is written the archive is judged from its own records: the entry count from the end record (so a
200,000-entry zip is refused without parsing 200,000 headers), then the declared sizes (total and per-entry
compression ratio). Entries are then extracted one by one through the same checks as uploaded files: safe names,
allowed types, decodable images, never a link, never an overwrite.
"""

from __future__ import annotations

import shutil
import stat
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from tuneforge.errors import BadRequest, TooLarge
from tuneforge.services.datasets import kinds
from tuneforge.services.datasets.files import CHUNK, PendingFile, Publisher, store
from tuneforge.services.datasets.paths import UnsafeName, ensure_subfolder, split_name
from tuneforge.services.datasets.report import UploadReport

RATIO_FLOOR = 1024 * 1024  # small entries may compress well (captions); a bomb needs size to hurt
_CD_BYTES_PER_ENTRY = 1024  # generous: a central-directory record is 46 bytes plus name and extras
_EOCD = struct.Struct("<4s4H2LH")
_EOCD64_LOCATOR = struct.Struct("<4sLQL")
_EOCD64 = struct.Struct("<4sQ2H2L4Q")
_CORRUPT = (zipfile.BadZipFile, zlib.error, EOFError, ValueError, NotImplementedError)


@dataclass(frozen=True)
class ZipLimits:
    max_entries: int
    max_uncompressed_bytes: int
    max_ratio: int


def extract(zip_path: Path, target: Path, limits: ZipLimits, publisher: Publisher, report: UploadReport) -> None:
    """Extract the archive at `zip_path` into `target`, entry by entry; raises before writing if over a limit."""
    entries, directory_size = end_record(zip_path)
    _check_count(entries, directory_size, limits)
    try:
        archive = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise BadRequest(f"The file is not a readable zip archive ({exc}): check it with 'unzip -t'") from exc
    with archive:
        infos = archive.infolist()
        _check_count(len(infos), 0, limits)
        _check_sizes(infos, limits, target)
        for info in infos:
            if not info.is_dir():
                _extract_entry(archive, info, target, publisher, report)


def end_record(zip_path: Path) -> tuple[int, int]:
    """(entry count, central directory size) from the end-of-archive record (zip64 aware)."""
    size = zip_path.stat().st_size
    with zip_path.open("rb") as handle:
        tail_length = min(size, _EOCD.size + 0xFFFF + _EOCD64_LOCATOR.size)
        handle.seek(size - tail_length)
        tail = handle.read(tail_length)
        at = tail.rfind(b"PK\x05\x06")
        if at < 0 or at + _EOCD.size > len(tail):
            raise BadRequest("The file is not a zip archive (no end-of-archive record): send a .zip file")
        record = _EOCD.unpack_from(tail, at)
        entries, directory_size, directory_offset = record[4], record[5], record[6]
        if entries != 0xFFFF and 0xFFFFFFFF not in (directory_size, directory_offset):
            return entries, directory_size
        return _zip64_end_record(handle, tail[max(0, at - _EOCD64_LOCATOR.size):at])


def _zip64_end_record(handle: object, locator: bytes) -> tuple[int, int]:
    if len(locator) != _EOCD64_LOCATOR.size or not locator.startswith(b"PK\x06\x07"):
        raise BadRequest("Corrupt zip archive: the zip64 end record is missing")
    offset = _EOCD64_LOCATOR.unpack(locator)[2]
    handle.seek(offset)  # type: ignore[attr-defined]
    raw = handle.read(_EOCD64.size)  # type: ignore[attr-defined]
    if len(raw) != _EOCD64.size or not raw.startswith(b"PK\x06\x06"):
        raise BadRequest("Corrupt zip archive: the zip64 end record is unreadable")
    record = _EOCD64.unpack(raw)
    return record[7], record[8]


def _check_count(entries: int, directory_size: int, limits: ZipLimits) -> None:
    if entries > limits.max_entries or directory_size > limits.max_entries * _CD_BYTES_PER_ENTRY:
        raise TooLarge(
            f"The zip has {entries} entries, over the limit of {limits.max_entries} "
            "(setting TUNEFORGE_ZIP_MAX_ENTRIES): split it into smaller archives"
        )


def _check_sizes(infos: list[zipfile.ZipInfo], limits: ZipLimits, target: Path) -> None:
    total = sum(info.file_size for info in infos)
    if total > limits.max_uncompressed_bytes:
        raise TooLarge(
            f"The zip expands to {total} bytes, over the limit of {limits.max_uncompressed_bytes} "
            "(setting TUNEFORGE_ZIP_MAX_UNCOMPRESSED_BYTES): split it into smaller archives"
        )
    for info in infos:
        if info.file_size > RATIO_FLOOR and info.file_size > limits.max_ratio * max(info.compress_size, 1):
            raise TooLarge(
                f"Zip entry '{info.filename}' expands {info.file_size // max(info.compress_size, 1)} times, over "
                f"the ratio limit of {limits.max_ratio} (setting TUNEFORGE_ZIP_MAX_RATIO): this looks like a zip "
                "bomb; nothing was extracted"
            )
    free = shutil.disk_usage(target).free
    if total > free:
        raise TooLarge(f"The zip expands to {total} bytes but only {free} bytes are free under the datasets root")


def entry_problem(info: zipfile.ZipInfo) -> str | None:
    """Why an entry is never extracted, whatever its name: links, devices, encryption."""
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        return "symbolic links are not extracted"
    if stat.S_IFMT(mode) not in (0, stat.S_IFREG):
        return "not a regular file"
    if info.flag_bits & 0x1:
        return "encrypted entries are not supported: zip without a password"
    return None


def _extract_entry(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, publisher: Publisher, report: UploadReport
) -> None:
    name = info.filename
    try:
        reason = entry_problem(info) or _junk(name)
        parts = split_name(name) if reason is None else []
        reason = reason or kinds.rejection(parts[-1])
        folder = target if reason else ensure_subfolder(target, parts[:-1])
    except UnsafeName as exc:
        reason = str(exc)
    if reason:
        report.skipped(name, reason)
        return
    pending = PendingFile(folder)
    try:
        with archive.open(info) as source:
            while block := source.read(CHUNK):
                pending.write(block)
    except _CORRUPT as exc:
        pending.discard()
        report.skipped(name, f"corrupt entry, not extracted ({exc})")
        return
    except BaseException:
        pending.discard()
        raise
    store(pending, folder, parts[-1], name, publisher, report)


def _junk(name: str) -> str | None:
    return "macOS metadata, not a dataset file" if kinds.is_macos_junk(name) else None
