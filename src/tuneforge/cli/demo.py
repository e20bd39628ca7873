"""`tuneforge demo`: the whole product working on this machine, in one command.

It starts the real server as a subprocess, builds a tiny random-weight model, uploads a small image dataset and
drives a short LoRA run purely over the HTTP API (create environment, validate, start, stream events), then says
where everything landed. Nothing here imports torch at import time: the CLI must stay quick to start.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from tuneforge.cli.datasets import multipart_body

console = Console()

ENV_NAME = "demo"
DATASET_NAME = "demo-shapes"
DEFAULT_WORKSPACE = Path("tuneforge-demo")
MODEL_FOLDER = Path("models") / "tiny-pixart"
VALIDATION_PROMPT = "a red circle on a white background"
FINAL_STATES = ("completed", "failed", "cancelled", "stopped")
HEALTH_TIMEOUT_S = 90.0
STREAM_RETRIES = 5

# The sample dataset: simple shapes, so the captions describe exactly what is in each picture.
COLOURS = {"red": (220, 40, 40), "green": (40, 170, 70), "blue": (40, 80, 220), "yellow": (235, 200, 40)}
BACKGROUNDS = {"white": (245, 245, 245), "black": (20, 20, 20)}
SHAPES = ("circle", "square", "triangle")


class DemoError(Exception):
    """A failure the user can act on: a message, optional detail lines, and the exit code."""

    def __init__(self, message: str, details: list[str] | None = None, code: int = 1) -> None:
        super().__init__(message)
        self.message, self.details, self.code = message, details or [], code


def demo(
    workspace: Annotated[Path, typer.Option(help="Demo workspace (created if missing)")] = DEFAULT_WORKSPACE,
    port: Annotated[int | None, typer.Option(help="Port for the demo server (default: a free one)")] = None,
    steps: Annotated[int, typer.Option(min=1, max=10000, help="Training steps of the tiny LoRA run")] = 30,
) -> None:
    """Start a server, upload a sample dataset and train a tiny LoRA over the API, showing every step."""
    workspace = workspace.expanduser().resolve()
    started = time.monotonic()
    try:
        code = _run(workspace, _port(port), steps)
    except DemoError as exc:
        _print_error(exc)
        raise typer.Exit(exc.code) from None
    except KeyboardInterrupt:
        console.print("[yellow]Interrupted: the demo server was stopped.[/yellow]")
        raise typer.Exit(130) from None
    console.print(f"[dim]Demo finished in {time.monotonic() - started:.0f} s.[/dim]")
    raise typer.Exit(code)


def _run(workspace: Path, port: int, steps: int) -> int:
    console.rule("[bold]tuneforge demo")
    workspace.mkdir(parents=True, exist_ok=True)
    with running_server(workspace, port) as server, api_client(server.url) as client:
        model = make_model(workspace)
        dataset = upload_dataset(client, workspace)
        output_dir = workspace / "output" / ENV_NAME
        write_environment(client, workspace, model, dataset, output_dir, steps)
        validate(client)
        job_id = start(client)
        try:
            seen = follow(client, server, job_id)
        except KeyboardInterrupt:
            cancel(client, job_id)  # the trainer runs in its own session: it would outlive the server
            raise
        job = _call(client, "GET", f"/api/jobs/{job_id}", "reading the job")
        return summarise(client, server, job, seen)


# --- the server -------------------------------------------------------------------------------------------------

@dataclass
class Server:
    process: subprocess.Popen
    port: int
    workspace: Path
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, lines: int = 30) -> list[str]:
        try:
            return self.log_path.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return []


def _port(wanted: int | None) -> int:
    """A free loopback port; a busy one is refused up front, or another server there could answer /health."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: a listener is what counts
        try:
            sock.bind(("127.0.0.1", wanted or 0))
        except OSError as exc:
            raise DemoError(f"Port {wanted} is not free ({exc.strerror}): pick another --port or leave it out",
                            code=2) from exc
        return sock.getsockname()[1]


