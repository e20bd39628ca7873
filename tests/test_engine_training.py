"""The training engine on a tiny PixArt Sigma model, in-process: learning, exact resume, outputs diffusers loads."""

from __future__ import annotations

import os
import shutil

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch
from PIL import Image

from engine_helpers import make_spec, read_events, run_in_process, trainable, write_images
from tuneforge import runfolder


def test_loss_falls_on_a_fixed_batch(tmp_path, tiny_pixart):
    data = write_images(tmp_path / "data", 1)
    spec = make_spec(tmp_path, tiny_pixart, data, model_type="full", max_train_steps=30)
    outcome, run = run_in_process(tmp_path, spec)
    assert outcome == "completed"
    assert np.mean(run.losses[-5:]) < 0.85 * run.losses[0], run.losses
    assert (run.output_dir / "pipeline" / "model_index.json").is_file()
    from diffusers import PixArtSigmaPipeline

    pipeline = PixArtSigmaPipeline.from_pretrained(run.output_dir / "pipeline")
    saved = pipeline.transformer.state_dict()
    for name, param in run.unwrapped().state_dict().items():
        assert torch.equal(saved[name], param), name


def _resume_spec(root, model, data, **extra):
    # dropout and accumulation make the RNG and data position matter; 3 images with batch 1 span epochs.
    options = dict(max_train_steps=8, checkpoint_step_interval=4, lora_dropout=0.1, gradient_accumulation_steps=2,
                   optimizer="adamw_bf16", lr_scheduler="cosine", lr_warmup_steps=2, seed=11)
    options.update(extra)
    return make_spec(root, model, data, **options)


@pytest.fixture
def uninterrupted(tmp_path, tiny_pixart):
    data = write_images(tmp_path / "data", 3)
    outcome, run = run_in_process(tmp_path / "a", _resume_spec(tmp_path / "a", tiny_pixart, data))
    assert outcome == "completed"
    return data, run


def test_resume_after_stop_is_bit_exact(tmp_path, tiny_pixart, uninterrupted):
    data, reference = uninterrupted
    root = tmp_path / "b"
    spec = _resume_spec(root, tiny_pixart, data)

    def stop_after_first_checkpoint(event):
        if event.type == "training.checkpoint" and event.checkpoint.step == 4:
            (root / "run" / "control").mkdir(exist_ok=True)
            (root / "run" / "control" / "stop").touch()

    outcome, run = run_in_process(root, spec, stop_after_first_checkpoint)
    assert outcome == "stopped" and run.global_step == 5
    assert not (root / "run" / "control" / "stop").exists()  # handled requests are deleted
    assert [p.name for _, p in runfolder.checkpoints(run.output_dir)] == ["checkpoint-4", "checkpoint-5"]
    assert runfolder.checkpoint_state(run.output_dir / "checkpoint-5")["reason"] == "stop"

    spec.config.resume_from_checkpoint = "latest"
    outcome, resumed = run_in_process(root, spec)
    assert outcome == "completed" and resumed.resumed_from.name == "checkpoint-5"
    expected, got = trainable(reference.output_dir / "checkpoint-8"), trainable(resumed.output_dir / "checkpoint-8")
    assert expected.keys() == got.keys()
    for name in expected:
        assert torch.equal(expected[name], got[name]), name
    assert resumed.losses == reference.losses[5:]


def test_resume_from_named_checkpoint_is_bit_exact(tmp_path, tiny_pixart, uninterrupted):
    data, reference = uninterrupted
    root = tmp_path / "c"
    (root / "out").mkdir(parents=True)
    shutil.copytree(reference.output_dir / "checkpoint-4", root / "out" / "checkpoint-4")
    outcome, resumed = run_in_process(root, _resume_spec(root, tiny_pixart, data,
                                                         resume_from_checkpoint="checkpoint-4"))
    assert outcome == "completed"
    expected, got = trainable(reference.output_dir / "checkpoint-8"), trainable(resumed.output_dir / "checkpoint-8")
    assert all(torch.equal(expected[k], got[k]) for k in expected)


