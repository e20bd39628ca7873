"""Hooks run only programs an admin put into TUNEFORGE_HOOKS_DIR, and naming them needs `hooks.set`."""

from __future__ import annotations

from pathlib import Path

import pytest

from configs_support import validate_fields
from tuneforge.settings import Settings


@pytest.fixture
def hooks(tmp_path: Path) -> Path:
    folder = tmp_path / "hooks"
    folder.mkdir()
    script = folder / "evaluate.sh"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(0o755)
    (folder / "notes.txt").write_text("not a program")
    return folder


@pytest.fixture
def settings(workspace: Path, tmp_path_factory, hooks: Path) -> Settings:
    temporary = tmp_path_factory.getbasetemp()
    return Settings(workspace=workspace, read_roots=[temporary], write_roots=[temporary], hooks_dir=hooks)


@pytest.fixture
def fields(workspace: Path, tiny_pixart: Path) -> dict[str, str]:
    return validate_fields(workspace, tiny_pixart)


def test_only_executables_of_the_hooks_folder_are_accepted(admin_client, fields, hooks):
    for command, expected in (("sh -c 'id > /tmp/x'", "not an executable"),  # no PATH: only the hooks folder
                              ("/usr/bin/touch /tmp/x", "not in the hooks folder"),
                              ("../../bin/sh", "not in the hooks folder"),
                              ("notes.txt", "not an executable"),
                              ("'unbalanced", "cannot be read as a command")):
        response = admin_client.post("/api/training/validate", data={**fields, "--post_checkpoint_script": command})
        assert response.status_code == 422, (command, response.text)
        assert expected in {e["field"]: e["message"] for e in response.json()["errors"]}["--post_checkpoint_script"]
    for command in ("evaluate.sh {local_checkpoint_path} {global_step}", f"{hooks / 'evaluate.sh'} {{global_step}}"):
        ok = admin_client.post("/api/training/validate", data={**fields, "--validation_method": "external-script",
                                                               "--validation_external_script": command})
        assert ok.status_code == 200, ok.text


def test_naming_a_hook_needs_the_hooks_permission(make_user, admin_client, fields, local_client):
    researcher, lead = make_user("researcher1", "researcher"), make_user("lead1", "lead")
    hooked = {**fields, "--post_checkpoint_script": "evaluate.sh {global_step}"}
    assert researcher.post("/api/training/validate", data=hooked).status_code == 200  # checking sets nothing
    refused = researcher.post("/api/training/start", data=hooked)
    assert refused.status_code == 403 and "hooks.set" in refused.text
    assert admin_client.get("/api/jobs").json()["jobs"] == []

    assert admin_client.post("/api/configs/environments", json={"name": "hooked", "model_family": "pixart_sigma"}
                             ).status_code == 201
    config = {key: value for key, value in hooked.items()}
    assert researcher.put("/api/configs/hooked", json={"config": config}).status_code == 403
    assert lead.put("/api/configs/hooked", json={"config": config}).status_code == 200
    stored = researcher.get("/api/configs/hooked").json()["config"]
    kept = researcher.put("/api/configs/hooked", json={"config": {**stored, "--max_train_steps": 3}})
    assert kept.status_code == 200  # a hook a lead set may stay
    cleared = researcher.put("/api/configs/hooked", json={"config": {**stored, "--post_checkpoint_script": None}})
    assert cleared.status_code == 200


def test_without_a_hooks_folder_no_hook_runs(workspace, fields, tmp_path_factory):
    from tuneforge.services.validation import validate

    temporary = tmp_path_factory.getbasetemp()
    settings = Settings(workspace=workspace, read_roots=[temporary], write_roots=[temporary])
    report = validate(settings, overrides={**fields, "--post_checkpoint_script": "/bin/true"})
    assert "hooks are off on this server" in {e.field: e.message for e in report.errors}["--post_checkpoint_script"]