@contextmanager
def running_server(workspace: Path, port: int) -> Iterator[Server]:
    """The real `tuneforge server` on loopback; always stopped on the way out (errors and Ctrl-C included)."""
    server = _spawn(workspace, port)
    try:
        with console.status(f"Starting the server on {server.url} (log: {server.log_path})"):
            _wait_healthy(server)
        console.print(f"[green]✓[/green] Server up at {server.url} (workspace {escape(str(workspace))})")
        yield server
    finally:
        _stop(server)


def _spawn(workspace: Path, port: int) -> Server:
    # The demo's own settings only: a TUNEFORGE_DATABASE_URL or DATASETS_DIR meant for a real server must not
    # make the demo write there.
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUNEFORGE_")}
    env["HF_HUB_OFFLINE"] = "1"
    command = [sys.executable, "-m", "tuneforge", "server", "--host", "127.0.0.1", "--port", str(port),
               "--workspace", str(workspace)]
    log_path = workspace / "server.log"
    with open(log_path, "wb") as log:
        # A session of its own: Ctrl-C reaches only the demo, which then cancels the job before stopping it.
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env,
                                   start_new_session=True)
    return Server(process, port, workspace, log_path)


def _wait_healthy(server: Server) -> None:
    deadline = time.monotonic() + HEALTH_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise DemoError(f"The server exited with code {server.process.returncode} before it was ready "
                            f"(log: {server.log_path})", server.log_tail())
        try:
            if httpx.get(f"{server.url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise DemoError(f"The server did not answer /health within {HEALTH_TIMEOUT_S:.0f} s "
                    f"(log: {server.log_path})", server.log_tail())


def _stop(server: Server) -> None:
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGTERM)
        try:
            server.process.wait(timeout=20)
        except (subprocess.TimeoutExpired, KeyboardInterrupt):
            server.process.kill()
            server.process.wait()
    console.print("[dim]Server stopped.[/dim]")


# --- talking to the API -----------------------------------------------------------------------------------------

@contextmanager
def api_client(url: str) -> Iterator[httpx.Client]:
    """Loopback callers act as admin until an admin exists; after that the demo needs TUNEFORGE_API_KEY."""
    with httpx.Client(base_url=url, timeout=60.0) as client:
        status = _call(client, "GET", "/api/cloud/auth/setup/status", "reading the setup status")
        if status.get("has_admin"):
            key = os.environ.get("TUNEFORGE_API_KEY")
            if not key:
                raise DemoError("This workspace already has an admin, so the API needs credentials. Run the demo "
                                "with a fresh --workspace, or set TUNEFORGE_API_KEY to an admin's key.", code=2)
            client.headers["X-API-Key"] = key
        yield client


def _call(client: httpx.Client, method: str, path: str, doing: str, **kwargs: Any) -> dict[str, Any]:
    return _body(client.request(method, path, **kwargs), doing)


def _body(response: httpx.Response, doing: str) -> dict[str, Any]:
    """The JSON body of a successful call; otherwise a DemoError with the server's `detail` and field errors."""
    if response.is_success:
        return response.json()
    request = response.request
    raise DemoError(f"{doing.capitalize()} failed: {request.method} {request.url.path} → {response.status_code}: "
                    f"{_detail(response)}", _field_errors(response))


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:500] or response.reason_phrase
    return str(body.get("detail", body)) if isinstance(body, dict) else str(body)


def _field_errors(response: httpx.Response) -> list[str]:
    try:
        problems = response.json().get("errors") or []
    except (ValueError, AttributeError):
        return []
    return [f"{p.get('field')}: {p.get('message')}" for p in problems if isinstance(p, dict)]


# --- model and data ---------------------------------------------------------------------------------------------

