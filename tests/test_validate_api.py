"""POST /api/training/validate and build_run_spec: merging, deep checks, and the resolved spec."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from configs_support import (
    KONTEXT_ENV,
    KONTEXT_OVERRIDES,
    PIXART_ENV,
    PIXART_OVERRIDES,
    kontext_data,
    kontext_dataloader,
    make_images,
    tutorial_flow,
)
from tuneforge.errors import Invalid
from tuneforge.services.validation import build_run_spec, validate


def write_once_dataloader(workspace: Path, captions: bool = True, stems=("one", "two", "three")) -> None:
    """The tutorial's fast-path dataloader (config/multidatabackend-once.json) over a real folder."""
    make_images(workspace / "datasets/demo", list(stems), captions=captions)
    entries = [{"id": "demo-images", "type": "local", "dataset_type": "image",
                "instance_data_dir": str(workspace / "datasets/demo"), "caption_strategy": "textfile",
                "resolution": 1024, "resolution_type": "pixel_area"},
               {"id": "demo-text-embeds", "type": "local", "dataset_type": "text_embeds", "default": True,
                "cache_dir": str(workspace / "cache/text/demo")}]
    (workspace / "config/multidatabackend-once.json").write_text(json.dumps(entries))


def fast_path_fields(workspace: Path) -> dict[str, str]:
    return {"__active_tab__": "model", "--model_family": "pixart_sigma", "--model_type": "full",
            "--model_flavour": "900M-1024-v0.6",
            "--pretrained_model_name_or_path": "terminusresearch/pixart-900m-1024-ft-v0.6",
            "--output_dir": str(workspace / "output/inline-demo"),
            "--data_backend_config": "config/multidatabackend-once.json", "--train_batch_size": "1",
            "--learning_rate": "0.0001", "--max_train_steps": "200", "--num_train_epochs": "0"}


def multipart(fields: dict[str, str]) -> dict[str, tuple[None, str]]:
    return {key: (None, value) for key, value in fields.items()}


def errors_of(response) -> dict[str, str]:
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["valid"] is False and body["message"] == "Validation Failed"
    return {e["field"]: e["message"] for e in body["errors"]}


def warnings_of(response) -> dict[str, str]:
    return {w["field"]: w["message"] for w in response.json()["warnings"]}


@pytest.fixture
def fast(local_client, workspace):
    write_once_dataloader(workspace)
    return fast_path_fields(workspace)


def test_fast_path_multipart(local_client, fast):
    response = local_client.post("/api/training/validate", files=multipart(fast))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["valid"] is True and body["message"] == "Configuration Valid"
    assert body["config"]["--max_train_steps"] == 200 and body["config"]["--learning_rate"] == 0.0001


def test_fast_path_urlencoded_and_json(local_client, fast):
    assert local_client.post("/api/training/validate", data=fast).status_code == 200
    typed = {**fast, "--max_train_steps": 200, "--learning_rate": 1e-4, "--num_train_epochs": 0}
    assert local_client.post("/api/training/validate", json=typed).status_code == 200


def test_malformed_json_body_is_400(local_client):
    response = local_client.post("/api/training/validate", content=b"{nope",
                                 headers={"content-type": "application/json"})
    assert response.status_code == 400


@pytest.mark.parametrize(("change", "field", "words"), [
    ({"--learning_rate": "fast"}, "--learning_rate", "must be a number"),
    ({"--train_batch_size": "-2"}, "--train_batch_size", ">= 1"),
    ({"--num_train_epochs": "3"}, "--num_train_epochs", "exactly one"),
    ({"--max_train_steps": "0"}, "--num_train_epochs", "exactly one"),
    ({"--model_family": "sd3"}, "--model_family", "pixart_sigma, flux"),
    ({"--model_flavour": "dev"}, "--model_flavour", "unknown flavour"),
    ({"--lerning_rate": "1"}, "--lerning_rate", "did you mean '--learning_rate'"),
    ({"--data_backend_config": "../../outside.json"}, "--data_backend_config", "outside the workspace"),
    ({"--data_backend_config": "missing.json"}, "--data_backend_config", "not found"),
    ({"--pretrained_model_name_or_path": "not a hub id!"}, "--pretrained_model_name_or_path", "hub id"),
    ({"--pretrained_model_name_or_path": "/no/such/folder"}, "--pretrained_model_name_or_path",
     "outside the folders jobs may read"),
    ({"--pretrained_model_name_or_path": "./models/none"}, "--pretrained_model_name_or_path", "not found"),
    ({"--base_model_precision": "int4-quanto"}, "--base_model_precision", "--model_type=lora"),
])
def test_bad_fields_fail_with_the_field_named(local_client, fast, change, field, words):
    problems = errors_of(local_client.post("/api/training/validate", files=multipart({**fast, **change})))
    assert field in problems and words in problems[field], problems


