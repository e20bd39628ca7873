"""The training engine on tiny Flux.1 models, in-process: what the transformer sees, learning for every kind of
trainable, exact resume, and outputs that diffusers (LoRA) and LyCORIS (its own format) load at full strength."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from engine_helpers import make_spec, run_in_process, trainable, write_images
from tuneforge import runfolder
from tuneforge.options.registry import TrainingOptions

PROMPT = "a photo of a cat"
LOKR = {"algo": "lokr", "linear_dim": 4, "linear_alpha": 4, "factor": 4}
KINDS = {  # what is trained → (options, lycoris settings)
    "lora": ({"learning_rate": 1e-2, "lora_rank": 8}, None),
    "lycoris-lokr": ({"learning_rate": 3e-2}, LOKR),
    "lycoris-lora": ({"learning_rate": 1e-2}, {"algo": "lora", "linear_dim": 8, "linear_alpha": 8}),
    "full": ({"model_type": "full", "learning_rate": 1e-3}, None),
}


def flux_spec(root, model, data, lycoris=None, **options):
    return make_spec(root, model, data, lycoris=lycoris, model_family="flux", **options)


def generate(pipeline, guidance: float | None = 3.0) -> np.ndarray:
    pipeline.set_progress_bar_config(disable=True)
    extra = {"guidance_scale": guidance} if guidance is not None else {}
    image = pipeline(PROMPT, height=64, width=64, num_inference_steps=3, max_sequence_length=32,
                     generator=torch.Generator().manual_seed(5), **extra).images[0]
    return np.asarray(image, dtype=np.int16)


@pytest.mark.parametrize("flavour", ["dev", "schnell"])
def test_training_feeds_the_transformer_exactly_what_the_pipeline_does(flavour, tiny_flux, tiny_flux_schnell):
    from diffusers import FluxPipeline

    from tuneforge.models.base import NoisyBatch, TrainBatch
    from tuneforge.models.flux import FluxAdapter, pack

    model = tiny_flux if flavour == "dev" else tiny_flux_schnell
    options = TrainingOptions(model_family="flux", model_flavour=flavour, pretrained_model_name_or_path=str(model),
                              tokenizer_max_length=32, **({"flux_guidance_value": 3.5} if flavour == "dev" else {}))
    adapter = FluxAdapter(options, torch.device("cpu"))
    transformer = adapter.load_transformer()
    seen: list[dict] = []
    transformer.register_forward_pre_hook(lambda module, args, kwargs: seen.append(kwargs), with_kwargs=True)
    latents = torch.randn(1, 16, 8, 8, generator=torch.Generator().manual_seed(0))
    pipeline = FluxPipeline.from_pretrained(model, transformer=transformer)
    pipeline(PROMPT, height=64, width=64, num_inference_steps=1, guidance_scale=3.5, max_sequence_length=32,
             latents=pack(latents), output_type="latent")
    inference = seen.pop()

    batch = TrainBatch(latents=latents, text=adapter.collate_text(adapter.encode_prompts([PROMPT])))
    adapter.predict(transformer, NoisyBatch(latents, inference["timestep"], latents), batch)
    training = seen.pop()
    for key in ("hidden_states", "timestep", "pooled_projections", "encoder_hidden_states", "txt_ids", "img_ids"):
        assert torch.equal(training[key], inference[key]), key
    if flavour == "dev":
        assert torch.equal(training["guidance"], inference["guidance"])
    else:
        assert training["guidance"] is None and inference["guidance"] is None


@pytest.mark.parametrize("kind", list(KINDS))
def test_loss_falls_on_a_fixed_batch(kind, tmp_path, tiny_flux):
    options, lycoris = KINDS[kind]
    data = write_images(tmp_path / "data", 1)
    outcome, run = run_in_process(tmp_path, flux_spec(tmp_path, tiny_flux, data, lycoris, max_train_steps=30,
                                                      **options))
    assert outcome == "completed"
    assert np.mean(run.losses[-5:]) < 0.85 * run.losses[0], run.losses


def _resume_spec(root, model, data, kind, **extra):
    options, lycoris = KINDS[kind]
    settings = dict(max_train_steps=8, checkpoint_step_interval=4, gradient_accumulation_steps=2, lr_scheduler="cosine",
                    lr_warmup_steps=2, seed=11, optimizer="adamw_bf16", **options)
    if kind == "lora":
        settings["lora_dropout"] = 0.1  # the dropout masks depend on the RNG state too
    return flux_spec(root, model, data, lycoris, **settings, **extra)


@pytest.mark.parametrize("kind", ["lora", "lycoris-lokr", "full"])
def test_resume_after_stop_is_bit_exact(kind, tmp_path, tiny_flux):
    data = write_images(tmp_path / "data", 3)
    outcome, reference = run_in_process(tmp_path / "a", _resume_spec(tmp_path / "a", tiny_flux, data, kind))
    assert outcome == "completed"
    root = tmp_path / "b"
    spec = _resume_spec(root, tiny_flux, data, kind)

    def stop_after_first_checkpoint(event):
        if event.type == "training.checkpoint" and event.checkpoint.step == 4:
            runfolder.request(root / "run", "stop")

    outcome, stopped = run_in_process(root, spec, stop_after_first_checkpoint)
    assert outcome == "stopped" and stopped.global_step == 5
    spec.config.resume_from_checkpoint = "latest"
    outcome, resumed = run_in_process(root, spec)
    assert outcome == "completed" and resumed.resumed_from.name == "checkpoint-5"
    expected, got = trainable(reference.output_dir / "checkpoint-8"), trainable(resumed.output_dir / "checkpoint-8")
    assert expected.keys() == got.keys() and len(expected) > 0
    assert all(torch.equal(expected[name], got[name]) for name in expected)
    assert resumed.losses == reference.losses[5:]


def test_resume_onto_another_lycoris_setup_says_what_differs(tmp_path, tiny_flux):
    from tuneforge.trainer.checkpoints import ResumeError

    data = write_images(tmp_path / "data", 2)
    outcome, _ = run_in_process(tmp_path, flux_spec(tmp_path, tiny_flux, data, LOKR, max_train_steps=2,
                                                    checkpoint_step_interval=2))
    assert outcome == "completed"
    other = flux_spec(tmp_path, tiny_flux, data, {**LOKR, "algo": "loha"}, max_train_steps=4,
                      resume_from_checkpoint="latest")
    with pytest.raises(ResumeError, match="lycoris_config.*algo: lokr"):
        run_in_process(tmp_path, other)


@pytest.mark.parametrize("alpha", [4.0, 2.0])
def test_lora_loads_into_a_fresh_flux_pipeline_at_its_trained_strength(alpha, tmp_path, tiny_flux):
    from diffusers import FluxPipeline

    from tuneforge.trainer.validation import sample

    data = write_images(tmp_path / "data", 4)
    spec = flux_spec(tmp_path, tiny_flux, data, max_train_steps=12, learning_rate=2e-2, lora_rank=4, lora_alpha=alpha,
                     validation_prompt=PROMPT, validation_guidance=3.0, validation_seed=5,
                     validation_num_inference_steps=3, tokenizer_max_length=32)
    outcome, run = run_in_process(tmp_path, spec)
    assert outcome == "completed"
    trained = np.asarray(sample(run, (64, 64)), dtype=np.int16)

    base = generate(FluxPipeline.from_pretrained(tiny_flux))
    fresh = FluxPipeline.from_pretrained(tiny_flux)
    fresh.load_lora_weights(str(run.output_dir))
    config = fresh.transformer.peft_config["default_0"]
    assert config.r == 4
    assert np.abs(generate(fresh) - trained).max() <= 1  # PNG rounding only
    assert np.abs(base - trained).max() > 5  # the LoRA really changes the output

    path = run.output_dir / "pytorch_lora_weights.safetensors"
    tensors = load_file(str(path))
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata()
    alphas = {key: value for key, value in tensors.items() if key.endswith(".alpha")}
    if alpha == 4.0:  # alpha = rank: diffusers' metadata, prefixed by the component; every loader's scale is 1
        assert not alphas and '"transformer.r": 4' in metadata["lora_adapter_metadata"]
    else:  # ComfyUI and kohya read `<module>.alpha` and scale by alpha / rank, as training did
        downs = [key for key in tensors if key.endswith(".lora_A.weight")]
        assert len(alphas) == len(downs) > 0 and "lora_adapter_metadata" not in metadata
        for key in downs:
            rank = tensors[key].shape[0]
            assert alphas[key.removesuffix(".lora_A.weight") + ".alpha"].item() / rank == alpha / 4
    assert oct(path.stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def test_lycoris_output_reapplies_and_reproduces_the_trained_model(tmp_path, tiny_flux):
    from diffusers import FluxPipeline

    from tuneforge.models.lycoris import apply_lycoris_weights
    from tuneforge.trainer.validation import sample

    data = write_images(tmp_path / "data", 4)
    spec = flux_spec(tmp_path, tiny_flux, data, LOKR, max_train_steps=12, learning_rate=3e-2,
                     validation_prompt=PROMPT, validation_guidance=3.0, validation_seed=5,
                     validation_num_inference_steps=3, tokenizer_max_length=32)
    outcome, run = run_in_process(tmp_path, spec)
    assert outcome == "completed"
    trained = np.asarray(sample(run, (64, 64)), dtype=np.int16)
    keys = load_file(str(run.output_dir / "lycoris_weights.safetensors"))
    assert keys and all(key.startswith("lycoris_") for key in keys)  # LyCORIS' (and ComfyUI's) naming
    assert any(key.endswith(".alpha") for key in keys)

    fresh = FluxPipeline.from_pretrained(tiny_flux)
    base = generate(fresh)
    apply_lycoris_weights(fresh.transformer, run.output_dir)
    assert np.abs(generate(fresh) - trained).max() <= 1
    assert np.abs(base - trained).max() > 5


def test_int8_quanto_lora_trains_and_loads_on_the_unquantised_pipeline(tmp_path, tiny_flux):
    from diffusers import FluxPipeline

    data = write_images(tmp_path / "data", 2)
    spec = flux_spec(tmp_path, tiny_flux, data, max_train_steps=6, learning_rate=2e-2, lora_rank=4,
                     base_model_precision="int8-quanto", text_encoder_precision="int8-quanto")
    outcome, run = run_in_process(tmp_path, spec)
    assert outcome == "completed" and all(np.isfinite(run.losses))
    from optimum.quanto import QLinear

    assert any(isinstance(module, QLinear) for module in run.unwrapped().modules())
    fresh = FluxPipeline.from_pretrained(tiny_flux)
    base = generate(fresh)
    fresh.load_lora_weights(str(run.output_dir))
    assert np.abs(generate(fresh) - base).max() > 5


def test_schnell_trains_without_guidance_and_validates(tmp_path, tiny_flux_schnell):
    data = write_images(tmp_path / "data", 2)
    spec = flux_spec(tmp_path, tiny_flux_schnell, data, model_flavour="schnell", max_train_steps=3,
                     validation_prompt=PROMPT, validation_step_interval=3, validation_preview=True)
    outcome, run = run_in_process(tmp_path, spec)
    assert outcome == "completed"
    assert (run.output_dir / "validation" / "step-3" / "0-64x64.png").is_file()


def test_bf16_gradient_checkpointing_and_accumulation(tmp_path, tiny_flux):
    data = write_images(tmp_path / "data", 2)
    spec = flux_spec(tmp_path, tiny_flux, data, max_train_steps=2, base_model_precision="bf16", mixed_precision="bf16",
                     gradient_checkpointing=True, gradient_accumulation_steps=2, optimizer="adamw_bf16")
    outcome, run = run_in_process(tmp_path, spec)
    assert outcome == "completed" and all(np.isfinite(run.losses))


OPTIMIZERS = ["adamw_bf16", "adamw", "optimi-adamw", "optimi-lion", "prodigy"]


def test_the_registry_lists_exactly_the_optimizers_tested_here():
    from tuneforge.options.rules import literal_choices

    assert literal_choices(TrainingOptions.model_fields["optimizer"].annotation) == OPTIMIZERS


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("kind", ["lora", "lycoris-lokr", "full"])
def test_every_optimizer_steps_every_kind(optimizer, kind, tiny_flux):
    from tuneforge.models.base import TrainBatch
    from tuneforge.models.flux import FluxAdapter
    from tuneforge.models.trainable import make_trainable
    from tuneforge.options.lycoris import LycorisConfig
    from tuneforge.trainer.optim import build_optimizer

    options, lycoris = KINDS[kind]
    config = TrainingOptions(model_family="flux", pretrained_model_name_or_path=str(tiny_flux), optimizer=optimizer,
                             lora_type="lycoris" if lycoris else "standard", **options)
    adapter = FluxAdapter(config, torch.device("cpu"))
    transformer = adapter.load_transformer()
    params = make_trainable(config, LycorisConfig(**lycoris) if lycoris else None, adapter).attach(transformer)
    optim = build_optimizer(optimizer, params, 1e-2)
    before = [p.detach().clone() for p in params]
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(1, 16, 8, 8, generator=generator)
    text = {"prompt_embeds": torch.randn(1, 8, 32, generator=generator),
            "pooled_prompt_embeds": torch.randn(1, 32, generator=generator)}
    for _ in range(2):  # LoRA B and LoKr w2 start at zero: the second step moves every factor
        noisy = adapter.objective.noisy(latents, torch.randn(latents.shape, generator=generator), generator)
        loss = torch.nn.functional.mse_loss(adapter.predict(transformer, noisy, TrainBatch(latents, text)),
                                            noisy.target)
        loss.backward()
        optim.step()
        optim.zero_grad()
    assert any(not torch.equal(a, b) for a, b in zip(before, params, strict=True))


def test_a_checkpoint_is_also_a_usable_adapter_and_records_its_layout(tmp_path, tiny_flux):
    data = write_images(tmp_path / "data", 2)
    outcome, run = run_in_process(tmp_path, flux_spec(tmp_path, tiny_flux, data, LOKR, max_train_steps=2,
                                                      checkpoint_step_interval=1, checkpoints_total_limit=1))
    assert outcome == "completed"
    [(step, checkpoint)] = runfolder.checkpoints(run.output_dir)
    assert step == 2 and (checkpoint / "lycoris_weights.safetensors").is_file()
    layout = runfolder.checkpoint_state(checkpoint)["trained"]
    assert layout["lycoris"]["algo"] == "lokr" and layout["lora_type"] == "lycoris"


def test_clip_skip_pools_the_layer_before_the_last(tiny_flux):
    """clip_skip=2 (the penultimate layer, as kohya counts) gives what a CLIP without its last layer would pool:
    checked against such a model."""
    from transformers import CLIPTextModel

    from tuneforge.models.flux import FluxAdapter

    options = TrainingOptions(model_family="flux", pretrained_model_name_or_path=str(tiny_flux), clip_skip=2)
    adapter = FluxAdapter(options, torch.device("cpu"))
    [skipped] = adapter.encode_prompts([PROMPT])
    full = CLIPTextModel.from_pretrained(tiny_flux, subfolder="text_encoder")
    shorter = CLIPTextModel.from_pretrained(tiny_flux, subfolder="text_encoder", num_hidden_layers=1)
    ids = adapter.clip_tokenizer([PROMPT], padding="max_length", max_length=77, return_tensors="pt").input_ids
    with torch.no_grad():
        assert torch.allclose(skipped["pooled_prompt_embeds"], shorter(ids).pooler_output[0], atol=1e-6)
        assert not torch.allclose(skipped["pooled_prompt_embeds"], full(ids).pooler_output[0], atol=1e-3)


@pytest.mark.parametrize("precision", ["fp8-quanto", "int4-quanto"])
def test_the_other_quanto_precisions_train_a_lycoris(precision, tmp_path, tiny_flux):
    data = write_images(tmp_path / "data", 2)
    spec = flux_spec(tmp_path, tiny_flux, data, LOKR, max_train_steps=3, base_model_precision=precision)
    outcome, run = run_in_process(tmp_path, spec)
    assert outcome == "completed" and all(np.isfinite(run.losses))


def test_apply_preset_decides_what_lycoris_wraps_and_nothing_matched_is_refused_early(tmp_path, tiny_flux):
    data = write_images(tmp_path / "data", 2)
    feed_forward = {**LOKR, "apply_preset": {"target_module": ["FeedForward"]}}
    outcome, run = run_in_process(tmp_path / "ff", flux_spec(tmp_path / "ff", tiny_flux, data, feed_forward,
                                                             max_train_steps=1))
    assert outcome == "completed"
    wrapped = {name for name, _ in run.unwrapped().lycoris_network.named_children()}
    assert wrapped and all("_ff_" in name or "_ff_context_" in name for name in wrapped), wrapped

    from tuneforge.errors import Invalid

    nothing = {**LOKR, "apply_preset": {"target_module": ["NoSuchBlock"]}}
    events = []
    with pytest.raises(Invalid, match="wraps no layer"):
        run_in_process(tmp_path / "none", flux_spec(tmp_path / "none", tiny_flux, data, nothing, max_train_steps=1),
                       events.append)
    assert not any(e.type == "lifecycle.stage" for e in events)  # refused before any data was cached


@pytest.mark.parametrize("target", ["mmdit", "context", "all+ffs"])
def test_each_flux_lora_target_trains_its_layers(target, tmp_path, tiny_flux):
    from tuneforge.options.capabilities import FLUX_LORA_TARGETS

    data = write_images(tmp_path / "data", 2)
    outcome, run = run_in_process(tmp_path, flux_spec(tmp_path, tiny_flux, data, max_train_steps=1,
                                                      flux_lora_target=target))
    assert outcome == "completed"
    trained = {name.rsplit(".lora_", 1)[0] for name, p in run.unwrapped().named_parameters() if p.requires_grad}
    assert trained and all(any(m.endswith(t) for t in FLUX_LORA_TARGETS[target]) for m in trained)


def test_a_lora_target_the_model_lacks_is_refused_before_caching(tmp_path, tiny_flux):
    from tuneforge.errors import Invalid

    data = write_images(tmp_path / "data", 2)
    events = []
    with pytest.raises(Invalid) as caught:
        run_in_process(tmp_path, flux_spec(tmp_path, tiny_flux, data, flux_lora_target="tiny"), events.append)
    assert caught.value.errors[0].field == "--flux_lora_target"
    assert not any(e.type == "lifecycle.stage" for e in events)


@pytest.mark.parametrize("family", ["flux", "pixart_sigma"])
def test_validation_samples_a_bf16_base_without_mixed_precision(family, tmp_path, tiny_flux, tiny_pixart):
    from tuneforge.trainer.validation import sample

    model = tiny_flux if family == "flux" else tiny_pixart
    data = write_images(tmp_path / "data", 1)
    spec = make_spec(tmp_path, model, data, model_family=family, max_train_steps=1, base_model_precision="bf16",
                     mixed_precision="no", validation_prompt=PROMPT, validation_num_inference_steps=2)
    outcome, run = run_in_process(tmp_path, spec)
    assert outcome == "completed"
    assert sample(run, (64, 64)).size == (64, 64)


def test_outputs_are_readable_by_other_users(tmp_path, tiny_flux):
    from tuneforge.models.files import UMASK

    data = write_images(tmp_path / "data", 2)
    for name, lycoris, options in (("lycoris", LOKR, {}), ("full", None, {"model_type": "full"})):
        outcome, run = run_in_process(tmp_path / name, flux_spec(tmp_path / name, tiny_flux, data, lycoris,
                                                                 max_train_steps=1, **options))
        assert outcome == "completed"
        weights = [p for p in run.output_dir.rglob("*.safetensors") if "cache" not in p.parts]
        assert weights and all(p.stat().st_mode & 0o777 == 0o666 & ~UMASK for p in weights), weights


def test_text_encoders_follow_their_precision_and_the_cache_key_tells_them_apart(tiny_flux):
    from optimum.quanto import QLinear

    from tuneforge.models.flux import FluxAdapter

    plain = FluxAdapter(TrainingOptions(model_family="flux", pretrained_model_name_or_path=str(tiny_flux)),
                        torch.device("cpu"))
    quantised = FluxAdapter(TrainingOptions(model_family="flux", pretrained_model_name_or_path=str(tiny_flux),
                                            text_encoder_precision="int8-quanto"), torch.device("cpu"))
    assert plain.text_encoder_fingerprint() != quantised.text_encoder_fingerprint()
    quantised.load_text_encoders()
    assert any(isinstance(m, QLinear) for m in quantised.t5.modules())
    assert not any(isinstance(m, QLinear) for m in quantised.clip.modules())  # CLIP only takes the dtype


def test_t5_lengths_default_per_flavour(tiny_flux, tiny_flux_schnell):
    from tuneforge.models.flux import FluxAdapter

    for flavour, model, tokens in (("dev", tiny_flux, 512), ("schnell", tiny_flux_schnell, 256)):
        options = TrainingOptions(model_family="flux", model_flavour=flavour, pretrained_model_name_or_path=str(model))
        assert FluxAdapter(options, torch.device("cpu")).max_tokens == tokens


def test_a_checkpoint_from_before_layouts_were_recorded_still_resumes(tmp_path, tiny_flux):
    import json

    data = write_images(tmp_path / "data", 2)
    spec = flux_spec(tmp_path, tiny_flux, data, max_train_steps=2, checkpoint_step_interval=2)
    assert run_in_process(tmp_path, spec)[0] == "completed"
    state_file = tmp_path / "out/checkpoint-2" / runfolder.CHECKPOINT_STATE_FILE
    state = json.loads(state_file.read_text())
    state.pop("trained")
    state_file.write_text(json.dumps(state))
    spec = flux_spec(tmp_path, tiny_flux, data, max_train_steps=3, resume_from_checkpoint="latest")
    outcome, run = run_in_process(tmp_path, spec)
    assert outcome == "completed" and run.resumed_from.name == "checkpoint-2"