def test_resume_is_bit_exact_when_epochs_differ_in_length(tmp_path, tiny_pixart):
    from tuneforge.data.plan import epoch_steps

    data = write_images(tmp_path / "data", 4)

    def spec(root, **extra):
        return make_spec(root, tiny_pixart, datasets=[
            {"id": "images", "instance_data_dir": str(data), "resolution": 64, "resolution_type": "pixel",
             "crop": True, "crop_aspect": "square", "repeats": 1, "probability": 0.7},
            {"id": "text", "dataset_type": "text_embeds", "default": True, "cache_dir": str(tmp_path / "text")}],
            seed=1, max_train_steps=14, checkpoint_step_interval=4, **extra)

    outcome, reference = run_in_process(tmp_path / "a", spec(tmp_path / "a"))
    assert outcome == "completed"
    # probability < 1 keeps a random share of each epoch's batches: here epochs of 4, 6 and 6 steps, so step 8
    # is step 4 of epoch 1 (not the start of epoch 2, as 8 / len(epoch 0) would say).
    assert [epoch_steps(reference.prepared, 1, 1, 1, 1, epoch) for epoch in range(3)] == [4, 6, 6]
    root = tmp_path / "b"
    shutil.copytree(reference.output_dir / "checkpoint-8", root / "out" / "checkpoint-8")
    outcome, resumed = run_in_process(root, spec(root, resume_from_checkpoint="latest"))
    assert outcome == "completed" and resumed.resumed_from.name == "checkpoint-8"
    assert resumed.losses == reference.losses[8:]
    expected, got = trainable(reference.output_dir / "checkpoint-14"), trainable(resumed.output_dir / "checkpoint-14")
    assert all(torch.equal(expected[k], got[k]) for k in expected)
    last = [e["progress"] for e in read_events(root / "run") if e["type"] == "training.progress"][-1]
    assert last["epoch"] == last["total_epochs"] == 3  # 4 + 6 steps, then 4 of the third epoch


def test_lora_file_loads_into_a_fresh_pipeline_and_reproduces_the_output(tmp_path, tiny_pixart):
    from diffusers import PixArtSigmaPipeline

    from tuneforge.models.lora import load_lora_into_pipeline
    from tuneforge.trainer.validation import sample

    data = write_images(tmp_path / "data", 4)
    spec = make_spec(tmp_path, tiny_pixart, data, max_train_steps=12, learning_rate=5e-3, lora_rank=4,
                     validation_prompt="a photo of a cat", validation_guidance=3.0, validation_seed=5)
    outcome, run = run_in_process(tmp_path, spec)
    assert outcome == "completed"
    trained = np.asarray(sample(run, (64, 64)), dtype=np.int16)

    def generate(pipeline):
        pipeline.set_progress_bar_config(disable=True)
        image = pipeline("a photo of a cat", generator=torch.Generator().manual_seed(5), guidance_scale=3.0,
                         num_inference_steps=3, **run.adapter.pipeline_call_kwargs(64, 64)).images[0]
        return np.asarray(image, dtype=np.int16)

    base = generate(PixArtSigmaPipeline.from_pretrained(tiny_pixart))
    fresh = PixArtSigmaPipeline.from_pretrained(tiny_pixart)
    load_lora_into_pipeline(fresh, run.output_dir / "pytorch_lora_weights.safetensors")
    loaded = generate(fresh)
    assert np.abs(loaded - trained).max() <= 1  # PNG rounding only
    assert np.abs(base - trained).max() > 5  # the LoRA really changes the output

    from peft import PeftModel  # the same folder is also a plain peft adapter

    peft_model = PeftModel.from_pretrained(PixArtSigmaPipeline.from_pretrained(tiny_pixart).transformer,
                                           str(run.output_dir))
    assert sum("lora_A" in n for n, _ in peft_model.named_parameters()) > 0