def test_dataset_problems(local_client, workspace, fast):
    (workspace / "datasets/demo/two.txt").unlink()
    problems = errors_of(local_client.post("/api/training/validate", data=fast))
    message = problems["--data_backend_config[demo-images].caption_strategy"]
    assert "1 of 3 images" in message and "two.png" in message
    for image in (workspace / "datasets/demo").iterdir():
        image.unlink()
    problems = errors_of(local_client.post("/api/training/validate", data=fast))
    assert "holds no images" in problems["--data_backend_config[demo-images].instance_data_dir"]
    (workspace / "datasets/demo").rmdir()
    problems = errors_of(local_client.post("/api/training/validate", data=fast))
    assert "not found" in problems["--data_backend_config[demo-images].instance_data_dir"]


def test_broken_image_is_reported(local_client, workspace, fast):
    (workspace / "datasets/demo/broken.png").write_bytes(b"not a png")
    (workspace / "datasets/demo/broken.txt").write_text("caption")
    problems = errors_of(local_client.post("/api/training/validate", data=fast))
    assert "broken.png" in problems["--data_backend_config[demo-images].instance_data_dir"]


def test_bad_dataloader_file(local_client, workspace, fast):
    path = workspace / "config/multidatabackend-once.json"
    path.write_text('[{"id": "x",]')
    problems = errors_of(local_client.post("/api/training/validate", data=fast))
    assert "malformed JSON at line 1" in problems["--data_backend_config"]
    entries = [{"id": "x", "instance_data_dir": "datasets/demo", "crop_styel": "center"}]
    path.write_text(json.dumps(entries))
    problems = errors_of(local_client.post("/api/training/validate", data=fast))
    assert "did you mean 'crop_style'" in problems["--data_backend_config[0].crop_styel"]
    path.write_text(json.dumps([{"id": "x", "instance_data_dir": "datasets/demo"}]))
    problems = errors_of(local_client.post("/api/training/validate", data=fast))
    assert "default" in problems["--data_backend_config"]


def test_output_dir_must_be_writable(local_client, workspace, fast):
    (workspace / "output/blocker").write_text("a file, not a folder")
    problems = errors_of(local_client.post("/api/training/validate",
                                           data={**fast, "--output_dir": str(workspace / "output/blocker/run")}))
    assert "--output_dir" in problems


def test_family_mismatch_warns(local_client, fast):
    response = local_client.post("/api/training/validate", data={**fast, "--flow_schedule_shift": "2"})
    assert response.status_code == 200
    assert "applies only to flux" in warnings_of(response)["--flow_schedule_shift"]


def test_local_base_model_folder_must_match_family(local_client, workspace, fast):
    folder = workspace / "models/tiny"
    folder.mkdir(parents=True)
    field = "--pretrained_model_name_or_path"
    problems = errors_of(local_client.post("/api/training/validate", data={**fast, field: str(folder)}))
    assert "model_index.json" in problems[field]
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "FluxPipeline"}))
    problems = errors_of(local_client.post("/api/training/validate", data={**fast, field: str(folder)}))
    assert "FluxPipeline" in problems[field] and "pixart_sigma" in problems[field]
    index = {"_class_name": "PixArtSigmaPipeline", "transformer": ["diffusers", "PixArtTransformer2DModel"],
             "vae": ["diffusers", "AutoencoderKL"], "safety_checker": [None, None]}
    (folder / "model_index.json").write_text(json.dumps(index))
    problems = errors_of(local_client.post("/api/training/validate", data={**fast, field: str(folder)}))
    assert "lacks transformer, vae" in problems[field] and "safety_checker" not in problems[field]
    for component in ("transformer", "vae", "text_encoder", "tokenizer"):
        (folder / component).mkdir()
    problems = errors_of(local_client.post("/api/training/validate", data={**fast, field: str(folder)}))
    assert "lacks scheduler" in problems[field]  # what training loads, even when model_index.json omits it
    (folder / "scheduler").mkdir()
    response = local_client.post("/api/training/validate", data={**fast, field: "models/tiny"})
    assert response.status_code == 200, response.text
    assert response.json()["config"][field] == "models/tiny"


