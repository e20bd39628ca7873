"""`tuneforge datasets upload PATH --to NAME`: push a folder or a zip to a running server, with a progress bar.

The multipart body is generated on the fly from the files on disk (with an exact Content-Length, so the server can
refuse an oversized upload before it starts); a folder goes in batches so that one failure costs one batch and a
re-run skips the files already there (the server skips identical files).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

from tuneforge.cli.client import CliError, check, connect
from tuneforge.services.datasets.kinds import ALLOWED_SUFFIXES

app = typer.Typer(help="Dataset folders and uploads on a running server.", no_args_is_help=True)
console = Console()

CHUNK = 1024 * 1024
MAX_BATCH_FILES = 1000
UrlOption = Annotated[str | None, typer.Option(help="Server URL [env TUNEFORGE_URL; default http://localhost:8001]")]
Part = tuple[str, str, Path]  # form field, file name sent, local file
OTHER_TYPES = "files of other types"
LINKS = "links, which are not followed"


@app.command()
def upload(
    path: Annotated[Path, typer.Argument(exists=True, readable=True, help="A dataset folder or a .zip file")],
    to: Annotated[str, typer.Option("--to", help="Dataset folder on the server, relative to its datasets root")],
    url: UrlOption = None,
    on_conflict: Annotated[str, typer.Option(help="Same name, different file: rename | skip")] = "rename",
    batch_mb: Annotated[int, typer.Option(min=1, help="Folder uploads: MiB per request")] = 512,
) -> None:
    """Upload a folder (structure kept) or a zip (extracted on the server) into the dataset folder NAME."""
    with connect(url, timeout=3600.0) as client:
        target = _ensure_folder(client, to)
        if path.is_file():
            totals = _send_all(client, "/api/datasets/upload/zip", target, on_conflict, [[("file", path.name, path)]])
        else:
            parts, left_out = _folder_parts(path)
            for reason, names in left_out.items():
                console.print(f"Not sent ({len(names)} {reason}): {', '.join(names[:5])}"
                              + (" ..." if len(names) > 5 else ""))
            if not parts:
                console.print("[red]No images, captions or metadata files to upload in that folder.[/red]")
                raise typer.Exit(1)
            totals = _send_all(client, "/api/datasets/upload", target, on_conflict, _batches(parts, batch_mb))
    _print_summary(totals, target)


def _ensure_folder(client: httpx.Client, to: str) -> str:
    """Create the target folder, and its missing parents one level at a time; returns its path on the server."""
    wanted = PurePosixPath(to.strip() or ".")
    parent = "" if str(wanted.parent) == "." else str(wanted.parent)
    create = {"parent_path": parent, "folder_name": wanted.name}
    response = client.post("/api/datasets/folders", data=create)
    if response.status_code == 404 and parent not in ("", "/"):  # the parent is missing: create it first
        _ensure_folder(client, parent)
        response = client.post("/api/datasets/folders", data=create)
    if response.status_code != 409:
        return check(response, f"creating the dataset folder '{wanted}'")["path"]
    # 409: the name is taken, by a folder (fine) or by a file (an upload into it would fail)
    listing = client.get("/api/datasets/browse", params={"path": str(wanted)})
    if listing.status_code == 404:
        raise CliError(f"'{wanted}' exists on the server but is not a folder: choose another --to, or remove it")
    return check(listing, f"checking the dataset folder '{wanted}'")["path"]


def _folder_parts(folder: Path) -> tuple[list[Part], dict[str, list[str]]]:
    """Files to send (allowed types; hidden files left out) and, by reason, the names of those not sent.

    Links, to files or folders, are listed but never followed: what they point to may lie outside the dataset.
    """
    parts: list[Part] = []
    left_out: dict[str, list[str]] = {}
    for current, dirs, files in os.walk(folder):
        links = [d for d in dirs if os.path.islink(os.path.join(current, d))]
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in links)
        for name in sorted(files + links):
            if name.startswith("."):
                continue
            local = Path(current, name)
            relative = local.relative_to(folder).as_posix()
            if local.is_symlink():
                left_out.setdefault(LINKS, []).append(relative)
            elif local.suffix.lower() in ALLOWED_SUFFIXES:
                parts.append(("files[]", relative, local))
            else:
                left_out.setdefault(OTHER_TYPES, []).append(relative)
    return parts, left_out


def _batches(parts: list[Part], batch_mb: int) -> list[list[Part]]:
    limit = batch_mb * 1024 * 1024
    batches: list[list[Part]] = [[]]
    size = 0
    for part in parts:
        length = part[2].stat().st_size
        if batches[-1] and (size + length > limit or len(batches[-1]) >= MAX_BATCH_FILES):
            batches.append([])
            size = 0
        batches[-1].append(part)
        size += length
    return batches


def _send_all(client: httpx.Client, route: str, target: str, on_conflict: str,
              batches: list[list[Part]]) -> dict[str, Any]:
    totals: dict[str, Any] = {"files_uploaded": 0, "files_unchanged": 0, "files_skipped": 0, "errors": []}
    total_bytes = sum(part[2].stat().st_size for batch in batches for part in batch)
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
               TimeRemainingColumn())
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("uploading", total=total_bytes)
        for number, batch in enumerate(batches, start=1):
            progress.update(task, description=f"batch {number}/{len(batches)}")
            fields = {"target_path": target, "on_conflict": on_conflict}
            body, length, content_type = multipart_body(fields, batch, lambda n: progress.advance(task, n))
            headers = {"Content-Type": content_type, "Content-Length": str(length)}
            result = check(client.post(route, content=body, headers=headers))
            for key in ("files_uploaded", "files_unchanged", "files_skipped"):
                totals[key] += result.get(key, 0)  # files_unchanged: absent from older servers
            totals["errors"] += result["errors"]
    return totals


def multipart_body(fields: dict[str, str], files: list[Part],
                   advance: Callable[[int], None]) -> tuple[Iterator[bytes], int, str]:
    """A streamed multipart/form-data body, its exact length and its content type."""
    boundary = secrets.token_hex(16)
    heads = [_part_head(boundary, name, None) + value.encode() + b"\r\n" for name, value in fields.items()]
    file_heads = [_part_head(boundary, field, filename) for field, filename, _ in files]
    tail = f"--{boundary}--\r\n".encode()
    pairs = zip(file_heads, files, strict=True)
    length = sum(map(len, heads)) + sum(len(h) + p.stat().st_size + 2 for h, (_, _, p) in pairs)

    def generate() -> Iterator[bytes]:
        yield from heads
        for head, (_, _, local) in zip(file_heads, files, strict=True):
            yield head
            with local.open("rb") as handle:
                while block := handle.read(CHUNK):
                    advance(len(block))
                    yield block
            yield b"\r\n"
        yield tail

    return generate(), length + len(tail), f"multipart/form-data; boundary={boundary}"


def _part_head(boundary: str, name: str, filename: str | None) -> bytes:
    disposition = f'form-data; name="{_quote(name)}"'
    if filename is not None:
        disposition += f'; filename="{_quote(filename)}"'
        return f"--{boundary}\r\nContent-Disposition: {disposition}\r\n" \
               f"Content-Type: application/octet-stream\r\n\r\n".encode()
    return f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode()


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\r", " ").replace("\n", " ")


def _print_summary(totals: dict[str, Any], target: str) -> None:
    console.print(f"Uploaded {totals['files_uploaded']} files to {target}; {totals['files_unchanged']} were "
                  f"already there unchanged; skipped {totals['files_skipped']}.")
    for line in totals["errors"][:20]:
        console.print(f"  - {line}")
    if len(totals["errors"]) > 20:
        console.print(f"  ... and {len(totals['errors']) - 20} more")
    if totals["files_uploaded"] == 0 and totals["files_skipped"]:
        raise typer.Exit(1)


# Public names for `tuneforge demo`, which uploads its sample dataset the same way.
ensure_folder = _ensure_folder
send_all = _send_all