def make_model(workspace: Path) -> Path:
    folder = workspace / MODEL_FOLDER
    if (folder / "model_index.json").is_file():
        console.print(f"[green]✓[/green] Reusing the tiny PixArt Sigma model in {escape(str(folder))}")
        return folder
    started = time.monotonic()
    with console.status("Building a tiny random-weight PixArt Sigma model (no download)…"):
        # These import torch: only now, not whenever the CLI starts.
        from transformers.utils import logging as transformers_logging

        from tuneforge.models.tiny import make_tiny_model

        transformers_logging.disable_progress_bar()  # its bar would fight with the spinner
        # Built aside and renamed, so an interrupted build is never mistaken for a model to reuse.
        building = folder.with_name(folder.name + ".partial")
        shutil.rmtree(building, ignore_errors=True)
        make_tiny_model("pixart_sigma", building)
        shutil.rmtree(folder, ignore_errors=True)  # a leftover without model_index.json is no model
        building.rename(folder)
    console.print(f"[green]✓[/green] Tiny PixArt Sigma model in {escape(str(folder))} "
                  f"({time.monotonic() - started:.1f} s)")
    return folder


def draw_samples(folder: Path) -> list[Path]:
    """Eight small pictures of coloured shapes, each with a `.txt` caption; returns the files written."""
    from PIL import Image, ImageDraw

    written: list[Path] = []
    colours, backgrounds = list(COLOURS.items()), list(BACKGROUNDS.items())
    for index in range(8):
        colour_name, colour = colours[index % len(colours)]
        background_name, background = backgrounds[index // len(colours)]
        shape = SHAPES[index % len(SHAPES)]
        size = (64, 64) if index % 2 == 0 else (96, 64)
        picture = Image.new("RGB", size, background)
        _draw_shape(ImageDraw.Draw(picture), shape, size, colour)
        stem = f"{index:02d}-{colour_name}-{shape}"
        picture.save(folder / f"{stem}.png")
        (folder / f"{stem}.txt").write_text(f"a {colour_name} {shape} on a {background_name} background")
        written += [folder / f"{stem}.png", folder / f"{stem}.txt"]
    return written


def _draw_shape(draw: Any, shape: str, size: tuple[int, int], colour: tuple[int, int, int]) -> None:
    width, height = size
    box = (width // 2 - 22, height // 2 - 22, width // 2 + 22, height // 2 + 22)
    if shape == "circle":
        draw.ellipse(box, fill=colour)
    elif shape == "square":
        draw.rectangle(box, fill=colour)
    else:
        draw.polygon([(width // 2, box[1]), (box[0], box[3]), (box[2], box[3])], fill=colour)


def upload_dataset(client: httpx.Client, workspace: Path) -> Path:
    """Draw the samples in a temporary folder and upload them over the API; returns the folder on the server."""
    with tempfile.TemporaryDirectory(prefix="tuneforge-demo-") as temporary:
        files = draw_samples(Path(temporary))
        response = client.post("/api/datasets/folders", data={"parent_path": "", "folder_name": DATASET_NAME})
        if response.status_code != 409:  # 409: a previous run made it; identical files then come back unchanged
            _body(response, "creating the dataset folder")
        # The same streamed multipart body as `tuneforge datasets upload`.
        parts = [("files[]", path.name, path) for path in files]
        body, length, content_type = multipart_body({"target_path": DATASET_NAME, "on_conflict": "skip"}, parts,
                                                    lambda _: None)
        result = _call(client, "POST", "/api/datasets/upload", "uploading the sample dataset", content=body,
                       headers={"Content-Type": content_type, "Content-Length": str(length)})
    if result["errors"]:
        raise DemoError("The sample dataset was not fully stored", result["errors"])
    listing = _call(client, "GET", "/api/datasets/browse", "listing the dataset", params={"path": DATASET_NAME})
    console.print(f"[green]✓[/green] Uploaded the sample dataset: {result['files_uploaded']} files sent, "
                  f"{result['files_unchanged']} already there → {escape(listing['path'])} "
                  f"({listing['image_count']} images, {listing['caption_count']} captions)")
    return Path(result["target_path"] or listing["path"])


# --- environment, validation, start -----------------------------------------------------------------------------

def training_options(model: Path, output_dir: Path, steps: int) -> dict[str, Any]:
    """A LoRA run small enough for a CPU: 64 px images, a few sampling steps for validation."""
    return {
        "--model_family": "pixart_sigma", "--model_type": "lora", "--lora_type": "standard",
        "--pretrained_model_name_or_path": str(model), "--output_dir": str(output_dir),
        "--data_backend_config": f"{ENV_NAME}/multidatabackend.json",
        "--max_train_steps": steps, "--num_train_epochs": 0, "--train_batch_size": 1, "--learning_rate": 1e-3,
        "--optimizer": "adamw", "--mixed_precision": "no", "--seed": 42, "--resolution": 64,
        "--resolution_type": "pixel", "--checkpoint_step_interval": 10, "--validation_prompt": VALIDATION_PROMPT,
        "--validation_step_interval": 15, "--validation_resolution": "64x64",
        "--validation_num_inference_steps": 3, "--report_to": "none",
    }


def dataloader(workspace: Path, dataset: Path) -> list[dict[str, Any]]:
    return [
        {"id": "demo-shapes", "type": "local", "dataset_type": "image", "instance_data_dir": str(dataset),
         "caption_strategy": "textfile", "resolution": 64, "resolution_type": "pixel", "crop": True,
         "crop_aspect": "square", "cache_dir_vae": str(workspace / "cache/vae/demo-shapes")},
        {"id": "demo-text-embeds", "type": "local", "dataset_type": "text_embeds", "default": True,
         "cache_dir": str(workspace / "cache/text/demo")},
    ]


def write_environment(client: httpx.Client, workspace: Path, model: Path, dataset: Path, output_dir: Path,
                      steps: int) -> None:
    """Create (or take over) the `demo` environment, point it at the upload, and make it the active one."""
    existing = client.get(f"/api/configs/{ENV_NAME}")
    if existing.status_code == 404:
        _call(client, "POST", "/api/configs/environments", "creating the environment",
              json={"name": ENV_NAME, "model_family": "pixart_sigma", "model_type": "lora",
                    "description": "tuneforge demo: a tiny LoRA run"})
    elif not existing.is_success:
        _body(existing, "reading the environment")
    # The API writes only starter dataloader files; like the tutorial, the file is written next to the config.
    # The demo runs on the server's machine, so it can.
    dataloader_file = workspace / "config" / ENV_NAME / "multidatabackend.json"
    dataloader_file.write_text(json.dumps(dataloader(workspace, dataset), indent=2) + "\n")
    _call(client, "PUT", f"/api/configs/{ENV_NAME}", "saving the environment's settings",
          json={"name": ENV_NAME, "tags": ["demo"], "config": training_options(model, output_dir, steps)})
    _call(client, "POST", f"/api/configs/{ENV_NAME}/activate", "activating the environment")
    if output_dir.exists():  # a fresh run: old checkpoints at the same steps would be kept instead of re-saved
        shutil.rmtree(output_dir)
    console.print(f"[green]✓[/green] Environment '{ENV_NAME}' ready: {steps} steps of LoRA training, "
                  f"output in {escape(str(output_dir))}")


def validate(client: httpx.Client) -> None:
    response = client.post("/api/training/validate", params={"env": ENV_NAME})
    if response.status_code == 422:
        raise DemoError("The environment is not valid:", _field_errors(response) or [_detail(response)], code=2)
    body = _body(response, "validating the environment")
    console.print(f"[green]✓[/green] {body['message']}"
                  + (f" ({len(body['warnings'])} warnings)" if body.get("warnings") else ""))
    for warning in body.get("warnings", []):
        console.print(f"  [yellow]![/yellow] {escape(warning['field'])}: {escape(warning['message'])}")


def start(client: httpx.Client) -> str:
    body = _call(client, "POST", "/api/training/start", "starting training")
    console.print(f"[green]✓[/green] {body['message']}: job [bold]{body['job_id']}[/bold] ({body['state']})")
    return body["job_id"]


def cancel(client: httpx.Client, job_id: str) -> None:
    """Cancel the job and wait (briefly) until it is over, so no trainer keeps running after the demo."""
    console.print("[yellow]Cancelling the training job…[/yellow]")
    try:
        client.post(f"/api/jobs/{job_id}/cancel")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if client.get(f"/api/jobs/{job_id}").json().get("status") in FINAL_STATES:
                return
            time.sleep(0.5)
    except httpx.HTTPError:
        pass


# --- following the job ------------------------------------------------------------------------------------------

@dataclass
class Seen:
    """What the event stream told us, for the summary."""

    next_index: int = 0
    checkpoints: list[str] = field(default_factory=list)
    validation_images: list[str] = field(default_factory=list)
    stages: dict[str, str] = field(default_factory=dict)


def follow(client: httpx.Client, server: Server, job_id: str) -> Seen:
    """Render the job's events until it is over; the stream is resumed from the last index if it drops."""
    seen = Seen()
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[loss]}"), TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        view = JobView(progress)
        failures = 0
        while True:
            try:
                for event in _sse_events(client, job_id, seen.next_index):
                    seen.next_index = event["index"] + 1
                    view.show(event, seen)
                    failures = 0
            except httpx.HTTPError as exc:
                failures += 1
                if server.process.poll() is not None:
                    raise DemoError("The server stopped while training was running", server.log_tail()) from exc
                if failures > STREAM_RETRIES:
                    raise DemoError(f"Lost the event stream {failures} times in a row: {exc}") from exc
                time.sleep(1.0)
                continue
            # The stream ends once the job is over and drained; otherwise (e.g. a proxy closed it) resume.
            if _call(client, "GET", f"/api/jobs/{job_id}", "reading the job")["status"] in FINAL_STATES:
                progress.update(view.stage_task, visible=False)
                return seen


def _sse_events(client: httpx.Client, job_id: str, since: int) -> Iterator[dict[str, Any]]:
    """Events of one SSE connection, from index `since` on."""
    headers = {"Accept": "text/event-stream", **({"Last-Event-ID": str(since - 1)} if since else {})}
    timeout = httpx.Timeout(10.0, read=60.0)  # the server sends a keep-alive every 15 s
    with client.stream("GET", "/api/training/events/stream", params={"job_id": job_id, "since_index": since},
                       headers=headers, timeout=timeout) as response:
        if not response.is_success:
            response.read()
            raise DemoError(f"Opening the event stream failed: {response.status_code}: {_detail(response)}")
        kind, data = "message", []
        for line in response.iter_lines():
            if line.startswith("event:"):
                kind = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].strip())
            elif not line and data:  # a blank line ends one event
                if kind == "end":
                    return
                yield json.loads("\n".join(data))
                kind, data = "message", []


class JobView:
    """Turns events into output: a line per stage, checkpoint and validation, and a bar for the steps."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.stage_task = progress.add_task("waiting for the trainer", total=None, loss="")
        self.train_task: Any = None

    def print(self, text: str) -> None:
        self.progress.console.print(text)

    def show(self, event: dict[str, Any], seen: Seen) -> None:
        handler = {
            "lifecycle.stage": self._stage, "training.status": self._status, "training.progress": self._progress,
            "training.checkpoint": self._checkpoint, "training.validation": self._validation,
            "error": self._error, "log.message": self._log,
        }.get(event.get("type", ""))
        if handler:
            handler(event, seen)

    def _stage(self, event: dict[str, Any], seen: Seen) -> None:
        stage = event.get("stage") or {}
        label, status = stage.get("label", "?"), stage.get("status", "?")
        if seen.stages.get(label) == status and status != "running":
            return
        seen.stages[label] = status
        if status == "running":
            total = stage.get("total") or None
            self.progress.update(self.stage_task, description=label, total=total, completed=stage.get("current", 0))
        elif status == "completed":
            self.print(f"  [green]✓[/green] {escape(label)}")
        else:
            self.print(f"  [{'red' if status == 'failed' else 'yellow'}]{status}[/] {escape(label)}")

    def _status(self, event: dict[str, Any], seen: Seen) -> None:
        data = event.get("data") or {}
        who = "server" if data.get("source") == "server" else "trainer"
        colour = {"error": "red", "warning": "yellow", "success": "green"}.get(event.get("severity", ""), "cyan")
        self.print(f"[{colour}]●[/] {who}: {escape(event.get('message') or event.get('title', ''))}")

    def _progress(self, event: dict[str, Any], seen: Seen) -> None:
        step = event.get("progress") or {}
        if self.train_task is None:
            self.progress.update(self.stage_task, visible=False)
            self.train_task = self.progress.add_task("training", total=step.get("total_steps"), loss="")
        loss = step.get("loss")
        self.progress.update(self.train_task, completed=step.get("step", 0), total=step.get("total_steps"),
                             loss=f"loss {loss:.4f}" if isinstance(loss, (int, float)) else "")

    def _checkpoint(self, event: dict[str, Any], seen: Seen) -> None:
        checkpoint = event.get("checkpoint") or {}
        seen.checkpoints.append(checkpoint.get("path", ""))
        self.print(f"  [magenta]■[/magenta] checkpoint at step {checkpoint.get('step')}: "
                   f"{escape(checkpoint.get('path', ''))}")

    def _validation(self, event: dict[str, Any], seen: Seen) -> None:
        data = event.get("data") or {}
        paths = data.get("paths") or []
        seen.validation_images += paths
        self.print(f"  [blue]▣[/blue] validation at step {data.get('step')} "
                   f"('{escape(str(data.get('prompt', '')))}'): {escape(', '.join(paths))}")

    def _error(self, event: dict[str, Any], seen: Seen) -> None:
        self.print(f"[red]✗ {escape(event.get('title', 'error'))}: {escape(event.get('message', ''))}[/red]")

    def _log(self, event: dict[str, Any], seen: Seen) -> None:
        if event.get("severity") in ("warning", "error"):
            self.print(f"  [yellow]![/yellow] {escape(event.get('message', ''))}")


# --- the end ----------------------------------------------------------------------------------------------------

def summarise(client: httpx.Client, server: Server, job: dict[str, Any], seen: Seen) -> int:
    """The summary table; 0 only when the job completed."""
    job_id, state, output_dir = job["job_id"], job["status"], Path(job["output_dir"])
    listed = _call(client, "GET", "/api/training/checkpoints", "listing checkpoints", params={"job_id": job_id})
    checkpoints = [c["path"] for c in listed["checkpoints"]] or seen.checkpoints
    images = [p for p in seen.validation_images if Path(p).is_file()] or \
        sorted(str(p) for p in (output_dir / "validation").glob("*/*.png"))
    lora = output_dir / "pytorch_lora_weights.safetensors"

    table = Table(title="tuneforge demo", show_header=False, title_justify="left")
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    table.add_row("Job", job_id)
    table.add_row("State", f"[{'green' if state == 'completed' else 'red'}]{state}[/]")
    table.add_row("LoRA weights", escape(str(lora)) if lora.is_file() else "(not written)")
    table.add_row("Checkpoints", escape("\n".join(checkpoints)) or "(none)")
    table.add_row("Validation images", escape("\n".join(images)) or "(none)")
    key_header = " -H \"X-API-Key: $TUNEFORGE_API_KEY\"" if "X-API-Key" in client.headers else ""
    table.add_row("Events", f"curl -s{key_header} {server.url}/api/jobs/{job_id}/events")
    table.add_row("Events file", escape(str(Path(job["run_dir"]) / "events.jsonl")))
    table.add_row("Server log", escape(str(server.log_path)))
    console.print(table)
    if state == "completed":
        # The demo's server stops below; the same command brings it back at the same address.
        console.print(f"[green]Done.[/green] To look around: `tuneforge server --workspace "
                      f"{escape(str(server.workspace))} --port {server.port}`, then the curl above or "
                      f"{server.url}/docs.")
        return 0
    lines = [f"reason: {job.get('reason') or 'none given'}", *(job.get("log_tail") or [])[-20:]]
    _print_error(DemoError(f"The training job ended {state}.", lines))
    return 1


def _print_error(exc: DemoError) -> None:
    console.print(f"[red]✗ {escape(exc.message)}[/red]")
    for line in exc.details:
        console.print(f"  {escape(line)}")