def test_active_environment_is_merged_and_form_overrides_it(local_client, workspace):
    kontext_data(workspace)
    tutorial_flow(local_client, workspace, KONTEXT_ENV, kontext_dataloader(workspace), KONTEXT_OVERRIDES)
    response = local_client.post("/api/training/validate", data={"--lora_rank": "8", "__active_tab__": "x"})
    assert response.status_code == 200, response.text
    assert response.json()["config"]["--lora_rank"] == 8 and response.json()["environment"] == "kontext-api-demo"
    problems = errors_of(local_client.post("/api/training/validate", data={"--learning_rate": "fast"}))
    assert "--learning_rate" in problems


def test_kontext_pairs_must_match_by_name(local_client, workspace):
    kontext_data(workspace, reference_stems=["shoe", "lamp"])
    tutorial_flow(local_client, workspace, KONTEXT_ENV, kontext_dataloader(workspace), KONTEXT_OVERRIDES)
    response = local_client.post("/api/training/validate", data={"--num_train_epochs": "0"})
    assert response.status_code == 200, response.text  # the trainer skips an edit without its reference
    message = warnings_of(response)["--data_backend_config[kontext-reference].instance_data_dir"]
    assert "1 of 3" in message and "chair" in message and "skipped" in message
    for image in (workspace / "datasets/kontext/reference").iterdir():
        image.rename(image.with_name("other-" + image.name))
    problems = errors_of(local_client.post("/api/training/validate", data={"--num_train_epochs": "0"}))
    assert "none of its 3 images has a reference" in problems[
        "--data_backend_config[kontext-reference].instance_data_dir"]


def test_kontext_without_conditioning_and_bad_lycoris(local_client, workspace):
    kontext_data(workspace)
    tutorial_flow(local_client, workspace, KONTEXT_ENV, kontext_dataloader(workspace), KONTEXT_OVERRIDES)
    unpaired = [e for e in kontext_dataloader(workspace) if e["dataset_type"] != "conditioning"]
    unpaired[0].pop("conditioning_data")
    (workspace / "config/kontext-api-demo/multidatabackend.json").write_text(json.dumps(unpaired))
    (workspace / "config/kontext-api-demo/lycoris_config.json").write_text('{"algo": "lokr", "factor": -3}')
    problems = errors_of(local_client.post("/api/training/validate", data={}))
    assert "edit/reference pairs" in problems["--data_backend_config"]
    assert "factor must be -1" in problems["--lycoris_config"]


def test_malformed_active_environment(local_client, workspace):
    local_client.post("/api/configs/environments", json=PIXART_ENV)
    local_client.post("/api/configs/pixart-api-demo/activate")
    (workspace / "config/pixart-api-demo/config.json").write_text("{")
    problems = errors_of(local_client.post("/api/training/validate", data={"--num_train_epochs": "0"}))
    assert "malformed JSON" in problems["config/pixart-api-demo/config.json"]


def test_viewer_may_validate(make_user, local_client, fast):
    viewer = make_user("watcher", "viewer")
    assert viewer.post("/api/training/validate", data=fast).status_code == 200


