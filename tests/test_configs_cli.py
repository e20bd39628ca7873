"""`tuneforge configs list|show|validate` on a local workspace (no server)."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from configs_support import PIXART_ENV, make_images
from tuneforge.cli.main import app
from tuneforge.schemas.configs import EnvironmentCreate
from tuneforge.services import configs

runner = CliRunner()


def run(*args):
    return runner.invoke(app, ["configs", *args])


def make_env(settings, workspace, valid: bool = True) -> None:
    configs.create_environment(settings, EnvironmentCreate(**PIXART_ENV))
    configs.activate(settings, "pixart-api-demo")
    if valid:
        make_images(workspace / "datasets/pixart-api-demo", ["a", "b"])
    stored = configs.load_config(settings, "pixart-api-demo")
    configs.save_config(settings, "pixart-api-demo", stored | {"--max_train_steps": 10, "--num_train_epochs": 0,
                                                               "--validation_prompt": "a photo"})


def test_list_and_show(settings, workspace):
    make_env(settings, workspace)
    listed = run("list", "--workspace", str(workspace))
    assert listed.exit_code == 0, listed.output
    assert "pixart-api-demo" in listed.output and "*" in listed.output
    as_json = json.loads(run("list", "--workspace", str(workspace), "--json").stdout)
    assert as_json["active"] == "pixart-api-demo"
    shown = run("show", "pixart-api-demo", "--workspace", str(workspace))
    assert shown.exit_code == 0
    assert json.loads(shown.stdout)["config"]["--model_family"] == "pixart_sigma"


def test_validate_ok_and_failing(settings, workspace):
    make_env(settings, workspace)
    ok = run("validate", "pixart-api-demo", "--workspace", str(workspace))
    assert ok.exit_code == 0, ok.output
    assert "Configuration Valid" in ok.output
    (workspace / "datasets/pixart-api-demo/a.txt").unlink()
    failed = run("validate", "pixart-api-demo", "--workspace", str(workspace))
    assert failed.exit_code == 1
    assert "caption_strategy" in failed.output and "a.png" in failed.output


def test_clear_errors(settings, workspace):
    missing = run("show", "nope", "--workspace", str(workspace))
    assert missing.exit_code == 1 and "No environment named 'nope'" in missing.output
    bad = run("validate", "../etc", "--workspace", str(workspace))
    assert bad.exit_code == 1 and "Invalid environment name" in bad.output
    make_env(settings, workspace)
    (workspace / "config/pixart-api-demo/config.json").write_text("{oops")
    broken = run("validate", "pixart-api-demo", "--workspace", str(workspace))
    assert broken.exit_code == 1 and "malformed JSON" in broken.output
    assert run("list", "--workspace", str(workspace / "absent")).exit_code == 2