def test_checkpoints_rotate_and_events_report_progress(tmp_path, tiny_pixart):
    data = write_images(tmp_path / "data", 2)
    spec = make_spec(tmp_path, tiny_pixart, data, max_train_steps=6, checkpoint_step_interval=2,
                     checkpoints_total_limit=2, validation_prompt="a photo of a cat", validation_step_interval=3,
                     validation_preview=True, validation_preview_steps=2)
    outcome, run = run_in_process(tmp_path, spec)
    assert outcome == "completed"
    assert [p.name for _, p in runfolder.checkpoints(run.output_dir)] == ["checkpoint-4", "checkpoint-6"]
    events = read_events(tmp_path / "run")
    types = [e["type"] for e in events]
    assert types[0] == "training.status" and events[-1]["data"]["status"] == "completed"
    stages = {e["stage"]["key"] for e in events if e["type"] == "lifecycle.stage"}
    assert {"discovering_data", "caching_latents", "caching_text_embeds", "loading_model"} <= stages
    progress = [e["progress"] for e in events if e["type"] == "training.progress"]
    assert progress[-1]["step"] == 6 and progress[-1]["percent"] == 100.0
    assert [e["checkpoint"]["step"] for e in events if e["type"] == "training.checkpoint"] == [2, 4, 6]
    previews = [e for e in events if e["type"] == "validation.image"]
    assert [p["data"]["step_label"] for p in previews[:2]] == ["1/3", "3/3"]
    assert previews[0]["data"]["validation_type"] == "intermediary"
    assert previews[0]["images"][0]["src"].startswith("data:image/png;base64,")
    validations = [e for e in events if e["type"] == "training.validation"]
    assert [v["data"]["step"] for v in validations] == [3, 6]
    assert all(os.path.isfile(p) for v in validations for p in v["data"]["paths"])
    assert all("index" not in e and "job_id" not in e for e in events)


def test_previews_are_small_and_validation_images_keep_their_size(tmp_path, tiny_pixart):
    import base64
    import io

    data = write_images(tmp_path / "data", 1)
    spec = make_spec(tmp_path, tiny_pixart, data, max_train_steps=1, validation_prompt="a photo of a cat",
                     validation_resolution="576x576", validation_num_inference_steps=2, validation_preview=True,
                     validation_preview_steps=1)
    outcome, _ = run_in_process(tmp_path, spec)
    assert outcome == "completed"
    events = read_events(tmp_path / "run")
    previews = [e["images"][0]["src"] for e in events if e["type"] == "validation.image"]
    assert len(previews) == 2  # one per sampling step
    for src in previews:
        preview = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
        assert max(preview.size) <= 256
    [validation] = [e for e in events if e["type"] == "training.validation"]
    assert Image.open(validation["data"]["paths"][0]).size == (576, 576)


def test_lycoris_on_pixart_trains_and_reapplies(tmp_path, tiny_pixart):
    from diffusers import PixArtSigmaPipeline

    from tuneforge.models.lycoris import apply_lycoris_weights
    from tuneforge.trainer.validation import sample

    data = write_images(tmp_path / "data", 4)
    spec = make_spec(tmp_path, tiny_pixart, data, lycoris={"algo": "loha", "linear_dim": 4, "linear_alpha": 2},
                     max_train_steps=12, learning_rate=1e-2, validation_prompt="a photo of a cat",
                     validation_guidance=3.0, validation_seed=5)
    outcome, run = run_in_process(tmp_path, spec)
    assert outcome == "completed"
    trained = np.asarray(sample(run, (64, 64)), dtype=np.int16)
    fresh = PixArtSigmaPipeline.from_pretrained(tiny_pixart)
    fresh.set_progress_bar_config(disable=True)

    def generate(pipeline):
        image = pipeline("a photo of a cat", generator=torch.Generator().manual_seed(5), guidance_scale=3.0,
                         num_inference_steps=3, **run.adapter.pipeline_call_kwargs(64, 64)).images[0]
        return np.asarray(image, dtype=np.int16)

    base = generate(fresh)
    apply_lycoris_weights(fresh.transformer, run.output_dir)
    assert np.abs(generate(fresh) - trained).max() <= 1
    assert np.abs(base - trained).max() > 5
