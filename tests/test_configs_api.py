"""Config environments over real HTTP on a temporary workspace: the tutorial's flows and every bad input."""

from __future__ import annotations

import json

import pytest

from configs_support import (
    KONTEXT_ENV,
    KONTEXT_OVERRIDES,
    PIXART_ENV,
    PIXART_OVERRIDES,
    kontext_data,
    kontext_dataloader,
    pixart_data,
    pixart_dataloader,
    tutorial_flow,
)


def config_files(workspace):
    return {str(p.relative_to(workspace)): p.read_bytes() for p in sorted((workspace / "config").rglob("*"))
            if p.is_file()}


def test_create_writes_config_and_starter_dataloader(local_client, workspace):
    response = local_client.post("/api/configs/environments", json=PIXART_ENV)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["name"] == "pixart-api-demo"
    assert body["config"]["--model_family"] == "pixart_sigma"
    assert body["config"]["--model_type"] == "full"
    assert body["config"]["--data_backend_config"] == "pixart-api-demo/multidatabackend.json"
    folder = workspace / "config/pixart-api-demo"
    stored = json.loads((folder / "config.json").read_text())
    assert stored["--model_flavour"] == "900M-1024-v0.6"
    starter = json.loads((folder / "multidatabackend.json").read_text())
    assert [e["dataset_type"] for e in starter] == ["image", "text_embeds"]
    assert body["metadata"]["description"] == "PixArt 900M API-driven training"


def test_kontext_lycoris_env_gets_lycoris_file_and_conditioning_starter(local_client, workspace):
    body = local_client.post("/api/configs/environments", json=KONTEXT_ENV).json()
    assert body["config"]["--lycoris_config"] == "config/kontext-api-demo/lycoris_config.json"
    folder = workspace / "config/kontext-api-demo"
    assert json.loads((folder / "lycoris_config.json").read_text())["algo"] == "lokr"
    starter = json.loads((folder / "multidatabackend.json").read_text())
    assert [e["dataset_type"] for e in starter] == ["image", "conditioning", "text_embeds"]
    assert starter[0]["conditioning_data"] == [starter[1]["id"]]


def test_pixart_tutorial_flow_and_validate(local_client, workspace):
    pixart_data(workspace)
    tutorial_flow(local_client, workspace, PIXART_ENV, pixart_dataloader(workspace), PIXART_OVERRIDES)
    got = local_client.get("/api/configs/pixart-api-demo").json()
    assert got["config"]["--learning_rate"] == 0.0001 and got["config"]["--max_train_steps"] == 1800
    assert got["metadata"]["tags"] == ["api"] and got["metadata"]["is_active"] is True
    assert (workspace / "config/pixart-api-demo/config.json.bak").is_file()
    listing = local_client.get("/api/configs/", params={"config_type": "model"}).json()
    assert listing["active"] == "pixart-api-demo" and listing["count"] == 1
    result = local_client.post("/api/training/validate", files={"__active_tab__": (None, "model"),
                                                                 "--num_train_epochs": (None, "0")})
    assert result.status_code == 200, result.text
    assert result.json()["message"] == "Configuration Valid"
    assert result.json()["config"]["--optimizer"] == "adamw_bf16"


def test_kontext_tutorial_flow_and_validate(local_client, workspace):
    kontext_data(workspace)
    tutorial_flow(local_client, workspace, KONTEXT_ENV, kontext_dataloader(workspace), KONTEXT_OVERRIDES)
    result = local_client.post("/api/training/validate", files={"__active_tab__": (None, "model"),
                                                                 "--num_train_epochs": (None, "0")})
    assert result.status_code == 200, result.text
    config = result.json()["config"]
    assert config["--lora_type"] == "lycoris" and config["--base_model_precision"] == "int8-quanto"
    assert config["--pretrained_model_name_or_path"] == "black-forest-labs/FLUX.1-Kontext-dev"


