"""Validation tells the truth for Flux: "Configuration Valid" for what the engine trains, a 422 naming the field and
the fix for what it would not (checked over the real app, against real tiny model folders)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from configs_support import make_images
from tuneforge import runfolder


@pytest.fixture
def flux_fields(local_client, workspace, tiny_flux) -> dict[str, str]:
    make_images(workspace / "datasets/flux", ["one", "two", "three"])
    entries = [{"id": "flux-images", "instance_data_dir": str(workspace / "datasets/flux"), "resolution": 64,
                "resolution_type": "pixel"},
               {"id": "flux-text", "dataset_type": "text_embeds", "default": True, "cache_dir": "cache/text/flux"}]
    (workspace / "config").mkdir(exist_ok=True)
    (workspace / "config/flux-once.json").write_text(json.dumps(entries))
    return {"--model_family": "flux", "--model_flavour": "dev", "--model_type": "lora",
            "--pretrained_model_name_or_path": str(tiny_flux), "--output_dir": str(workspace / "output/flux"),
            "--data_backend_config": "config/flux-once.json", "--max_train_steps": "10", "--num_train_epochs": "0"}


def validate(client, fields: dict[str, str]):
    return client.post("/api/training/validate", data=fields)


def errors_of(response) -> dict[str, str]:
    assert response.status_code == 422, response.text
    return {e["field"]: e["message"] for e in response.json()["errors"]}


def write_lycoris(workspace: Path, settings: dict) -> str:
    path = workspace / "config/lycoris.json"
    path.write_text(json.dumps(settings))
    return "config/lycoris.json"


@pytest.mark.parametrize("extra", [
    {},
    {"--lora_rank": "4", "--lora_alpha": "2", "--flux_lora_target": "all+ffs"},
    {"--base_model_precision": "int8-quanto", "--text_encoder_precision": "int8-quanto"},
    {"--model_type": "full", "--learning_rate": "0.00001"},
    {"--optimizer": "optimi-lion", "--gradient_checkpointing": "true", "--clip_skip": "1"},
])
def test_what_the_engine_trains_is_valid(local_client, flux_fields, extra):
    response = validate(local_client, {**flux_fields, **extra})
    assert response.status_code == 200, response.text
    assert response.json()["message"] == "Configuration Valid"


def test_schnell_is_valid_and_refuses_guidance(local_client, flux_fields, tiny_flux_schnell):
    schnell = {**flux_fields, "--model_flavour": "schnell", "--pretrained_model_name_or_path": str(tiny_flux_schnell)}
    assert validate(local_client, schnell).status_code == 200
    guided = {**schnell, "--flux_guidance_value": "3.5", "--validation_guidance": "4.5"}
    problems = errors_of(validate(local_client, guided))
    assert "has no guidance" in problems["--flux_guidance_value"] and "--validation_guidance" in problems
    dev_on_schnell = {**flux_fields, "--pretrained_model_name_or_path": str(tiny_flux_schnell)}
    problems = errors_of(validate(local_client, dev_on_schnell))
    assert "has no guidance embedding" in problems["--pretrained_model_name_or_path"]


def test_a_model_folder_of_the_other_family_is_refused(local_client, flux_fields, tiny_pixart, tiny_flux):
    problems = errors_of(validate(local_client, {**flux_fields, "--pretrained_model_name_or_path": str(tiny_pixart)}))
    assert "PixArtSigmaPipeline pipeline, not a flux one" in problems["--pretrained_model_name_or_path"]
    as_pixart = {**flux_fields, "--model_family": "pixart_sigma", "--model_flavour": "900M-1024-v0.6"}
    problems = errors_of(validate(local_client, as_pixart))
    assert "FluxPipeline pipeline, not a pixart_sigma one" in problems["--pretrained_model_name_or_path"]


def test_lycoris_config_is_checked_key_by_key(local_client, workspace, flux_fields):
    lycoris = {**flux_fields, "--lora_type": "lycoris"}
    assert "required for --lora_type=lycoris" in errors_of(validate(local_client, lycoris))["--lycoris_config"]
    good = {"algo": "lokr", "multiplier": 1.0, "linear_dim": 10000, "linear_alpha": 1, "factor": 16}
    response = validate(local_client, {**lycoris, "--lycoris_config": write_lycoris(workspace, good),
                                       "--lora_rank": "16", "--lora_dropout": "0.05"})
    assert response.status_code == 200, response.text
    warnings = {w["field"]: w["message"] for w in response.json()["warnings"]}
    assert "linear_dim=10000" in warnings["--lora_rank"]  # the file wins, and says so
    cases = [({"algo": "lokrr"}, "did you mean 'lokr'"), ({"algo": "lokr", "factor": 0}, "factor must be -1"),
             ({"algo": "lokr", "lienar_dim": 4}, "did you mean 'linear_dim'"), (["lokr"], "JSON object")]
    for settings, expected in cases:
        written = write_lycoris(workspace, settings)
        problems = errors_of(validate(local_client, {**lycoris, "--lycoris_config": written}))
        assert expected in problems["--lycoris_config"], (settings, problems)


def test_precisions_and_options_the_engine_would_not_honour(local_client, flux_fields):
    cases = [({"--model_type": "full", "--base_model_precision": "int8-quanto"}, "--base_model_precision",
              "cannot be trained"),
             ({"--base_model_precision": "nf4-bnb"}, "--base_model_precision", "needs the bitsandbytes package"),
             ({"--push_to_hub": "true", "--hub_model_id": "me/x"}, "--push_to_hub", "not built into tuneforge"),
             ({"--post_upload_script": "/bin/true"}, "--post_upload_script", "--post_checkpoint_script")]
    for extra, field, expected in cases:
        problems = errors_of(validate(local_client, {**flux_fields, **extra}))
        assert expected in problems[field], (extra, problems)


def _fake_checkpoint(output_dir: Path, step: int, trained: dict) -> None:
    folder = output_dir / runfolder.checkpoint_name(step)
    folder.mkdir(parents=True)
    (folder / runfolder.CHECKPOINT_STATE_FILE).write_text(json.dumps({"global_step": step, "trained": trained}))


def test_resume_onto_another_adapter_layout_is_refused_before_the_job(local_client, workspace, flux_fields):
    output = workspace / "output/flux"
    _fake_checkpoint(output, 10, {"model_family": "flux", "model_type": "lora", "lora_type": "lycoris",
                                  "lycoris": {"algo": "lokr", "linear_dim": 10000, "linear_alpha": 1.0, "factor": 16}})
    lycoris = {**flux_fields, "--lora_type": "lycoris", "--resume_from_checkpoint": "latest",
               "--lycoris_config": write_lycoris(workspace, {"algo": "loha", "linear_dim": 8, "linear_alpha": 8})}
    problems = errors_of(validate(local_client, lycoris))
    assert "checkpoint-10 was trained with lycoris={algo: lokr" in problems["--lycoris_config"]
    problems = errors_of(validate(local_client, {**flux_fields, "--resume_from_checkpoint": "checkpoint-10"}))
    assert "lora_type=lycoris" in problems["--lora_type"]
    problems = errors_of(validate(local_client, {**flux_fields, "--resume_from_checkpoint": "checkpoint-7"}))
    assert "available: checkpoint-10" in problems["--resume_from_checkpoint"]
    same = {**lycoris, "--lycoris_config": write_lycoris(workspace, {"algo": "lokr", "linear_dim": 10000,
                                                                     "linear_alpha": 1, "factor": 16})}
    assert validate(local_client, same).status_code == 200


def test_a_refused_start_writes_nothing(local_client, workspace, flux_fields):
    response = local_client.post("/api/training/start", data={**flux_fields, "--base_model_precision": "nf4-bnb"})
    assert response.status_code == 422
    assert local_client.get("/api/jobs").json()["jobs"] == []
    runs = workspace / ".tuneforge/runs"
    assert not runs.exists() or not any(runs.iterdir())


def test_the_options_catalogue_publishes_the_capability_table(local_client):
    families = local_client.get("/api/configs/options").json()["families"]
    assert families["flux"]["trainable_flavours"] == ["dev", "schnell", "kontext"]
    assert "lycoris" in families["flux"]["lora_types"] and "nf4-bnb" in families["flux"]["base_model_precisions"]
    assert families["pixart_sigma"]["default_resolution"]["600M-512"] == 512


def test_options_that_would_fail_or_be_ignored_later_are_named_now(local_client, workspace, flux_fields):
    cases = [({"--model_type": "full", "--base_model_precision": "fp16", "--mixed_precision": "fp16"},
              "--base_model_precision", "gradient scaler"),
             ({"--flow_schedule_shift": "0"}, "--flow_schedule_shift", "> 0"),
             ({"--tokenizer_max_length": "600"}, "--tokenizer_max_length", "<= 512"),
             ({"--clip_skip": "3"}, "--clip_skip", "has 2 layers"),
             ({"--pretrained_model_name_or_path": "black-forest-labs/FLUX.1-schnell"},
              "--pretrained_model_name_or_path", "schnell model")]
    for extra, field, expected in cases:
        problems = errors_of(validate(local_client, {**flux_fields, **extra}))
        assert expected in problems[field], (extra, problems)
    for settings, expected in (({"algo": "lokr", "multiplier": 0.5}, "strength 1"),
                               ({"algo": "lokr", "preset": "attn-mlp"}, "apply_preset.target_module")):
        written = write_lycoris(workspace, settings)
        problems = errors_of(validate(local_client, {**flux_fields, "--lora_type": "lycoris",
                                                     "--lycoris_config": written}))
        assert expected in problems["--lycoris_config"], problems
    written = write_lycoris(workspace, {"algo": "lokr"})
    response = validate(local_client, {**flux_fields, "--lycoris_config": written, "--validation_resolution": "100"})
    warnings = {w["field"]: w["message"] for w in response.json()["warnings"]}
    assert "--lora_type=lycoris" in warnings["--lycoris_config"]
    assert "makes 96x96" in warnings["--validation_resolution"]


def test_resume_with_another_lora_rank_is_refused_at_validate(local_client, workspace, flux_fields):
    _fake_checkpoint(workspace / "output/flux", 4, {"model_family": "flux", "model_type": "lora",
                                                    "lora_type": "standard", "lora_rank": 16, "lora_alpha": 16.0,
                                                    "lora_targets": "all"})
    fields = {**flux_fields, "--resume_from_checkpoint": "latest"}
    assert validate(local_client, fields).status_code == 200
    problems = errors_of(validate(local_client, {**fields, "--lora_rank": "8"}))
    assert "lora_rank=16" in problems["--lora_rank"] and "--lora_alpha" not in problems  # alpha followed the rank
    problems = errors_of(validate(local_client, {**fields, "--lora_alpha": "4"}))
    assert "lora_alpha=16.0" in problems["--lora_alpha"]
    problems = errors_of(validate(local_client, {**fields, "--flux_lora_target": "mmdit"}))
    assert "lora_targets=all" in problems["--flux_lora_target"]


@pytest.fixture
def kontext_fields(local_client, workspace, tiny_kontext) -> dict[str, str]:
    from PIL import Image

    for folder, colour in (("edit", 40), ("reference", 200)):
        make_images(workspace / f"datasets/k/{folder}", ["shoe", "lamp"], captions=folder == "edit", colour=colour)
    (workspace / "config").mkdir(exist_ok=True)
    Image.new("RGB", (64, 64)).save(workspace / "datasets/k/ref.png")
    write_kontext_loader(workspace)
    return {"--model_family": "flux", "--model_flavour": "kontext",
            "--pretrained_model_name_or_path": str(tiny_kontext),
            "--output_dir": str(workspace / "output/k"), "--data_backend_config": "config/k.json",
            "--max_train_steps": "4", "--num_train_epochs": "0"}


def write_kontext_loader(workspace: Path, *, reference_dir: str = "datasets/k/reference", strict: bool = True,
                         extra: list[dict] | None = None, linked: bool = True) -> None:
    edit = {"id": "edit", "instance_data_dir": "datasets/k/edit", "resolution": 64, "resolution_type": "pixel"}
    if linked:
        edit["conditioning_data"] = ["reference"]
    entries = [edit, {"id": "reference", "dataset_type": "conditioning", "instance_data_dir": reference_dir,
                      "conditioning_type": "reference_strict" if strict else "reference_loose"},
               {"id": "text", "dataset_type": "text_embeds", "default": True}, *(extra or [])]
    (workspace / "config/k.json").write_text(json.dumps(entries))


def test_kontext_pairs_are_checked_before_any_job(local_client, workspace, kontext_fields):
    from PIL import Image

    assert validate(local_client, kontext_fields).status_code == 200
    field = "--data_backend_config[reference]"
    make_images(workspace / "datasets/k/others", ["cup", "pen"], captions=False)
    write_kontext_loader(workspace, reference_dir="datasets/k/others")
    assert "none of its 2 images has a reference" in errors_of(validate(local_client, kontext_fields))[
        f"{field}.instance_data_dir"]
    write_kontext_loader(workspace, extra=[{"id": "unused", "dataset_type": "conditioning",
                                            "instance_data_dir": "datasets/k/others"}])
    assert "no image dataset names" in errors_of(validate(local_client, kontext_fields))[
        "--data_backend_config[unused].id"]
    Image.new("RGB", (64, 96)).save(workspace / "datasets/k/reference/lamp.png")  # taller than its 96x64 edit
    write_kontext_loader(workspace)
    assert "differ in aspect ratio" in errors_of(validate(local_client, kontext_fields))[f"{field}.conditioning_type"]
    write_kontext_loader(workspace, strict=False)
    assert validate(local_client, kontext_fields).status_code == 200  # reference_loose gives it its own bucket
    (workspace / "datasets/k/reference/lamp.png").write_bytes(b"not a picture")
    assert "not readable as images: lamp.png" in errors_of(validate(local_client, kontext_fields))[
        f"{field}.instance_data_dir"]
    write_kontext_loader(workspace, linked=False)
    problems = errors_of(validate(local_client, kontext_fields))
    assert "edit/reference pairs" in problems["--data_backend_config"]


def test_the_validation_reference_image_is_checked(local_client, workspace, kontext_fields, flux_fields):
    fields = {**kontext_fields, "--validation_reference_image": "datasets/k/ref.png"}
    response = validate(local_client, fields)
    assert response.status_code == 200, response.text
    (workspace / "datasets/k/bad.png").write_bytes(b"nope")
    bad = {**kontext_fields, "--validation_reference_image": "datasets/k/bad.png"}
    problems = errors_of(validate(local_client, bad))
    assert "not a decodable image" in problems["--validation_reference_image"]
    response = validate(local_client, {**flux_fields, "--validation_reference_image": "datasets/k/ref.png"})
    assert "without reference images" in {w["field"]: w["message"] for w in response.json()["warnings"]}[
        "--validation_reference_image"]


def test_kontext_pairs_across_several_sets_and_shared_names(local_client, workspace, kontext_fields):
    make_images(workspace / "datasets/k/second", ["cup"], captions=False)
    second = {"id": "second", "dataset_type": "conditioning", "instance_data_dir": "datasets/k/second"}
    write_kontext_loader(workspace, extra=[second])
    entries = json.loads((workspace / "config/k.json").read_text())
    entries[0]["conditioning_data"] = ["reference", "second"]
    (workspace / "config/k.json").write_text(json.dumps(entries))
    problems = errors_of(validate(local_client, kontext_fields))  # each edit needs a partner in both sets
    assert "in 'reference' and 'second'" in problems["--data_backend_config[reference].instance_data_dir"]
    make_images(workspace / "datasets/k/second", ["shoe", "lamp"], captions=False)
    assert validate(local_client, kontext_fields).status_code == 200  # random: one set per batch
    problems = errors_of(validate(local_client, {**kontext_fields, "--conditioning_multidataset_sampling": "combined"}))
    assert "takes one" in problems["--conditioning_multidataset_sampling"]
    from PIL import Image

    Image.new("RGB", (96, 64)).save(workspace / "datasets/k/reference/lamp.jpg")
    problems = errors_of(validate(local_client, kontext_fields))
    assert "share a name (lamp" in problems["--data_backend_config[reference].instance_data_dir"]


def test_conditioning_links_and_settings_it_does_not_use(local_client, workspace, kontext_fields):
    entries = json.loads((workspace / "config/k.json").read_text())
    entries[1]["disabled"] = True
    (workspace / "config/k.json").write_text(json.dumps(entries))
    problems = errors_of(validate(local_client, kontext_fields))
    assert "'reference' is disabled" in problems["--data_backend_config[0].conditioning_data"]
    entries[1].update(disabled=False, resolution=512, repeats=2)
    (workspace / "config/k.json").write_text(json.dumps(entries))
    response = validate(local_client, kontext_fields)
    assert response.status_code == 200
    warnings = {w["field"]: w["message"] for w in response.json()["warnings"]}
    warning = warnings["--data_backend_config[reference].repeats"]
    assert "repeats, resolution not used" in warning and "plan" in warning
