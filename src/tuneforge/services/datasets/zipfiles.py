"""Zip extraction that a hostile archive cannot abuse.

Before anything is written the archive is judged from its own records: the entry count (from the end record, then
by counting the central-directory records ourselves, so a 200,000-entry zip is refused without `zipfile` parsing
200,000 headers), then the declared sizes (total, whole-archive and per-entry compression ratio). Entries are then
extracted one by one through the same checks as uploaded files: safe names, allowed types, decodable images, never
a link, never an overwrite.
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
from tuneforge.services.datasets.files import CHUNK, PendingFile, Publisher, refusal, store
from tuneforge.services.datasets.paths import UnsafeName, ensure_subfolder, split_name
from tuneforge.services.datasets.report import UploadReport

RATIO_FLOOR = 1024 * 1024  # small entries may compress well (captions); a bomb needs size to hurt
_CD_BYTES_PER_ENTRY = 1024  # generous: a central-directory record is 46 bytes plus name and extras
_EOCD = struct.Struct("<4s4H2LH")
_EOCD64_LOCATOR = struct.Struct("<4sLQL")
_EOCD64 = struct.Struct("<4sQ2H2L4Q")
_CENTRAL = struct.Struct("<4s24x3H12x")  # a central-directory record: signature, then name/extra/comment lengths
_CORRUPT = (zipfile.BadZipFile, zlib.error, EOFError, ValueError, NotImplementedError)


@dataclass(frozen=True)
class ZipLimits:
    max_entries: int
    max_uncompressed_bytes: int
    max_ratio: int


def extract(zip_path: Path, target: Path, limits: ZipLimits, publisher: Publisher, report: UploadReport) -> None:
    """Extract the archive at `zip_path` into `target`, entry by entry; raises before writing if over a limit."""
    entries, directory_end, directory_size = end_record(zip_path)
    _check_count(f"{entries}", entries, directory_size, limits)
    counted = count_records(zip_path, directory_end, directory_size, limits.max_entries + 1)
    _check_count(f"more than {limits.max_entries}", counted, 0, limits)  # what zipfile would really parse
    try:
        archive = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise BadRequest(f"The file is not a readable zip archive ({exc}): check it with 'unzip -t'") from exc
    with archive:
        infos = archive.infolist()
        _check_sizes(infos, limits, zip_path.stat().st_size, target)
        for info in infos:
            if not info.is_dir():
                _extract_entry(archive, info, target, publisher, report)


def end_record(zip_path: Path) -> tuple[int, int, int]:
    """(declared entry count, where the central directory ends, its size) from the end-of-archive records.

    Read the way `zipfile` reads them (a zip64 end record sits right before its locator, which sits right before
    the end record), so that the directory counted here is the one `zipfile` will parse.
    """
    size = zip_path.stat().st_size
    with zip_path.open("rb") as handle:
        tail_length = min(size, _EOCD.size + 0xFFFF + _EOCD64_LOCATOR.size + _EOCD64.size)
        handle.seek(size - tail_length)
        tail = handle.read(tail_length)
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or at + _EOCD.size > len(tail):
        raise BadRequest("The file is not a zip archive (no end-of-archive record): send a .zip file")
    record = _EOCD.unpack_from(tail, at)
    end = size - tail_length + at
    locator = at - _EOCD64_LOCATOR.size
    if locator < 0 or tail[locator:at][:4] != b"PK\x06\x07":
        return record[4], end, record[5]
    zip64 = locator - _EOCD64.size
    if zip64 < 0 or tail[zip64:locator][:4] != b"PK\x06\x06":
        raise BadRequest("Corrupt zip archive: the zip64 end record is missing")
    record64 = _EOCD64.unpack_from(tail, zip64)
    return record64[7], end - _EOCD64_LOCATOR.size - _EOCD64.size, record64[8]


def count_records(zip_path: Path, directory_end: int, directory_size: int, stop: int) -> int:
    """How many central-directory records the archive really holds, counted up to `stop`.

    The end record's count is only a claim: a zip that says 5 entries may hold 2 million records, and `zipfile`
    would parse every one (hundreds of MB, tens of seconds) before `infolist()` could be counted. Walking the
    46-byte fixed headers, skipping each record's name, extra field and comment, costs a read and a seek each.
    """
    position = directory_end - directory_size
    if position < 0:
        raise BadRequest("Corrupt zip archive: the central directory starts before the file")
    count = 0
    with zip_path.open("rb") as handle:
        while position < directory_end and count < stop:
            handle.seek(position)
            header = handle.read(_CENTRAL.size)
            if len(header) < _CENTRAL.size or not header.startswith(b"PK\x01\x02"):
                raise BadRequest("Corrupt zip archive: the central directory is damaged; check it with 'unzip -t'")
            _, name, extra, comment = _CENTRAL.unpack(header)
            position += _CENTRAL.size + name + extra + comment
            count += 1
    return count


def _check_count(shown: str, entries: int, directory_size: int, limits: ZipLimits) -> None:
    if entries > limits.max_entries or directory_size > limits.max_entries * _CD_BYTES_PER_ENTRY:
        raise TooLarge(
            f"The zip has {shown} entries, over the limit of {limits.max_entries} "
            "(setting TUNEFORGE_ZIP_MAX_ENTRIES): split it into smaller archives"
        )


def _check_sizes(infos: list[zipfile.ZipInfo], limits: ZipLimits, archive_size: int, target: Path) -> None:
    total = sum(info.file_size for info in infos)
    if total > limits.max_uncompressed_bytes:
        raise TooLarge(
            f"The zip expands to {total} bytes, over the limit of {limits.max_uncompressed_bytes} "
            "(setting TUNEFORGE_ZIP_MAX_UNCOMPRESSED_BYTES): split it into smaller archives"
        )
    _check_ratio("The zip", total, archive_size, limits)  # 2,000 entries of 1 MiB - 1 zeros: each passes alone
    for info in infos:
        _check_ratio(f"Zip entry '{info.filename}'", info.file_size, info.compress_size, limits)
    free = shutil.disk_usage(target).free
    if total > free:
        raise TooLarge(f"The zip expands to {total} bytes but only {free} bytes are free under the datasets root")


def _check_ratio(what: str, expanded: int, packed: int, limits: ZipLimits) -> None:
    if expanded > RATIO_FLOOR and expanded > limits.max_ratio * max(packed, 1):
        raise TooLarge(
            f"{what} expands {expanded // max(packed, 1)} times, over the ratio limit of {limits.max_ratio} "
            "(setting TUNEFORGE_ZIP_MAX_RATIO): this looks like a zip bomb; nothing was extracted"
        )


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
        folder, leaf = _entry_place(info, target)
        pending = PendingFile(folder)
    except (UnsafeName, OSError) as exc:
        report.skipped(name, refusal(exc))
        return
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
    store(pending, folder, leaf, name, publisher, report)


def _entry_place(info: zipfile.ZipInfo, target: Path) -> tuple[Path, str]:
    """The folder an entry goes to (created if needed) and its file name; UnsafeName says why it is skipped."""
    problem = entry_problem(info) or _junk(info.filename)
    if problem:
        raise UnsafeName(problem)
    parts = split_name(info.filename)
    problem = kinds.rejection(parts[-1])
    if problem:
        raise UnsafeName(problem)
    return ensure_subfolder(target, parts[:-1]), parts[-1]


def _junk(name: str) -> str | None:
    return "macOS metadata, not a dataset file" if kinds.is_macos_junk(name) else None