def test_build_run_spec_resolves_every_path(settings, workspace):
    from tuneforge.schemas.configs import EnvironmentCreate
    from tuneforge.services import configs

    kontext = {k: v for k, v in KONTEXT_ENV.items()}
    configs.create_environment(settings, EnvironmentCreate(**kontext))
    kontext_data(workspace)
    relative = kontext_dataloader(Path("."))  # workspace-relative paths
    (workspace / "config/kontext-api-demo/multidatabackend.json").write_text(json.dumps(relative))
    overrides = {k: v for k, v in KONTEXT_OVERRIDES.items() if k != "--report_to"}
    spec = build_run_spec(settings, env="kontext-api-demo", overrides=overrides, job_id="job-1")
    assert spec.job_id == "job-1" and spec.environment == "kontext-api-demo"
    assert spec.config.output_dir == str(workspace / "output/kontext-api-demo")
    assert spec.config.data_backend_config == str(workspace / "config/kontext-api-demo/multidatabackend.json")
    assert spec.config.lycoris_config == str(workspace / "config/kontext-api-demo/lycoris_config.json")
    assert spec.lycoris.algo == "lokr"
    for entry in spec.datasets:
        for path in (entry.instance_data_dir, entry.cache_dir, entry.cache_dir_vae):
            assert path is None or Path(path).is_absolute()
    assert spec.datasets[0].instance_data_dir == str(workspace / "datasets/kontext/edit")
    with pytest.raises(Invalid) as caught:
        build_run_spec(settings, env="kontext-api-demo", overrides={"--learning_rate": "fast"})
    assert caught.value.errors[0].field == "--learning_rate"


def test_pixart_report_warns_but_passes(settings, workspace, local_client):
    make_images(workspace / "datasets/pseudo-camera-10k", ["a"], captions=False)
    from configs_support import pixart_dataloader

    tutorial_flow(local_client, workspace, PIXART_ENV, pixart_dataloader(workspace), PIXART_OVERRIDES)
    report = validate(settings)
    assert report.valid, report.errors
    assert any(w.field == "--train_batch_size" for w in report.warnings)  # 1 image for an effective batch of 4


def test_webhook_config_from_a_file_is_inlined_and_masked(local_client, workspace, fast):
    hooks = [{"webhook_type": "raw", "callback_url": "https://example.com/cb", "auth_token": "tok-123"}]
    (workspace / "config/webhooks.json").write_text(json.dumps(hooks))
    response = local_client.post("/api/training/validate", data={**fast, "--webhook_config": "webhooks.json",
                                                                 "--webhook_reporting_interval": "10"})
    assert response.status_code == 200, response.text
    assert response.json()["config"]["--webhook_config"][0]["callback_url"] == "https://example.com/cb"
    assert "tok-123" not in response.text
    problems = errors_of(local_client.post("/api/training/validate",
                                           data={**fast, "--webhook_config": "/etc/hosts"}))
    assert "outside the workspace" in problems["--webhook_config"]


@pytest.mark.parametrize(("key", "value"), [
    ("--output_dir", "out\x00put"), ("--accelerate_config", "acc\x00.yaml"), ("--resume_from_checkpoint", "a/b\x00"),
    ("--pretrained_model_name_or_path", "./model\x00"), ("--data_backend_config", "x\x00.json"),
    ("--webhook_config", "hooks\x00.json"), ("--cache_dir_vae", "cache\nvae"),
])
def test_control_characters_in_paths_are_422_naming_the_field(local_client, fast, key, value):
    problems = errors_of(local_client.post("/api/training/validate", json={**fast, key: value}))
    assert "control character" in problems[key], problems


def test_control_characters_in_a_dataloader_path(local_client, workspace, fast):
    path = workspace / "config/multidatabackend-once.json"
    entries = json.loads(path.read_text())
    entries[0]["instance_data_dir"] = "datasets/de\x00mo"
    path.write_text(json.dumps(entries))
    problems = errors_of(local_client.post("/api/training/validate", data=fast))
    assert "control character" in problems["--data_backend_config[0].instance_data_dir"], problems


def test_a_form_overrides_the_environment_under_any_spelling(local_client, workspace):
    kontext_data(workspace)
    tutorial_flow(local_client, workspace, KONTEXT_ENV, kontext_dataloader(workspace), KONTEXT_OVERRIDES)
    path = workspace / "config/kontext-api-demo/config.json"
    path.write_text(json.dumps(json.loads(path.read_text()) | {"--checkpointing_steps": 9}))
    for key in ("--checkpoint_step_interval", "checkpointing_steps"):
        response = local_client.post("/api/training/validate", data={key: "7"})
        assert response.status_code == 200, response.text
        assert response.json()["config"]["--checkpoint_step_interval"] == 7


