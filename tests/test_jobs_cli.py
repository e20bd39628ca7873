"""`tuneforge jobs` against a real uvicorn server in this process: submit (dry run, queued, rejected, unknown),
list, status, logs, cancel. No trainer is launched: a job that this test process stands for fills the one job slot."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from typer.testing import CliRunner

from e2e_support import prepare_workspace, run_fields
from scheduler_support import add_running_stand_in
from serverproc import served_in_thread
from tuneforge.api.app import create_app
from tuneforge.cli.main import app as cli
from tuneforge.services import job_events, jobs
from tuneforge.settings import Settings

pytestmark = pytest.mark.e2e
ENV = "my-training-config"
HUB_MODEL = "PixArt-alpha/PixArt-Sigma-XL-2-1024-MS"  # a hub id is checked for form only: no model is built
runner = CliRunner()


@pytest.fixture
def server_app(settings: Settings) -> FastAPI:
    return create_app(settings)


@pytest.fixture
def server(server_app: FastAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The app served on a free loopback port (loopback acts as admin before setup); the CLI points at it."""
    with served_in_thread(server_app) as url:
        monkeypatch.setenv("TUNEFORGE_URL", url)
        monkeypatch.setenv("TUNEFORGE_CLIENT_CONFIG", str(tmp_path / "client.json"))
        monkeypatch.delenv("TUNEFORGE_API_KEY", raising=False)
        monkeypatch.setenv("COLUMNS", "200")  # rich tables unfolded
        yield url


@pytest.fixture
def environment(server: str, workspace: Path, tmp_path: Path) -> str:
    """A valid tiny PixArt LoRA environment, created over the API."""
    prepare_workspace(workspace)
    config = {name: value for name, value in run_fields(HUB_MODEL, tmp_path / "out").items()  # type: ignore[arg-type]
              if name.startswith("--")}
    with httpx.Client(base_url=server) as client:
        created = client.post("/api/configs/environments",
                              json={"name": ENV, "model_family": "pixart_sigma", "model_type": "lora"})
        assert created.status_code == 201, created.text
        saved = client.put(f"/api/configs/{ENV}", json={"name": ENV, "config": config})
        assert saved.status_code == 200, saved.text
    return ENV


@pytest.fixture
def busy(server_app: FastAPI, server: str, tmp_path: Path) -> str:
    """A running job (this test process stands for its trainer): the default limit of one job is reached."""
    return add_running_stand_in(server_app.state.session_factory, tmp_path)


def run(*args: str):
    return runner.invoke(cli, ["jobs", *args])


def as_json(*args: str):
    result = run(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_dry_run_prints_the_placement_and_queues_nothing(environment: str):
    dry = run("submit", environment, "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "Dry run: it would start now on the CPU" in dry.output and "would_run" in dry.output
    assert as_json("submit", environment, "--dry-run")["status"] == "would_run"
    assert as_json("list") == {"entries": [], "count": 0}
    assert as_json("list", "--all")["count"] == 0
    assert "The queue is empty" in run("list").output


def test_unknown_names_and_ids_are_clear_errors(server: str):
    unknown = run("submit", "nope")
    assert unknown.exit_code == 1
    assert "Submitting 'nope' failed: POST /api/queue/submit → 404" in unknown.output and "nope" in unknown.stderr
    assert unknown.stdout == "", "errors go to stderr, so --json output stays clean"
    missing = run("status", "no-such-job")
    assert missing.exit_code == 1 and "Reading job 'no-such-job' failed" in missing.output and "404" in missing.output
    for args in (["logs", "no-such-job"], ["logs", "no-such-job", "--follow"], ["cancel", "no-such-job"]):
        result = run(*args)
        assert result.exit_code == 1 and "404" in result.output, (args, result.output)
    assert run("submit", "../etc").exit_code == 1, "a bad name is refused by the server"


def test_a_queued_job_is_listed_shown_cancelled_and_logged(environment: str, busy: str):
    rejected = run("submit", environment, "--no-wait")
    assert rejected.exit_code == 1 and "Rejected: all 1 job slots are taken" in rejected.output
    rejected_json = run("submit", environment, "--no-wait", "--json")
    assert rejected_json.exit_code == 1 and json.loads(rejected_json.stdout)["status"] == "rejected"
    assert "Job rejected: all 1 job slots" in rejected_json.stderr

    queued = as_json("submit", environment)
    assert (queued["status"], queued["queue_position"]) == ("queued", 1), queued
    job_id = queued["job_id"]
    line = as_json("list")
    assert [(e["job_id"], e["status"]) for e in line["entries"]] == [(busy, "starting"), (job_id, "queued")]
    listed = run("list")
    assert job_id in listed.output and "queued" in listed.output

    shown = run("status", job_id)
    assert shown.exit_code == 0 and job_id in shown.output and ENV in shown.output
    cancelled = run("cancel", job_id)
    assert cancelled.exit_code == 0 and "Cancelled before it started" in cancelled.output
    assert as_json("status", job_id)["status"] == "cancelled"
    assert [j["job_id"] for j in as_json("list", "--all")["jobs"]] == [job_id, busy]

    logs = run("logs", job_id)
    assert logs.exit_code == 0 and "training.status" in logs.output and "cancelled" in logs.output
    events = as_json("logs", job_id)
    assert events["events"] and events["job_id"] == job_id
    followed = run("logs", job_id, "--follow")
    assert followed.exit_code == 1 and f"Job {job_id} ended cancelled" in followed.output


def test_a_completed_job_shows_its_progress_and_following_it_succeeds(server_app: FastAPI, busy: str):
    progress = {"step": 5, "total_steps": 10, "epoch": 1, "total_epochs": 1, "loss": 0.25}
    with server_app.state.session_factory() as db:
        job_events.append(db, busy, {"type": "training.progress", "title": "", "message": "", "progress": progress})
        jobs.get(db, busy).progress = progress
        assert jobs.transition(db, busy, "completed")
        db.commit()
    shown = run("status", busy)
    assert shown.exit_code == 0 and "step 5/10, loss 0.2500" in shown.output and "completed" in shown.output
    assert "step 5/10, loss 0.2500" in run("logs", busy).output
    followed = run("logs", busy, "--follow")
    assert followed.exit_code == 0, followed.output
    assert f"Job {busy} completed." in followed.output
