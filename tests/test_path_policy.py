"""What a job may touch: every path a config names, inside the admin's roots (default: the workspace), after links."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from configs_support import make_images
from configs_support import validate_fields as fields
from tuneforge.api.app import create_app
from tuneforge.services.job_policy import JobPolicy
from tuneforge.services.validation import validate
from tuneforge.settings import Settings


@pytest.fixture
def confined(workspace: Path):
    """The real app with the default roots: jobs read and write the workspace only."""
    settings = Settings(workspace=workspace)
    with TestClient(create_app(settings), base_url="http://localhost:8001", client=("127.0.0.1", 5000)) as client:
        yield settings, client


def problems_of(response) -> dict[str, str]:
    assert response.status_code == 422, response.text
    return {e["field"]: e["message"] for e in response.json()["errors"]}


@pytest.fixture
def model(workspace: Path, tiny_pixart: Path) -> Path:
    """The tiny model, copied into the workspace (its own folder is outside the default roots)."""
    import shutil

    return Path(shutil.copytree(tiny_pixart, workspace / "models/tiny"))


def test_every_path_a_job_names_must_be_inside_the_roots(confined, workspace, model, tmp_path):
    settings, client = confined
    outside = tmp_path / "outside"
    make_images(outside / "data", ["x"])
    assert client.post("/api/training/validate", data=fields(workspace, model)).status_code == 200
    cases = {
        "--output_dir": "/etc/tuneforge-x", "--cache_dir_vae": str(outside / "vae"),
        "--resume_from_checkpoint": "/etc", "--accelerate_config": "/etc/passwd",
        "--validation_reference_image": str(outside / "data/x.png"),
        "--pretrained_model_name_or_path": str(tmp_path),
    }
    for field, value in cases.items():
        problems = problems_of(client.post("/api/training/validate", data=fields(workspace, model, **{field: value})))
        assert "outside the folders jobs may" in problems[field], (field, problems)
        assert str(workspace) in problems[field] and "TUNEFORGE_" in problems[field]
    assert "may write" in problems_of(client.post("/api/training/validate", data=fields(
        workspace, model, **{"--output_dir": "../elsewhere"})))["--output_dir"]


@pytest.mark.parametrize("output", [".tuneforge", ".tuneforge/runs/x", ".", "config", "config/my-env"])
def test_no_job_writes_in_or_around_the_servers_own_folders(confined, workspace, model, output):
    """Its state (database, secrets, run folders) and the environments' configs: a job's output is served to
    everyone who may view jobs."""
    settings, client = confined
    problems = problems_of(client.post("/api/training/validate",
                                       data=fields(workspace, model, **{"--output_dir": output})))
    assert "server's own folder" in problems["--output_dir"], problems


def test_a_dataloader_file_uploaded_as_data_cannot_reach_outside(confined, workspace, model, tmp_path):
    settings, client = confined
    make_images(tmp_path / "theirs", ["x"])
    hostile = [{"id": "steal", "instance_data_dir": str(tmp_path / "theirs"), "cache_dir_vae": str(tmp_path / "vae"),
                "resolution": 64, "resolution_type": "pixel"},
               {"id": "text", "dataset_type": "text_embeds", "default": True, "cache_dir": "/var/tmp/tuneforge-text"}]
    (workspace / "datasets/dl").mkdir(parents=True)
    (workspace / "datasets/dl/outside.json").write_text(json.dumps(hostile))
    problems = problems_of(client.post("/api/training/validate", data=fields(
        workspace, model, **{"--data_backend_config": str(workspace / "datasets/dl/outside.json")})))
    assert {"--data_backend_config[steal].instance_data_dir", "--data_backend_config[steal].cache_dir_vae",
            "--data_backend_config[text].cache_dir"} <= set(problems)
    assert not (tmp_path / "vae").exists() and not Path("/var/tmp/tuneforge-text").exists()


def test_links_are_followed_before_the_check(confined, workspace, model, tmp_path):
    settings, client = confined
    make_images(tmp_path / "real", ["x", "y"])
    os.symlink(tmp_path / "real", workspace / "datasets/link")
    loader = [{"id": "linked", "instance_data_dir": "datasets/link", "resolution": 64, "resolution_type": "pixel"},
              {"id": "text", "dataset_type": "text_embeds", "default": True}]
    (workspace / "config").mkdir(exist_ok=True)
    (workspace / "config/linked.json").write_text(json.dumps(loader))
    problems = problems_of(client.post("/api/training/validate", data=fields(
        workspace, model, **{"--data_backend_config": "config/linked.json"})))
    assert str(tmp_path / "real") in problems["--data_backend_config[linked].instance_data_dir"]


def test_nothing_is_learnt_about_folders_outside(confined, workspace, model, tmp_path):
    settings, client = confined
    (tmp_path / "exists").mkdir()
    answers = [problems_of(client.post("/api/training/validate", data=fields(
        workspace, model, **{"--pretrained_model_name_or_path": str(tmp_path / name)})))
        ["--pretrained_model_name_or_path"].replace(name, "X") for name in ("exists", "missing")]
    assert answers[0] == answers[1]  # the same answer whether the folder exists or not


def test_roots_an_admin_adds_are_allowed(workspace, model, tmp_path, monkeypatch):
    make_images(tmp_path / "data/datasets/demo", ["a", "b"])
    monkeypatch.setenv("TUNEFORGE_READ_ROOTS", f"{workspace}{os.pathsep}{tmp_path / 'data'}")
    monkeypatch.setenv("TUNEFORGE_WRITE_ROOTS", f"{workspace}{os.pathsep}{tmp_path / 'workspace-out'}")
    settings = Settings(workspace=workspace)
    assert settings.job_read_roots == (workspace, tmp_path / "data")
    loader = [{"id": "demo", "instance_data_dir": str(tmp_path / "data/datasets/demo"), "resolution": 64,
               "resolution_type": "pixel"}, {"id": "text", "dataset_type": "text_embeds", "default": True}]
    (workspace / "config").mkdir(exist_ok=True)
    (workspace / "config/tutorial.json").write_text(json.dumps(loader))
    overrides = fields(workspace, model, **{"--data_backend_config": "config/tutorial.json",
                                            "--output_dir": str(tmp_path / "workspace-out/run")})
    assert validate(settings, overrides=overrides).valid
    assert not validate(settings, overrides={**overrides, "--output_dir": str(tmp_path / "data/x")}).valid


def test_a_person_training_in_a_shell_is_not_confined(workspace, model, tmp_path):
    settings = Settings(workspace=workspace)
    overrides = fields(workspace, model, **{"--output_dir": str(tmp_path / "mine")})
    assert not validate(settings, overrides=overrides).valid
    assert validate(settings, overrides=overrides, policy=JobPolicy.unrestricted()).valid


def test_start_refuses_the_same_and_writes_nothing_outside(confined, workspace, model, tmp_path):
    settings, client = confined
    outside = fields(workspace, model, **{"--output_dir": str(tmp_path / "o")})
    response = client.post("/api/training/start", data=outside)
    assert response.status_code == 422 and not (tmp_path / "o").exists()
    assert client.get("/api/jobs").json()["jobs"] == []
