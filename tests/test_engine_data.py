"""Data discovery, buckets and the latent / text-embedding caches (real tiny encoders, in-process)."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from types import SimpleNamespace

import torch

from engine_helpers import make_spec, write_images
from tuneforge.data import prepare
from tuneforge.data.buckets import TooSmall, plan_image
from tuneforge.data.plan import epoch_batches
from tuneforge.models import get_adapter


def _prepare(spec):
    adapter = get_adapter(spec.config, torch.device("cpu"))
    prepared = prepare.discover_all(spec.config, spec.datasets, spec.workspace / "out")
    prepare.cache_latents(prepared, adapter)
    prepare.cache_text(prepared, adapter, [""])
    prepare.finalize(prepared)
    return prepared, adapter


def test_second_run_encodes_nothing_and_a_changed_caption_is_reencoded(tmp_path, tiny_pixart):
    data = write_images(tmp_path / "data", 5)
    spec = make_spec(tmp_path, tiny_pixart, data)
    first, _ = _prepare(spec)
    assert (first.encoded_latents, first.encoded_texts) == (5, 6)
    second, adapter = _prepare(spec)
    assert (second.encoded_latents, second.encoded_texts) == (0, 0)
    assert adapter.t5 is None and adapter.vae is None  # complete caches load no encoder
    (data / "img002.txt").write_text("a brand new caption")
    third, _ = _prepare(spec)
    assert (third.encoded_latents, third.encoded_texts) == (0, 1)
    cached = {s.path.name: third.text_cache.get(s.text_key)["prompt_embeds"] for s in third.all_samples()}
    old = {s.path.name: first.text_cache.get(s.text_key)["prompt_embeds"] for s in first.all_samples()}
    assert not torch.equal(cached["img002.png"], old["img002.png"])
    assert torch.equal(cached["img001.png"], old["img001.png"])


def test_broken_and_small_images_are_skipped_and_reported(tmp_path, tiny_pixart):
    data = write_images(tmp_path / "data", 4)
    # A caption that exists but cannot be read: reading /proc/self/mem from offset 0 fails with EIO, for root too.
    (data / "img003.txt").unlink()
    (data / "img003.txt").symlink_to("/proc/self/mem")
    (data / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    truncated = (data / "img000.png").read_bytes()
    (data / "truncated.png").write_bytes(truncated[: len(truncated) // 2])
    write_images(tmp_path / "small", 1, sizes=((32, 32),))
    (data / "tiny.png").write_bytes((tmp_path / "small" / "img000.png").read_bytes())
    spec = make_spec(tmp_path, tiny_pixart, datasets=[
        {"id": "images", "instance_data_dir": str(data), "resolution": 64, "resolution_type": "pixel",
         "minimum_image_size": 48},
        {"id": "text", "dataset_type": "text_embeds", "default": True, "cache_dir": str(tmp_path / "t")}])
    prepared, _ = _prepare(spec)
    assert sorted(s.path.name for s in prepared.all_samples()) == ["img000.png", "img001.png", "img002.png"]
    reasons = {os.path.basename(path): reason for path, reason in prepared.skipped}
    assert set(reasons) == {"broken.png", "truncated.png", "tiny.png", "img003.png"}
    assert "minimum_image_size" in reasons["tiny.png"]
    assert reasons["img003.png"] == "unreadable caption img003.txt: Input/output error"


def test_buckets_for_each_resolution_type():
    defaults = SimpleNamespace(resolution=1024, resolution_type="pixel_area")

    def ds(**kw):
        base = dict(resolution=None, resolution_type=None, minimum_image_size=None, maximum_image_size=None,
                    target_downsample_size=None, crop=True, crop_style="center", crop_aspect="preserve")
        return SimpleNamespace(**{**base, **kw})

    assert plan_image(2000, 1000, ds(resolution=512, resolution_type="pixel"), defaults, "a").bucket == (1024, 512)
    area = plan_image(2000, 1000, ds(resolution=1.0, resolution_type="area"), defaults, "a").bucket
    assert area == (1472, 704) and abs(area[0] * area[1] / 1024**2 - 1) < 0.05
    assert plan_image(3000, 3000, ds(crop_aspect="square"), defaults, "a").bucket == (1024, 1024)
    closest = plan_image(1700, 1000, ds(crop_aspect="closest"), defaults, "a")
    assert closest.bucket[0] / closest.bucket[1] > 1.6
    corner = plan_image(2000, 1000, ds(crop_aspect="square", crop_style="corner"), defaults, "a")
    assert corner.box[:2] == (0, 0)
    try:
        plan_image(300, 300, ds(minimum_image_size=512), defaults, "a")
        raise AssertionError("expected TooSmall")
    except TooSmall:
        pass


def test_epoch_plan_is_deterministic_and_respects_repeats(tmp_path, tiny_pixart):
    data = write_images(tmp_path / "data", 6)
    spec = make_spec(tmp_path, tiny_pixart, datasets=[
        {"id": "images", "instance_data_dir": str(data), "resolution": 64, "resolution_type": "pixel",
         "crop": True, "crop_aspect": "square", "repeats": 1},
        {"id": "text", "dataset_type": "text_embeds", "default": True, "cache_dir": str(tmp_path / "t")}])
    prepared = prepare.discover_all(spec.config, spec.datasets, spec.workspace / "out")
    one = epoch_batches(prepared, 2, seed=3, epoch=0, rank=0, world=1)
    assert len(one) == 6  # 6 images x (1 + 1 repeat) / batch 2
    assert [[s.path for s in b] for b in one] == [[s.path for s in b] for b in epoch_batches(prepared, 2, 3, 0, 0, 1)]
    assert [[s.path for s in b] for b in one] != [[s.path for s in b] for b in epoch_batches(prepared, 2, 3, 1, 0, 1)]
    ranks = [epoch_batches(prepared, 2, 3, 0, r, 2) for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == 3


def test_the_trainer_reads_the_images_validation_counts(tmp_path):
    """One lister for both sides: hidden files (`._a.png`, `.thumbs/`) are neither counted nor trained on."""
    from tuneforge.data.discovery import discover
    from tuneforge.options.dataloader import DatasetConfig, list_images

    data = write_images(tmp_path / "data", 2)
    write_images(data / ".thumbs", 1)
    (data / "._img000.png").write_bytes((data / "img000.png").read_bytes())
    found = discover(DatasetConfig(id="d", instance_data_dir=str(data)))
    assert [item.path.name for item in found.items] == ["img000.png", "img001.png"]
    assert [p.name for p in list_images(data)] == ["img000.png", "img001.png"]