def test_list_get_export_activate_delete(local_client, workspace):
    local_client.post("/api/configs/environments", json=PIXART_ENV)
    local_client.post("/api/configs/environments", json=KONTEXT_ENV)
    assert local_client.get("/api/configs").json()["count"] == 2  # without the slash too
    exported = local_client.get("/api/configs/kontext-api-demo/export")
    assert exported.status_code == 200 and "attachment" in exported.headers["content-disposition"]
    assert exported.json()["lycoris_config"]["algo"] == "lokr"
    assert len(exported.json()["dataloader"]) == 3
    assert local_client.post("/api/configs/pixart-api-demo/activate").status_code == 200
    assert local_client.delete("/api/configs/pixart-api-demo").status_code == 409
    assert (workspace / "config/pixart-api-demo/config.json").exists()
    assert local_client.delete("/api/configs/kontext-api-demo").status_code == 200
    assert not (workspace / "config/kontext-api-demo").exists()
    assert local_client.get("/api/configs/kontext-api-demo").status_code == 404


def test_regenerate_dataloader(local_client, workspace):
    local_client.post("/api/configs/environments", json=PIXART_ENV)
    path = workspace / "config/pixart-api-demo/multidatabackend.json"
    path.write_text("[]")
    assert local_client.post("/api/configs/pixart-api-demo/dataloader").status_code == 409
    assert path.read_text() == "[]"
    response = local_client.post("/api/configs/pixart-api-demo/dataloader", json={"overwrite": True})
    assert response.status_code == 200
    assert len(json.loads(path.read_text())) == 2


def test_examples_and_create_from_example(local_client, workspace):
    listed = local_client.get("/api/configs/examples").json()
    names = {e["name"] for e in listed["examples"]}
    assert {"pixart-sigma-900m-full", "flux-kontext-lycoris"} <= names
    response = local_client.post("/api/configs/environments", json={"name": "my-kontext",
                                                                     "example": "flux-kontext-lycoris"})
    assert response.status_code == 201, response.text
    config = response.json()["config"]
    assert config["--data_backend_config"] == "my-kontext/multidatabackend.json"
    assert config["--lycoris_config"] == "config/my-kontext/lycoris_config.json"
    assert (workspace / "config/my-kontext/lycoris_config.json").is_file()
    assert local_client.post("/api/configs/environments",
                             json={"name": "x", "example": "no-such-example"}).status_code == 404


def test_options_registry_is_published(local_client):
    body = local_client.get("/api/configs/options").json()
    by_name = {o["name"]: o for o in body["options"]}
    for name in ("--model_family", "--lora_alpha", "--validation_negative_prompt", "--resolution",
                 "--checkpoint_step_interval", "--flux_guidance_value", "--webhook_config", "--num_processes"):
        assert name in by_name, name
    assert by_name["--checkpoint_step_interval"]["aliases"] == ["--checkpointing_steps"]
    assert by_name["--flux_guidance_value"]["families"] == ["flux"]
    assert "optimi-lion" in by_name["--optimizer"]["choices"]
    assert body["families"]["pixart_sigma"]["flavours"]["600M-2048"] == "PixArt-alpha/PixArt-Sigma-XL-2-2K-MS"


@pytest.mark.parametrize("name", ["a/b", "..", "../x", "a..b", ".hidden", "bad name", "na$me", "ünï", ""])
def test_bad_environment_names_are_rejected(local_client, workspace, name):
    response = local_client.post("/api/configs/environments", json={**PIXART_ENV, "name": name})
    assert response.status_code == 422, (name, response.text)
    assert "Invalid environment name" in response.json()["detail"]
    assert response.json()["errors"][0]["field"] == "name"
    assert config_files(workspace) == {}


def test_slashes_in_paths_never_reach_a_handler(local_client):
    assert local_client.get("/api/configs/..%2F..%2Fetc").status_code == 404  # refused by routing


@pytest.mark.parametrize("path", ["a..b", "na$me", ".hidden"])
def test_bad_names_in_paths_are_rejected(local_client, path):
    for method, route in [("GET", ""), ("PUT", ""), ("DELETE", ""), ("POST", "/activate"), ("GET", "/export")]:
        response = local_client.request(method, f"/api/configs/{path}{route}", json={"config": {}})
        assert response.status_code == 422, (method, route, response.text)
        assert "Invalid environment name" in response.json()["detail"]


