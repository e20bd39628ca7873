"""`tuneforge demo` end to end: the real command in a subprocess, checked by what it prints and leaves on disk;
and the ways it and the other client commands refuse bad input: one clear message, no traceback."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import psutil
import pytest
from typer.testing import CliRunner

from serverproc import free_port, start_server
from tuneforge.cli.main import app

pytestmark = pytest.mark.e2e


def _cli(*args: str, **env: str):
    """The `tuneforge` command in this process (the same group that prints errors for the installed one)."""
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "300", **env})  # usage errors come in a box
    assert "Traceback" not in result.output and not isinstance(result.exception, (AttributeError, TypeError))
    return result.exit_code, " ".join(result.output.split())  # rich wraps long lines; compare words


def _printed(label: str, output: str) -> Path:
    """The first value of a row of the summary table (the separator is │, or | without UTF-8)."""
    match = re.search(rf"{label}\s*[│|]\s*(\S+)", output)
    assert match, f"no {label!r} row in:\n{output}"
    return Path(match.group(1))


@pytest.mark.parametrize(("family", "env_name", "datasets"), [
    ("pixart_sigma", "demo", ["demo-shapes"]),
    ("kontext", "demo-kontext", ["demo-edits", "demo-references"]),
])
def test_demo_trains_a_tiny_lora_over_the_api_and_stops_its_server(tmp_path, family, env_name, datasets):
    workspace = tmp_path / "ws"
    # Wide columns, so that rich prints each path on one line.
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "300", "PYTHONIOENCODING": "utf-8"}
    env.pop("TUNEFORGE_API_KEY", None)
    result = subprocess.run(
        [sys.executable, "-m", "tuneforge", "demo", "--workspace", str(workspace), "--steps", "12",
         "--family", family],
        capture_output=True, text=True, env=env, timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "completed" in output

    lora = _printed("LoRA weights", output)
    assert lora == workspace / "output" / env_name / "pytorch_lora_weights.safetensors" and lora.is_file()
    checkpoint = _printed("Checkpoints", output)
    assert checkpoint.is_dir() and checkpoint.name == "checkpoint-10", output
    image = _printed("Validation images", output)
    assert image.is_file() and image.suffix == ".png"
    for name in datasets:
        assert len(list((workspace / "datasets" / name).glob("*.png"))) == 8

    url = re.search(r"Server up at (http://127\.0\.0\.1:\d+)", output).group(1)
    try:
        answer = httpx.get(f"{url}/health", timeout=2)
    except httpx.TransportError:
        answer = None
    assert answer is None, "the demo's server still answers"
    assert not [p for p in psutil.process_iter(["cmdline"]) if str(workspace) in " ".join(p.info["cmdline"] or [])]


def test_demo_checks_the_api_key_before_doing_anything(tmp_path):
    workspace = tmp_path / "ws"
    workspace.mkdir()
    (workspace / ".tuneforge-demo").write_text("")  # an earlier demo's workspace, where an admin was created since
    server = start_server(workspace)
    try:
        with server.client() as http:
            admin = {"email": "admin@example.com", "username": "admin", "password": "your-secure-password"}
            assert http.post("/api/cloud/auth/setup/first-admin", json=admin).status_code == 201
    finally:
        server.stop()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "300", "TUNEFORGE_CLIENT_CONFIG": str(tmp_path / "none")}
    for key, says in ((None, "already has an admin"), ("st_" + "x" * 32, "refused the API key")):
        env.pop("TUNEFORGE_API_KEY", None)
        if key:
            env["TUNEFORGE_API_KEY"] = key
        result = subprocess.run([sys.executable, "-m", "tuneforge", "demo", "--workspace", str(workspace)],
                                capture_output=True, text=True, env=env, timeout=120)
        output = result.stdout + result.stderr
        assert result.returncode == 2 and says in output and "Traceback" not in output, output
        assert not (workspace / "models").exists(), "nothing done before the key was checked"


def test_demo_refuses_a_folder_it_did_not_make(tmp_path):
    folder = tmp_path / "real-workspace"
    (folder / "config" / "demo").mkdir(parents=True)
    (folder / "config" / "demo" / "config.json").write_text("{}")
    code, output = _cli("demo", "--workspace", str(folder))
    assert code == 2 and "is not empty and no demo made it" in output, output
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")) == \
        ["config", "config/demo", "config/demo/config.json"]
    assert (folder / "config" / "demo" / "config.json").read_text() == "{}"


def test_demo_refuses_a_workspace_that_is_or_is_under_a_file(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("")
    code, output = _cli("demo", "--workspace", str(afile))
    assert code == 2 and "is a file" in output, output
    code, output = _cli("demo", "--workspace", str(afile / "ws"))
    assert code == 2 and "Cannot use" in output and "Not a directory" in output, output


def test_demo_refuses_a_busy_or_invalid_port(tmp_path):
    workspace = tmp_path / "ws"
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        busy = listener.getsockname()[1]
        code, output = _cli("demo", "--workspace", str(workspace), "--port", str(busy))
    assert code == 2 and f"Port {busy} is not free" in output, output
    for invalid in ("99999", "-1"):
        code, output = _cli("demo", "--workspace", str(workspace), "--port", invalid)
        assert code == 2 and "--port" in output, output
    assert not workspace.exists()


def test_client_commands_say_when_the_server_cannot_be_reached(tmp_path):
    env = {**os.environ, "TUNEFORGE_CLIENT_CONFIG": str(tmp_path / "client.json")}
    env.pop("TUNEFORGE_URL", None)
    closed = f"http://127.0.0.1:{free_port()}"  # free: nobody listens there
    result = subprocess.run([sys.executable, "-m", "tuneforge", "auth", "whoami", "--url", closed],
                            capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 1, result.stderr
    assert f"Cannot reach {closed}" in result.stderr and "Traceback" not in result.stderr, result.stderr
    (tmp_path / "pictures").mkdir()
    (tmp_path / "pictures" / "a.txt").write_text("a caption")
    code, output = _cli("datasets", "upload", str(tmp_path / "pictures"), "--to", "set", "--url", closed,
                        TUNEFORGE_CLIENT_CONFIG=str(tmp_path / "client.json"))
    assert code == 1 and f"Cannot reach {closed}" in output, output
    code, output = _cli("auth", "whoami", "--url", "notaurl", TUNEFORGE_CLIENT_CONFIG=str(tmp_path / "client.json"))
    assert code == 2 and "Invalid server URL 'notaurl'" in output, output


@pytest.mark.parametrize("stored", ["[1, 2]", '{"url": 5}', '{"api_key": ["k"]}', "{not json"])
def test_client_commands_refuse_a_broken_client_config(tmp_path, stored):
    config = tmp_path / "client.json"
    config.write_text(stored)
    code, output = _cli("auth", "whoami", TUNEFORGE_CLIENT_CONFIG=str(config))
    assert code == 2 and str(config) in output, output


@pytest.mark.parametrize(("args", "pipeline", "extra"), [
    ((), "PixArtSigmaPipeline", set()),
    (("--family", "flux", "--flavour", "schnell"), "FluxPipeline", {"text_encoder_2", "tokenizer_2"}),
])
def test_make_tiny_model_writes_a_pipeline_folder(tmp_path, args, pipeline, extra):
    out = tmp_path / "tiny"
    # In a process of its own: transformers' log handler would otherwise outlive the CliRunner stream it bound to.
    result = subprocess.run([sys.executable, "-m", "tuneforge", "dev", "make-tiny-model", *args, str(out)],
                            capture_output=True, text=True, timeout=120, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr[-2000:]
    index = json.loads((out / "model_index.json").read_text())
    assert index["_class_name"] == pipeline
    components = [name for name, value in index.items() if isinstance(value, list) and value[0] is not None]
    assert {"transformer", "vae", "text_encoder", "tokenizer", "scheduler"} | extra <= set(components)
    for name in components:
        assert (out / name).is_dir() and any((out / name).iterdir()), name
