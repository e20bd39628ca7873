"""End to end for Flux: the tutorial's environment flow (a LyCORIS LoRA on an int8 base) and its fast path (a
schnell full fine-tune), driven over HTTP against the real server process and the real trainer process."""

from __future__ import annotations

import json

import pytest

from e2e_support import as_multipart, kill_trainers, prepare_workspace, run_fields, start, wait_final
from serverproc import start_server


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    workspace = tmp_path_factory.mktemp("e2e-flux") / "workspace"
    prepare_workspace(workspace)
    process = start_server(workspace)  # before an admin exists loopback callers act as admin, as in the tutorial
    try:
        yield process
    finally:
        process.stop()
        kill_trainers(workspace)


def test_fast_path_trains_a_schnell_full_fine_tune(server, tiny_flux_schnell):
    """First in the module: the fast path runs without an active environment (one would be merged in)."""
    from diffusers import FluxPipeline

    output = server.workspace / "output/schnell-full"
    fields = run_fields(tiny_flux_schnell, output, model_family="flux", model_flavour="schnell", model_type="full",
                        learning_rate=0.0001, max_train_steps=3, validation_step_interval=3)
    with server.client() as http:
        assert http.post("/api/training/validate", files=as_multipart(fields)).status_code == 200
        job = wait_final(http, start(http, fields))
        assert job["status"] == "completed", job
    pipeline = FluxPipeline.from_pretrained(output / "pipeline")
    assert pipeline.transformer.config.guidance_embeds is False


def test_environment_flow_trains_a_lycoris_lora_on_an_int8_base(server, tiny_flux):
    workspace = server.workspace
    with server.client() as http:
        created = http.post("/api/configs/environments", json={
            "name": "flux-api-demo", "model_family": "flux", "model_flavour": "dev", "model_type": "lora",
            "lora_type": "lycoris", "description": "Flux LyCORIS via API"})
        assert created.status_code == 201, created.text
        lycoris = workspace / "config/flux-api-demo/lycoris_config.json"
        assert json.loads(lycoris.read_text())["algo"] == "lokr"  # the starter file the tutorial relies on
        lycoris.write_text(json.dumps({"algo": "lokr", "multiplier": 1.0, "linear_dim": 4, "linear_alpha": 4,
                                       "factor": 4}))
        (workspace / "config/flux-api-demo/multidatabackend.json").write_text(
            (workspace / "config/multidatabackend-once.json").read_text())
        config = http.get("/api/configs/flux-api-demo").json()["config"] | {
            "--pretrained_model_name_or_path": str(tiny_flux), "--output_dir": str(workspace / "output/flux-lycoris"),
            "--train_batch_size": 1, "--gradient_accumulation_steps": 2, "--learning_rate": 0.001,
            "--optimizer": "optimi-lion", "--lr_scheduler": "cosine", "--lr_warmup_steps": 2, "--max_train_steps": 6,
            "--num_train_epochs": 0, "--validation_prompt": "a photo of a cat", "--validation_step_interval": 6,
            "--validation_resolution": "64x64", "--validation_num_inference_steps": 2, "--seed": 777,
            "--resume_from_checkpoint": "latest", "--base_model_precision": "int8-quanto",
            "--dataloader_prefetch": True, "--report_to": "none", "--lora_dropout": 0.05, "--clip_skip": 2,
            "--resolution": 64, "--resolution_type": "pixel", "--mixed_precision": "no",
            "--checkpoint_step_interval": 3, "--data_backend_config": "flux-api-demo/multidatabackend.json"}
        saved = http.put("/api/configs/flux-api-demo", json={"name": "flux-api-demo", "config": config})
        assert saved.status_code == 200, saved.text
        assert http.post("/api/configs/flux-api-demo/activate").status_code == 200
        valid = http.post("/api/training/validate", files=as_multipart({"__active_tab__": "model",
                                                                        "--num_train_epochs": "0"}))
        assert valid.status_code == 200 and valid.json()["message"] == "Configuration Valid", valid.text
        started = http.post("/api/training/start", files=as_multipart({"__active_tab__": "model",
                                                                       "--num_train_epochs": "0"}))
        assert started.status_code == 202, started.text
        job = wait_final(http, started.json()["job_id"])
        assert job["status"] == "completed", job
        output = workspace / "output/flux-lycoris"
        assert (output / "lycoris_weights.safetensors").is_file()
        assert (output / "validation/step-6/0-64x64.png").is_file()
        listed = http.get("/api/training/checkpoints", params={"job_id": job["job_id"]}).json()
        assert [c["step"] for c in listed["checkpoints"]] == [3, 6]