@pytest.mark.parametrize("name", ["options", "examples"])
def test_names_of_routes_are_reserved(local_client, workspace, name):
    response = local_client.post("/api/configs/environments", json={**PIXART_ENV, "name": name})
    assert response.status_code == 422
    assert "options and examples are reserved" in response.json()["detail"]
    assert config_files(workspace) == {}
    assert name in local_client.get(f"/api/configs/{name}").json()  # still the registry / example listing


def test_a_folder_without_config_json_is_no_environment(local_client, workspace):
    folder = workspace / "config/pixart-api-demo"
    folder.mkdir(parents=True)
    (folder / "multidatabackend.json").write_text('[{"id": "mine"}]')
    assert local_client.get("/api/configs/pixart-api-demo").status_code == 404
    assert local_client.delete("/api/configs/pixart-api-demo").status_code == 404
    created = local_client.post("/api/configs/environments", json=PIXART_ENV)
    assert created.status_code == 201, created.text
    assert (folder / "multidatabackend.json").read_text() == '[{"id": "mine"}]'  # the user's file is kept
    assert local_client.get("/api/configs/pixart-api-demo").status_code == 200


def test_create_twice_is_a_conflict(local_client):
    assert local_client.post("/api/configs/environments", json=PIXART_ENV).status_code == 201
    assert local_client.post("/api/configs/environments", json=PIXART_ENV).status_code == 409


def test_create_with_bad_values(local_client, workspace):
    cases = [{**PIXART_ENV, "model_family": "sdxl"}, {**PIXART_ENV, "model_flavour": "9000M"},
             {"name": "nofamily"}, {**PIXART_ENV, "lora_type": "lycoris"}]
    for body in cases:
        response = local_client.post("/api/configs/environments", json=body)
        assert response.status_code in (400, 422), (body, response.text)
    assert config_files(workspace) == {}


def put_config(client, name, config):
    return client.put(f"/api/configs/{name}", json={"name": name, "config": config})


@pytest.mark.parametrize(("change", "field", "words"), [
    ({"--learning_rate": "fast"}, "--learning_rate", "must be a number"),
    ({"--learning_rate": -1}, "--learning_rate", "must be >"),
    ({"--train_batch_size": 0}, "--train_batch_size", ">= 1"),
    ({"--lora_dropout": 1.5}, "--lora_dropout", "< 1"),
    ({"--optimizer": "adam_w"}, "--optimizer", "did you mean"),
    ({"--learning_rat": 0.1}, "--learning_rat", "did you mean '--learning_rate'"),
    ({"--data_backend_config": "../../etc/passwd"}, "--data_backend_config", "outside the workspace"),
    ({"--data_backend_config": "/etc/passwd"}, "--data_backend_config", "outside the workspace"),
    ({"--base_model_precision": "int8-quanto"}, "--base_model_precision", "model_type=lora"),
    ({"--lora_type": "lycoris"}, "--lora_type", "applies only to --model_type=lora"),
])
def test_put_rejects_bad_values_and_keeps_the_file(local_client, workspace, change, field, words):
    local_client.post("/api/configs/environments", json=PIXART_ENV)
    before = config_files(workspace)
    current = local_client.get("/api/configs/pixart-api-demo").json()["config"]
    response = put_config(local_client, "pixart-api-demo", current | change)
    assert response.status_code == 422, response.text
    problems = {e["field"]: e["message"] for e in response.json()["errors"]}
    assert field in problems and words in problems[field], problems
    assert config_files(workspace) == before


@pytest.mark.parametrize("key", ["--data_backend_config", "--lycoris_config", "--output_dir", "--webhook_config"])
def test_put_refuses_control_characters_in_paths(local_client, workspace, key):
    local_client.post("/api/configs/environments", json=PIXART_ENV)
    before = config_files(workspace)
    current = local_client.get("/api/configs/pixart-api-demo").json()["config"]
    response = put_config(local_client, "pixart-api-demo", current | {key: "a\x00b.json"})
    assert response.status_code == 422, response.text
    problems = {e["field"]: e["message"] for e in response.json()["errors"]}
    assert "control character" in problems[key], problems
    assert config_files(workspace) == before


