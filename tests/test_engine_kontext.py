"""Flux Kontext on a tiny model, in-process: edit/reference pairs from the dataloader to the transformer, exactly as
FluxKontextPipeline feeds it, learning, exact resume, and a LyCORIS output that reproduces the trained edits."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch
from PIL import Image

from engine_helpers import make_spec, read_events, run_in_process, trainable, write_pairs
from tuneforge import runfolder
from tuneforge.options.registry import TrainingOptions

PROMPT = "make the picture brighter"
LOKR = {"algo": "lokr", "linear_dim": 4, "linear_alpha": 4, "factor": 4}


def kontext_spec(root, model, datasets, lycoris=LOKR, **options):
    return make_spec(root, model, datasets=datasets, lycoris=lycoris, model_family="flux", model_flavour="kontext",
                     **options)


def test_training_feeds_the_transformer_what_the_kontext_pipeline_does(tmp_path, tiny_kontext):
    from diffusers import FluxKontextPipeline

    from tuneforge.data.buckets import Plan
    from tuneforge.data.images import load_pixels
    from tuneforge.models.base import NoisyBatch, TrainBatch
    from tuneforge.models.flux import pack
    from tuneforge.models.flux_kontext import FluxKontextAdapter

    reference = tmp_path / "reference.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 96, 3), dtype=np.uint8)).save(reference)
    options = TrainingOptions(model_family="flux", model_flavour="kontext", tokenizer_max_length=32,
                              pretrained_model_name_or_path=str(tiny_kontext), flux_guidance_value=2.5)
    adapter = FluxKontextAdapter(options, torch.device("cpu"))
    transformer = adapter.load_transformer()
    seen: list[dict] = []
    transformer.register_forward_pre_hook(lambda module, args, kwargs: seen.append(kwargs), with_kwargs=True)
    latents = torch.randn(1, 16, 8, 8, generator=torch.Generator().manual_seed(0))  # a 64x64 edit of a 96x64 image
    pipeline = FluxKontextPipeline.from_pretrained(tiny_kontext, transformer=transformer)
    pipeline(image=Image.open(reference), prompt=PROMPT, height=64, width=64, max_area=64 * 64, _auto_resize=False,
             num_inference_steps=1, guidance_scale=2.5, max_sequence_length=32, latents=pack(latents),
             output_type="latent")
    inference = seen.pop()

    pixels = load_pixels(reference, Plan((96, 64), (0, 0, 96, 64)))[None]
    batch = TrainBatch(latents=latents, text=adapter.collate_text(adapter.encode_prompts([PROMPT])),
                       conditioning=[adapter.encode_references(pixels)])
    adapter.predict(transformer, NoisyBatch(latents, inference["timestep"], latents), batch)
    training = seen.pop()
    for key in ("hidden_states", "img_ids", "timestep", "guidance", "pooled_projections", "encoder_hidden_states",
                "txt_ids"):
        assert torch.equal(training[key], inference[key]), key
    assert training["hidden_states"].shape[1] == 4 * 4 + 4 * 6  # the target's tokens, then the reference's


def test_loss_falls_on_a_fixed_pair_and_resume_is_bit_exact(tmp_path, tiny_kontext):
    datasets = write_pairs(tmp_path / "data", 1)
    outcome, run = run_in_process(tmp_path / "fall", kontext_spec(tmp_path / "fall", tiny_kontext, datasets,
                                                                  max_train_steps=30, learning_rate=3e-2))
    assert outcome == "completed" and np.mean(run.losses[-5:]) < 0.85 * run.losses[0], run.losses

    datasets = write_pairs(tmp_path / "data3", 3, sets=2)  # two sets, one drawn per batch, and caption dropout
    settings = dict(max_train_steps=6, checkpoint_step_interval=3, gradient_accumulation_steps=2, seed=3,
                    learning_rate=1e-2, conditioning_multidataset_sampling="random", caption_dropout_probability=0.3)
    outcome, reference = run_in_process(tmp_path / "a", kontext_spec(tmp_path / "a", tiny_kontext, datasets,
                                                                     **settings))
    assert outcome == "completed"
    root = tmp_path / "b"
    spec = kontext_spec(root, tiny_kontext, datasets, **settings)

    def stop_at_first_checkpoint(event):
        if event.type == "training.checkpoint" and event.checkpoint.step == 3:
            runfolder.request(root / "run", "stop")

    assert run_in_process(root, spec, stop_at_first_checkpoint)[0] == "stopped"
    spec.config.resume_from_checkpoint = "latest"
    outcome, resumed = run_in_process(root, spec)
    assert outcome == "completed"
    expected, got = trainable(reference.output_dir / "checkpoint-6"), trainable(resumed.output_dir / "checkpoint-6")
    assert expected.keys() == got.keys() and all(torch.equal(expected[k], got[k]) for k in expected)


def test_the_lycoris_output_reproduces_the_trained_edit_on_a_fresh_pipeline(tmp_path, tiny_kontext):
    from diffusers import FluxKontextPipeline

    from tuneforge.models.lycoris import apply_lycoris_weights
    from tuneforge.trainer.validation import reference_image, sample

    datasets = write_pairs(tmp_path / "data", 3)
    spec = kontext_spec(tmp_path, tiny_kontext, datasets, max_train_steps=12, learning_rate=3e-2,
                        validation_prompt=PROMPT, validation_guidance=2.5, validation_seed=5,
                        validation_num_inference_steps=3, tokenizer_max_length=32, validation_step_interval=12)
    outcome, run = run_in_process(tmp_path, spec)
    assert outcome == "completed"
    trained = np.asarray(sample(run, (64, 64)), dtype=np.int16)
    [validation] = [e for e in read_events(tmp_path / "run") if e["type"] == "training.validation"]
    assert validation["data"]["reference"] == str(tmp_path / "data/reference/img000.png")  # the first pair's

    def generate(pipeline):
        pipeline.set_progress_bar_config(disable=True)
        picture = pipeline(image=reference_image(run, (64, 64)), prompt=PROMPT, height=64, width=64,
                           max_area=64 * 64, _auto_resize=False, num_inference_steps=3, guidance_scale=2.5,
                           max_sequence_length=32, generator=torch.Generator().manual_seed(5)).images[0]
        return np.asarray(picture, dtype=np.int16)

    fresh = FluxKontextPipeline.from_pretrained(tiny_kontext)
    base = generate(fresh)
    apply_lycoris_weights(fresh.transformer, run.output_dir)
    assert np.abs(generate(fresh) - trained).max() <= 1
    assert np.abs(base - trained).max() > 5


def _prepare(spec):
    from tuneforge.data import prepare
    from tuneforge.models import get_adapter

    adapter = get_adapter(spec.config, torch.device("cpu"))
    prepared = prepare.discover_all(spec.config, spec.datasets, spec.config.output_dir)
    prepare.cache_latents(prepared, adapter)
    prepare.finalize(prepared)
    return prepared


def test_reference_strict_crops_the_pair_alike_and_loose_gives_the_reference_its_own_bucket(tmp_path, tiny_kontext):
    from tuneforge.data.images import load_pixels

    datasets = write_pairs(tmp_path / "data", 2, sizes=((96, 64),))
    (tmp_path / "data/reference/img000.png").write_bytes((tmp_path / "data/edit/img000.png").read_bytes())
    datasets[0].update(crop_style="random", crop_aspect="square")  # a random 64x64 box out of a 96x64 image
    prepared = _prepare(kontext_spec(tmp_path, tiny_kontext, datasets))
    sample = next(s for s in prepared.all_samples() if s.path.name == "img000.png")
    [reference] = sample.references
    assert reference.plan == sample.plan and sample.plan.box[0] > 0
    assert torch.equal(load_pixels(sample.path, sample.plan), load_pixels(reference.path, reference.plan))

    datasets[1].update(conditioning_type="reference_loose", resolution=128, resolution_type="pixel")
    prepared = _prepare(kontext_spec(tmp_path / "loose", tiny_kontext, datasets))
    sample = prepared.all_samples()[0]
    assert sample.references[0].plan.bucket == (192, 128) and sample.plan.bucket == (64, 64)


@pytest.mark.parametrize("sampling", ["combined", "random"])
def test_several_conditioning_sets_are_combined_or_drawn_per_batch(sampling, tmp_path, tiny_kontext):
    from tuneforge.trainer.batches import load_batch, step_generator

    datasets = write_pairs(tmp_path / "data", 2, sizes=((64, 64),), sets=2)
    spec = kontext_spec(tmp_path, tiny_kontext, datasets, max_train_steps=4,
                        conditioning_multidataset_sampling=sampling)
    outcome, run = run_in_process(tmp_path, spec)
    assert outcome == "completed"
    samples = run.prepared.all_samples()
    counts = {len(load_batch(run, samples[:1], step_generator(1, step, 0, 0, "caption")).conditioning)
              for step in range(8)}
    assert counts == ({2} if sampling == "combined" else {1})
    if sampling == "random":  # each set is drawn, and the same step draws the same one again
        chosen = [load_batch(run, samples[:1], step_generator(1, step, 0, 0, "caption")).conditioning[0]
                  for step in range(8)]
        assert len({tuple(c.flatten()[:4].tolist()) for c in chosen}) == 2
        again = load_batch(run, samples[:1], step_generator(1, 0, 0, 0, "caption")).conditioning[0]
        assert torch.equal(again, chosen[0])


def test_reference_latents_are_cached_reused_and_encoded_again_when_changed(tmp_path, tiny_kontext):
    datasets = write_pairs(tmp_path / "data", 3)
    spec = kontext_spec(tmp_path, tiny_kontext, datasets)
    assert _prepare(spec).encoded_latents == 6  # three edits, three references
    assert _prepare(spec).encoded_latents == 0
    Image.new("RGB", (64, 64), (250, 0, 0)).save(tmp_path / "data/reference/img000.png")
    assert _prepare(spec).encoded_latents == 1


def test_an_edit_without_its_reference_is_skipped_and_reported(tmp_path, tiny_kontext):
    datasets = write_pairs(tmp_path / "data", 3)
    (tmp_path / "data/reference/img001.png").unlink()
    outcome, run = run_in_process(tmp_path, kontext_spec(tmp_path, tiny_kontext, datasets, max_train_steps=2))
    assert outcome == "completed"
    assert sorted(s.path.name for s in run.prepared.all_samples()) == ["img000.png", "img002.png"]
    warnings = [e["message"] for e in read_events(tmp_path / "run") if e["severity"] == "warning"]
    assert any("img001.png" in w and "no reference of the same name in 'reference'" in w for w in warnings)


def test_the_shipped_kontext_example_s_lycoris_settings_train(tmp_path, tiny_kontext):
    import json
    from importlib.resources import files

    from tuneforge.options.lycoris import parse_lycoris

    shipped = json.loads(files("tuneforge").joinpath("examples/flux-kontext-lycoris/lycoris_config.json").read_text())
    config, problems = parse_lycoris(shipped)
    assert not problems
    datasets = write_pairs(tmp_path / "data", 2)
    outcome, run = run_in_process(tmp_path, kontext_spec(tmp_path, tiny_kontext, datasets,
                                                         lycoris=config.model_dump(exclude_none=True),
                                                         max_train_steps=1))
    assert outcome == "completed"
    wrapped = list(run.unwrapped().lycoris_network.named_children())
    assert any("single_transformer_blocks" in name for name, _ in wrapped)


def test_batches_of_pairs_and_an_explicit_validation_reference(tmp_path, tiny_kontext):
    datasets = write_pairs(tmp_path / "data", 4, sizes=((64, 64), (96, 64)))
    Image.new("RGB", (80, 40), (0, 90, 200)).save(tmp_path / "mine.png")
    spec = kontext_spec(tmp_path, tiny_kontext, datasets, max_train_steps=2, train_batch_size=2,
                        validation_prompt=PROMPT, validation_step_interval=2, validation_num_inference_steps=2,
                        validation_reference_image=str(tmp_path / "mine.png"))
    outcome, run = run_in_process(tmp_path, spec)
    assert outcome == "completed"
    [validation] = [e for e in read_events(tmp_path / "run") if e["type"] == "training.validation"]
    assert validation["data"]["reference"] == str(tmp_path / "mine.png")
    from tuneforge.trainer.validation import reference_image

    assert reference_image(run, (64, 48)).size == (64, 48)  # covered and centre-cropped, never stretched


def test_dora_keeps_its_weight_decomposition_over_a_bf16_base(tmp_path, tiny_kontext):
    datasets = write_pairs(tmp_path / "data", 2)
    spec = kontext_spec(tmp_path, tiny_kontext, datasets, {"algo": "lora", "linear_dim": 4, "dora_wd": True},
                        max_train_steps=1, base_model_precision="bf16", mixed_precision="bf16")
    outcome, run = run_in_process(tmp_path, spec)
    assert outcome == "completed"
    modules = list(run.unwrapped().lycoris_network.loras)
    assert modules and not any(m.bypass_mode for m in modules) and all(m.wd for m in modules)


def test_a_reference_set_with_two_images_under_one_name_skips_that_pair(tmp_path, tiny_kontext):
    datasets = write_pairs(tmp_path / "data", 3)
    Image.new("RGB", (64, 64)).save(tmp_path / "data/reference/img000.jpg")
    outcome, run = run_in_process(tmp_path, kontext_spec(tmp_path, tiny_kontext, datasets, max_train_steps=1))
    assert outcome == "completed"
    assert sorted(s.path.name for s in run.prepared.all_samples()) == ["img001.png", "img002.png"]
