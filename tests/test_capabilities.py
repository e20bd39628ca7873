"""The capability table is the one list of what tuneforge trains: validation, the run spec and the trainer all read
it, and what it names exists in the engine."""

from __future__ import annotations

import dataclasses
import importlib
import typing

import pytest

from engine_helpers import run_in_process, write_images
from tuneforge.options import capabilities
from tuneforge.options.capabilities import FAMILIES, PRECISIONS
from tuneforge.options.lycoris import Algo
from tuneforge.services.validation import build_run_spec


def test_every_trainable_flavour_names_an_adapter_class_that_exists():
    from tuneforge.models.base import ModelAdapter

    for family in FAMILIES.values():
        for flavour in family.flavours.values():
            if flavour.adapter is None:
                continue
            module, _, name = flavour.adapter.partition(":")
            assert issubclass(getattr(importlib.import_module(module), name), ModelAdapter), flavour


def test_every_precision_is_one_the_engine_loads():
    import torch

    from tuneforge.models.precision import load_dtype

    for name, precision in PRECISIONS.items():
        dtype = load_dtype(name)
        assert dtype is None if precision.dtype is None else isinstance(dtype, torch.dtype)
        if precision.quantiser == "quanto":
            from optimum import quanto

            assert hasattr(quanto, precision.weights), name


def test_the_lycoris_algorithms_offered_are_the_library_s():
    from lycoris.wrapper import network_module_dict

    assert set(typing.get_args(Algo)) <= set(network_module_dict)


def test_a_family_added_to_the_table_trains_end_to_end(monkeypatch, tmp_path, tiny_pixart, local_client, workspace,
                                                       settings):
    """A new row (here a twin of PixArt Sigma) is enough: nothing else lists the families."""
    pixart = FAMILIES["pixart_sigma"]
    twin = dataclasses.replace(pixart, name="pixart_twin", default_flavour="only", lora_types=("standard",),
                               flavours={"only": capabilities._pixart("only", "someone/pixart-twin")})
    monkeypatch.setitem(FAMILIES, "pixart_twin", twin)
    write_images(workspace / "datasets/twin", 2)
    (workspace / "config").mkdir(exist_ok=True)
    (workspace / "config/twin.json").write_text(
        '[{"id": "twin", "instance_data_dir": "datasets/twin", "resolution": 64, "resolution_type": "pixel", '
        '"crop": true}, {"id": "text", "dataset_type": "text_embeds", "default": true}]')
    fields = {"--model_family": "pixart_twin", "--pretrained_model_name_or_path": str(tiny_pixart),
              "--data_backend_config": "config/twin.json", "--max_train_steps": "2", "--num_train_epochs": "0",
              "--resolution": "64", "--resolution_type": "pixel", "--mixed_precision": "no",
              "--output_dir": str(tmp_path / "out"), "--checkpoint_step_interval": "0"}
    response = local_client.post("/api/training/validate", data=fields)
    assert response.status_code == 200, response.text
    assert response.json()["config"]["--model_flavour"] == "only"
    refused = local_client.post("/api/training/validate", data={**fields, "--lora_type": "lycoris"})
    assert refused.status_code == 422 and "lora_type standard" in refused.text  # its row, not PixArt's, decides

    spec = build_run_spec(settings, overrides=fields, job_id="twin")
    outcome, run = run_in_process(tmp_path, spec)
    assert outcome == "completed" and (run.output_dir / "pytorch_lora_weights.safetensors").is_file()


@pytest.mark.parametrize("family", list(FAMILIES))
def test_each_family_publishes_flavours_with_a_resolution(family):
    for flavour in FAMILIES[family].flavours.values():
        assert flavour.resolution >= 512 and flavour.max_tokens > 0