def test_backup_keeps_the_previous_bytes_even_when_not_utf8(local_client, workspace):
    local_client.post("/api/configs/environments", json=PIXART_ENV)
    path = workspace / "config/pixart-api-demo/config.json"
    previous = '{"--model_family": "pixart_sigma", "--validation_prompt": "caf\xe9"}'.encode("latin-1")
    path.write_bytes(previous)
    response = put_config(local_client, "pixart-api-demo", {"--model_family": "pixart_sigma", "--model_type": "full"})
    assert response.status_code == 200, response.text
    assert path.with_name("config.json.bak").read_bytes() == previous
    assert [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")] == []


def test_put_accepts_unprefixed_keys_and_alias(local_client, workspace):
    local_client.post("/api/configs/environments", json=PIXART_ENV)
    current = local_client.get("/api/configs/pixart-api-demo").json()["config"]
    response = put_config(local_client, "pixart-api-demo", current | {"learning_rate": "2e-5",
                                                                     "checkpointing_steps": 250})
    assert response.status_code == 200, response.text
    stored = json.loads((workspace / "config/pixart-api-demo/config.json").read_text())
    assert stored["--learning_rate"] == 2e-5 and stored["--checkpoint_step_interval"] == 250


def test_put_body_name_must_match(local_client):
    local_client.post("/api/configs/environments", json=PIXART_ENV)
    response = local_client.put("/api/configs/pixart-api-demo", json={"name": "other", "config": {}})
    assert response.status_code == 422 and response.json()["errors"][0]["field"] == "name", response.text


def test_family_mismatch_is_a_warning(local_client):
    local_client.post("/api/configs/environments", json=PIXART_ENV)
    current = local_client.get("/api/configs/pixart-api-demo").json()["config"]
    response = put_config(local_client, "pixart-api-demo", current | {"--flux_guidance_value": 3.5})
    assert response.status_code == 200
    assert any(w["field"] == "--flux_guidance_value" and "applies only to flux" in w["message"]
               for w in response.json()["warnings"])


def test_malformed_json_on_disk(local_client, workspace):
    local_client.post("/api/configs/environments", json=PIXART_ENV)
    (workspace / "config/pixart-api-demo/config.json").write_text('{"--model_family": "pixart_sigma",,}')
    response = local_client.get("/api/configs/pixart-api-demo")
    assert response.status_code == 422
    assert "line 1 column" in response.json()["errors"][0]["message"]
    listed = local_client.get("/api/configs/").json()["configs"][0]
    assert "malformed JSON" in listed["error"]
    # a PUT repairs it
    fixed = put_config(local_client, "pixart-api-demo", {"--model_family": "pixart_sigma", "--model_type": "full"})
    assert fixed.status_code == 200
    assert local_client.get("/api/configs/pixart-api-demo").status_code == 200


def test_webhook_tokens_are_masked_and_kept(local_client, workspace):
    local_client.post("/api/configs/environments", json=PIXART_ENV)
    hooks = [{"webhook_type": "raw", "callback_url": "https://example.com/hook", "auth_token": "s3cret-token"}]
    current = local_client.get("/api/configs/pixart-api-demo").json()["config"]
    assert put_config(local_client, "pixart-api-demo", current | {"--webhook_config": json.dumps(hooks)}).is_success
    shown = local_client.get("/api/configs/pixart-api-demo")
    assert "s3cret-token" not in shown.text and "s3cret-token" not in local_client.get(
        "/api/configs/pixart-api-demo/export").text
    assert put_config(local_client, "pixart-api-demo", shown.json()["config"]).is_success  # GET → PUT round trip
    stored = json.loads((workspace / "config/pixart-api-demo/config.json").read_text())
    assert stored["--webhook_config"][0]["auth_token"] == "s3cret-token"


def test_a_webhook_file_is_stored_as_its_path(local_client, workspace):
    hooks = [{"webhook_type": "raw", "callback_url": "https://example.com/hook", "auth_token": "file-s3cret"}]
    local_client.post("/api/configs/environments", json=PIXART_ENV)
    (workspace / "config/webhooks.json").write_text(json.dumps(hooks))
    current = local_client.get("/api/configs/pixart-api-demo").json()["config"]
    assert put_config(local_client, "pixart-api-demo", current | {"--webhook_config": "webhooks.json"}).is_success
    stored = (workspace / "config/pixart-api-demo/config.json").read_text()
    assert json.loads(stored)["--webhook_config"] == "webhooks.json" and "file-s3cret" not in stored
    shown = local_client.get("/api/configs/pixart-api-demo").json()["config"]
    assert shown["--webhook_config"] == "webhooks.json"
    assert put_config(local_client, "pixart-api-demo", shown).is_success  # GET → PUT round trip keeps the path


@pytest.mark.parametrize("stored", [None, [{"callback_url": "https://example.com/old", "auth_token": "t0ken"}]])
def test_a_masked_token_for_an_unknown_url_is_refused(local_client, workspace, stored):
    local_client.post("/api/configs/environments", json=PIXART_ENV)
    current = local_client.get("/api/configs/pixart-api-demo").json()["config"]
    if stored:
        assert put_config(local_client, "pixart-api-demo", current | {"--webhook_config": stored}).is_success
    before = config_files(workspace)
    hooks = [{"callback_url": "https://example.com/new", "auth_token": "***"}]
    response = put_config(local_client, "pixart-api-demo", current | {"--webhook_config": hooks})
    assert response.status_code == 422, response.text
    problems = {e["field"]: e["message"] for e in response.json()["errors"]}
    assert "send the real token" in problems["--webhook_config[0].auth_token"]
    assert config_files(workspace) == before


def test_viewer_can_read_but_not_edit(admin_client, make_user, workspace):
    admin_client.post("/api/configs/environments", json=PIXART_ENV)
    viewer = make_user("watcher", "viewer")
    assert viewer.get("/api/configs/").status_code == 200
    assert viewer.get("/api/configs/pixart-api-demo").status_code == 200
    assert viewer.get("/api/configs/options").status_code == 200
    before = config_files(workspace)
    assert viewer.post("/api/configs/environments", json={**PIXART_ENV, "name": "v"}).status_code == 403
    assert viewer.put("/api/configs/pixart-api-demo", json={"config": {}}).status_code == 403
    assert viewer.post("/api/configs/pixart-api-demo/activate").status_code == 403
    assert viewer.post("/api/configs/pixart-api-demo/dataloader", json={"overwrite": True}).status_code == 403
    assert viewer.delete("/api/configs/pixart-api-demo").status_code == 403
    assert config_files(workspace) == before
    researcher = make_user("researcher", "researcher")
    assert researcher.post("/api/configs/environments", json={**PIXART_ENV, "name": "r"}).status_code == 201


def test_anonymous_after_setup_is_refused(anonymous):
    assert anonymous.get("/api/configs/").status_code == 401
    assert anonymous.post("/api/training/validate", data={"--num_train_epochs": "0"}).status_code == 401


def test_routes_are_tagged(local_client):
    paths = local_client.get("/openapi.json").json()["paths"]
    assert paths["/api/configs/{name}"]["put"]["tags"] == ["configurations"]
    assert paths["/api/training/validate"]["post"]["tags"] == ["training"]


def test_dataloader_paths_inside_workspace_only(local_client, workspace, tmp_path):
    local_client.post("/api/configs/environments", json=PIXART_ENV)
    current = local_client.get("/api/configs/pixart-api-demo").json()["config"]
    inside = workspace / "config/pixart-api-demo/multidatabackend.json"
    for accepted in (str(inside), "config/pixart-api-demo/multidatabackend.json"):
        assert put_config(local_client, "pixart-api-demo", current | {"--data_backend_config": accepted}).is_success
    outside = tmp_path / "elsewhere.json"
    outside.write_text("[]")
    (workspace / "config/link.json").symlink_to(outside)  # a link must not smuggle a file in
    response = put_config(local_client, "pixart-api-demo", current | {"--data_backend_config": "link.json"})
    assert response.status_code == 422
    assert "outside the workspace" in response.json()["errors"][0]["message"]