def test_form_body_limit_counts_the_bytes_read(local_client):
    big = b'{"--seed": "' + b"1" * (3 * 1024 * 1024) + b'"}'
    chunked = local_client.post("/api/training/validate", content=iter([big[:1000], big[1000:]]),
                                headers={"content-type": "application/json"})
    assert chunked.status_code == 413, chunked.text
    declared = local_client.post("/api/training/validate", content=big, headers={"content-type": "application/json"})
    assert declared.status_code == 413
    bad_length = local_client.post("/api/training/validate", content=b"{}",
                                   headers={"content-type": "application/json", "content-length": "lots"})
    assert bad_length.status_code == 400 and "Content-Length" in bad_length.json()["detail"]


def test_start_with_a_broken_active_environment_answers_like_validate(local_client, workspace):
    local_client.post("/api/configs/environments", json=PIXART_ENV)
    local_client.post("/api/configs/pixart-api-demo/activate")
    (workspace / "config/pixart-api-demo/config.json").write_text("{")
    for route in ("/api/training/validate", "/api/training/start"):
        problems = errors_of(local_client.post(route, data={"--num_train_epochs": "0"}))
        assert "malformed JSON" in problems["config/pixart-api-demo/config.json"], route


def test_start_stores_what_was_given_not_defaults_or_file_contents(local_client, workspace):
    from configs_support import pixart_data, pixart_dataloader
    from e2e_support import wait_final

    pixart_data(workspace)
    tutorial_flow(local_client, workspace, PIXART_ENV, pixart_dataloader(workspace), PIXART_OVERRIDES)
    hooks = [{"webhook_type": "raw", "callback_url": "http://127.0.0.1:9/hook", "auth_token": "file-s3cret"}]
    (workspace / "config/webhooks.json").write_text(json.dumps(hooks))
    started = local_client.post("/api/training/start", data={"--seed": "1", "--webhook_config": "webhooks.json"})
    assert started.status_code == 202, started.text
    local_client.post("/api/training/cancel", data={"job_id": started.json()["job_id"]})
    wait_final(local_client, started.json()["job_id"], timeout=60)
    text = (workspace / "config/pixart-api-demo/config.json").read_text()
    stored = json.loads(text)
    assert stored["--seed"] == 1 and "--pretrained_model_name_or_path" not in stored
    assert stored["--webhook_config"] == "webhooks.json" and "file-s3cret" not in text, "the file's tokens stay there"
    changed = local_client.get("/api/configs/pixart-api-demo").json()["config"] | {"--model_flavour": "600M-512"}
    assert local_client.put("/api/configs/pixart-api-demo", json={"config": changed}).is_success
    response = local_client.post("/api/training/validate", data={})
    assert response.status_code == 200, response.text
    assert response.json()["config"]["--pretrained_model_name_or_path"] == "PixArt-alpha/PixArt-Sigma-XL-2-512-MS"


@pytest.mark.parametrize("value", ["~/elsewhere.json", "../../outside.json"])
def test_an_unusable_dataloader_path_is_reported_once(local_client, fast, value):
    response = local_client.post("/api/training/validate", data={**fast, "--data_backend_config": value})
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == ["--data_backend_config"]


def test_a_lycoris_path_outside_the_workspace_is_reported_once(local_client, workspace):
    kontext_data(workspace)
    tutorial_flow(local_client, workspace, KONTEXT_ENV, kontext_dataloader(workspace), KONTEXT_OVERRIDES)
    response = local_client.post("/api/training/validate", data={"--lycoris_config": "/etc/lycoris.json"})
    assert [e["field"] for e in response.json()["errors"]] == ["--lycoris_config"]


def test_a_gif_dataset_is_valid(local_client, workspace, fast):
    from PIL import Image

    for image in (workspace / "datasets/demo").glob("*.png"):
        Image.open(image).save(image.with_suffix(".gif"))
        image.unlink()
    response = local_client.post("/api/training/validate", data=fast)
    assert response.status_code == 200, response.text
