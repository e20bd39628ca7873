"""The options registry, the dataloader schema and the run spec, without a server."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tuneforge.errors import Invalid
from tuneforge.options import names, rules
from tuneforge.options.capabilities import FAMILIES
from tuneforge.options.dataloader import parse_dataloader
from tuneforge.options.registry import TrainingOptions, with_model_defaults
from tuneforge.options.spec import RunSpec

TEXT = {"id": "text", "dataset_type": "text_embeds", "default": True, "cache_dir": "/c"}


def parse(raw):
    values, errors = names.canonical(raw)
    options, problems = rules.parse(values)
    return options, errors + problems


def fields(problems):
    return {p.field: p.message for p in problems}


def test_every_option_has_help_category_and_applicability():
    for name, field in TrainingOptions.model_fields.items():
        assert field.description, name
        info = names.extra(name)
        assert info["category"] and "families" in info and "model_types" in info, name


def test_prefixed_and_bare_names_and_aliases_are_the_same_option():
    options, problems = parse({"--model_family": "flux", "learning_rate": "3e-4", "--checkpointing_steps": "50",
                               "__active_tab__": "model"})
    assert problems == []
    assert options.learning_rate == 3e-4 and options.checkpoint_step_interval == 50


def test_unknown_option_suggests_the_right_one():
    _, problems = parse({"--model_family": "flux", "--learnig_rate": "1"})
    assert "did you mean '--learning_rate'" in fields(problems)["--learnig_rate"]


def test_alias_and_canonical_with_different_values_clash():
    _, problems = parse({"model_family": "flux", "checkpointing_steps": 5, "checkpoint_step_interval": 6})
    assert "--checkpoint_step_interval" in fields(problems)


def test_form_strings_are_coerced():
    options, problems = parse({"--model_family": "pixart_sigma", "--dataloader_prefetch": "true",
                               "--train_batch_size": "4", "--seed": "", "--validation_resolution": "512x768"})
    assert problems == []
    assert options.dataloader_prefetch is True and options.train_batch_size == 4 and options.seed is None


@pytest.mark.parametrize(("raw", "field", "words"), [
    ({"learning_rate": "fast"}, "--learning_rate", "must be a number (got 'fast')"),
    ({"learning_rate": 0}, "--learning_rate", "must be > 0"),
    ({"train_batch_size": 1.5}, "--train_batch_size", "whole number"),
    ({"model_type": "dora"}, "--model_type", "must be one of full, lora"),
    ({"gradient_checkpointing": "maybe"}, "--gradient_checkpointing", "true or false"),
    ({"validation_resolution": "big"}, "--validation_resolution", "1024x1024"),
    ({"webhook_config": "[{"}, "--webhook_config", "not valid JSON"),
    ({"webhook_config": [{"callback_url": "ftp://x"}]}, "--webhook_config[0].callback_url", "pattern"),
])
def test_bad_values_name_the_field_and_the_fix(raw, field, words):
    _, problems = parse({"model_family": "flux", **raw})
    assert words in fields(problems).get(field, ""), problems


def test_model_family_is_required():
    _, problems = parse({})
    assert "pixart_sigma or flux" in fields(problems)["--model_family"]


@pytest.mark.parametrize(("family", "flavour", "hub_id"), [
    ("pixart_sigma", None, "terminusresearch/pixart-900m-1024-ft-v0.6"),
    ("pixart_sigma", "900M-1024-v0.7-stage2", "terminusresearch/pixart-900m-1024-ft-v0.7-stage2"),
    ("pixart_sigma", "600M-512", "PixArt-alpha/PixArt-Sigma-XL-2-512-MS"),
    ("flux", None, "black-forest-labs/FLUX.1-dev"),
    ("flux", "schnell", "black-forest-labs/FLUX.1-schnell"),
    ("flux", "kontext", "black-forest-labs/FLUX.1-Kontext-dev"),
])
def test_flavour_defaults_the_base_model(family, flavour, hub_id):
    options = TrainingOptions(model_family=family, model_flavour=flavour)
    assert options.pretrained_model_name_or_path is None  # the model keeps what was given
    filled = with_model_defaults(options)
    assert filled.pretrained_model_name_or_path == hub_id
    assert filled.model_flavour == (flavour or FAMILIES[family].default_flavour)


def test_paths_with_control_characters_name_the_field():
    _, problems = parse({"model_family": "flux", "output_dir": "out\x00put", "cache_dir_vae": "a\nb"})
    assert "control character '\\x00'" in fields(problems)["--output_dir"]
    assert "control character '\\n'" in fields(problems)["--cache_dir_vae"]
    with pytest.raises(Invalid) as caught:
        parse_dataloader([{"id": "img", "instance_data_dir": "d\x00"}, TEXT])
    assert caught.value.errors[0].field == "[0].instance_data_dir"


def test_families_know_their_pipelines_and_edit_models():
    assert FAMILIES["flux"].pipeline_classes == ("FluxPipeline", "FluxKontextPipeline")
    assert [f.name for f in FAMILIES["flux"].flavours.values() if f.needs_conditioning] == ["kontext"]
    assert TrainingOptions.model_json_schema()["properties"]["model_family"]["enum"] == list(FAMILIES)
    _, problems = parse({"model_family": "flx"})
    assert "unknown model family 'flx'" in fields(problems)["--model_family"]
    assert "did you mean 'flux'" in fields(problems)["--model_family"]


def test_rules():
    def errors_of(**values):
        return fields(rules.check_rules(TrainingOptions(**values))[0])

    assert "model_type=lora" in errors_of(model_family="flux", model_type="full",
                                          base_model_precision="nf4-bnb")["--base_model_precision"]
    assert errors_of(model_family="flux", model_type="lora", base_model_precision="int8-quanto") == {}
    assert "use one of" in errors_of(model_family="flux", model_flavour="900M-1024-v0.6")["--model_flavour"]
    assert "exactly one" in errors_of(model_family="flux", num_train_epochs=0)["--num_train_epochs"]
    assert "num_train_epochs=0" in errors_of(model_family="flux", max_train_steps=10)["--num_train_epochs"]
    assert "not built into tuneforge" in errors_of(model_family="flux", push_to_hub=True)["--push_to_hub"]
    assert "--post_checkpoint_script" in errors_of(model_family="flux", post_upload_script="x")["--post_upload_script"]
    assert "--validation_external_script" in errors_of(model_family="flux", validation_method="external-script")


def test_options_an_adapter_kind_does_not_use_are_named():
    _, warnings = rules.check_rules(TrainingOptions(model_family="flux", lora_type="lycoris", flux_lora_target="mmdit"))
    assert "lycoris_config" in fields(warnings)["--flux_lora_target"]
    _, warnings = rules.check_rules(TrainingOptions(model_family="flux", validation_negative_prompt="blurry"))
    assert "ignored" in fields(warnings)["--validation_negative_prompt"]


def test_family_mismatch_is_a_warning_type_mismatch_of_lora_type_an_error():
    errors, warnings = rules.check_rules(TrainingOptions(model_family="pixart_sigma", flux_guidance_value=3,
                                                         model_type="full", lora_rank=4))
    assert "--flux_guidance_value" in fields(warnings) and "--lora_rank" in fields(warnings)
    errors, _ = rules.check_rules(TrainingOptions(model_family="flux", model_type="full", lora_type="lycoris"))
    assert "--lora_type" in fields(errors)


def test_metadata_lists_every_option():
    published = {entry["key"] for entry in names.metadata()}
    assert published == set(TrainingOptions.model_fields)
    assert len(published) >= 55


def test_dataloader_rules():
    image = {"id": "img", "instance_data_dir": "/d"}
    assert parse_dataloader([image, {**TEXT, "write_batch_size": 128}])[1].write_batch_size == 128
    with pytest.raises(Invalid) as caught:
        parse_dataloader([{**image, "write_batch_size": 128}, TEXT])
    assert caught.value.errors[0].field == "[0].write_batch_size"
    with pytest.raises(Invalid) as caught:
        parse_dataloader([{**image, "crop_stlye": "random"}, TEXT])
    assert "did you mean 'crop_style'" in caught.value.errors[0].message
    with pytest.raises(Invalid) as caught:
        parse_dataloader([image, {**image}, TEXT])
    assert "duplicate id 'img'" in caught.value.errors[0].message
    with pytest.raises(Invalid) as caught:
        parse_dataloader([image, {**TEXT, "default": False}])
    assert "default" in caught.value.errors[0].message
    with pytest.raises(Invalid) as caught:
        parse_dataloader([{**image, "conditioning_data": ["ref"]}, TEXT])
    assert "'ref' is not the id of a conditioning dataset" in caught.value.errors[0].message
    with pytest.raises(Invalid) as caught:
        parse_dataloader([{**image, "resolution": 1024, "resolution_type": "area"}, TEXT])
    assert "megapixels" in caught.value.errors[0].message
    with pytest.raises(Invalid):
        parse_dataloader({"id": "x"})


def test_tutorial_dataloaders_parse():
    from tuneforge.services.examples import _root

    for example in ("pixart-sigma-900m-full", "flux-kontext-lycoris"):
        entries = parse_dataloader(json.loads((_root() / example / "multidatabackend.json").read_text()))
        assert entries[-1].default is True
    kontext = parse_dataloader(json.loads((_root() / "flux-kontext-lycoris/multidatabackend.json").read_text()))
    assert kontext[0].conditioning_data == ["kontext-reference"]
    assert kontext[1].conditioning_type == "reference_strict"


def test_run_spec_round_trip_and_atomic_write(tmp_path):
    datasets = parse_dataloader([{"id": "img", "instance_data_dir": "/d"}, TEXT])
    spec = RunSpec(job_id="j1", workspace=tmp_path, datasets=datasets,
                   config=TrainingOptions(model_family="flux", max_train_steps=5, num_train_epochs=0))
    path = tmp_path / "run/spec.json"
    spec.write(path)
    assert RunSpec.read(path) == spec
    assert [p.name for p in path.parent.iterdir()] == ["spec.json"]  # no temporary left behind
    broken = json.loads(path.read_text())
    broken["config"]["num_train_epochs"] = 3
    path.write_text(json.dumps(broken))
    with pytest.raises(ValueError, match="exactly one"):
        RunSpec.read(path)


def test_options_never_import_torch():
    code = ("import sys, tuneforge.options.spec, tuneforge.services.validation, tuneforge.api.routes.configs;"
            "print([m for m in sys.modules if m.split('.')[0] in ('torch', 'diffusers', 'transformers')])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
