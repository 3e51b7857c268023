"""The toy CLIP: its open_clip registration, the lens on it, training, the weights file, and the
shipped weights' accuracy."""

from __future__ import annotations

import json
import random

import open_clip
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from neuronattack.errors import NeuronAttackError
from neuronattack.lens import trace
from neuronattack.lens.vit import check_supported
from neuronattack.toy.draw import draw
from neuronattack.toy.model import (
    MODEL_NAME,
    TOKEN_IDS,
    WEIGHTS_PATH,
    build_toy_clip,
    load_toy_clip,
    save_toy_weights,
    to_pixels,
    toy_preprocess,
    toy_tokenizer,
    world_token_ids,
)
from neuronattack.toy.scenes import sample_scene
from neuronattack.toy.train import (
    TrainSettings,
    make_batch,
    make_optimizer,
    paired_difference,
    train,
    train_step,
    zero_shot_accuracy,
)
from neuronattack.toy.world import CLASSES, CUES


@pytest.fixture(scope="module")
def toy_model() -> open_clip.CLIP:
    return build_toy_clip(seed=0).eval()


def _images(count: int, seed: int = 0) -> list:
    rng = random.Random(seed)
    return [draw(sample_scene(rng), rng.getrandbits(32)) for _ in range(count)]


def test_config_is_registered_with_open_clip(toy_model):
    assert MODEL_NAME in open_clip.list_models()
    built = open_clip.create_model(MODEL_NAME)
    assert {k: v.shape for k, v in built.state_dict().items()} == {
        k: v.shape for k, v in toy_model.state_dict().items()
    }
    assert open_clip.get_tokenizer(MODEL_NAME).context_length == 32


def test_fast_pixels_equal_the_preprocess():
    images = _images(4)
    expected = torch.stack([toy_preprocess()(image) for image in images])
    torch.testing.assert_close(to_pixels(images), expected, rtol=0, atol=1e-5)


def test_lens_accepts_the_toy_tower_and_traces_it_exactly(toy_model):
    check_supported(toy_model.visual)
    pixels = to_pixels(_images(3))
    record = trace(toy_model.visual, pixels, mlp_layers=(2,))
    with torch.no_grad():
        expected = toy_model.encode_image(pixels)
    torch.testing.assert_close(record.embedding, expected, rtol=1e-4, atol=1e-5)
    assert record.mlp_post[2].shape == (3, 65, 512)


def test_loss_falls_on_a_fixed_batch_and_unseen_tokens_stay_zero():
    model = build_toy_clip(seed=1).train()
    tokenizer = toy_tokenizer()
    pixels, tokens = make_batch(random.Random(0), 12, tokenizer)
    optimizer = make_optimizer(model, lr=1e-3, weight_decay=0.1)
    losses = [train_step(model, optimizer, pixels, tokens) for _ in range(30)]
    assert all(torch.isfinite(torch.tensor(losses)))
    assert sum(losses[-5:]) / 5 < 0.7 * sum(losses[:5]) / 5, losses
    unseen = torch.ones(model.token_embedding.weight.shape[0], dtype=torch.bool)
    unseen[world_token_ids(tokenizer)] = False
    assert torch.count_nonzero(model.token_embedding.weight[unseen]) == 0


def test_training_script_writes_fp16_weights_that_load_back(tmp_path):
    out = tmp_path / "toy.safetensors"
    settings = TrainSettings(steps=2, batch=8, eval_scenes=24, uptake_scenes=12, seed=3)
    report = train(settings, out, show_progress=False)
    assert json.loads(out.with_suffix(".json").read_text())["zero_shot_accuracy"] == (
        report["zero_shot_accuracy"]
    )
    assert len(report["cue_uptake"]) == len(CUES)
    for rates in report["cue_uptake"].values():
        assert rates["uptake"] == pytest.approx(rates["with"] - rates["without"])
        assert rates["uptake_low"] <= rates["uptake"] <= rates["uptake_high"]
        assert rates["scenes"] == 12
    assert 0 <= report["zero_shot_accuracy"] <= 1 and report["file_bytes"] == out.stat().st_size
    with safe_open(str(out), framework="pt") as file:
        dtypes = {file.get_tensor(name).dtype for name in file.keys() if name != TOKEN_IDS}  # noqa: SIM118
    assert dtypes == {torch.float16}
    loaded = load_toy_clip(out)
    assert loaded.spec == f"toy:{out}" and loaded.arch == MODEL_NAME
    assert not loaded.model.training
    assert all(p.dtype == torch.float32 and not p.requires_grad for p in loaded.model.parameters())


def test_weights_round_trip_at_fp16_precision(tmp_path, toy_model):
    out = tmp_path / "toy.safetensors"
    save_toy_weights(toy_model, out, {})
    loaded = load_toy_clip(out).model.state_dict()
    for name, tensor in toy_model.state_dict().items():
        torch.testing.assert_close(loaded[name], tensor.half().float(), rtol=0, atol=0)


def test_missing_or_foreign_weights_are_explained(tmp_path):
    with pytest.raises(NeuronAttackError, match="neuronattack.toy.train"):
        load_toy_clip(tmp_path / "absent.safetensors")
    foreign = tmp_path / "foreign.safetensors"
    save_file({"x": torch.zeros(2)}, str(foreign))
    with pytest.raises(NeuronAttackError, match="not a toy CLIP weights file"):
        load_toy_clip(foreign)


def test_shipped_weights_are_small_and_classify_held_out_scenes():
    assert WEIGHTS_PATH.stat().st_size < 10_000_000
    clip = load_toy_clip()
    assert clip.spec == "toy"
    accuracy = zero_shot_accuracy(clip.model, clip.tokenizer, count=240)
    assert accuracy > 3 / len(CLASSES), accuracy


def test_paired_difference_matches_a_direct_computation():
    rng = random.Random(4)
    first = torch.tensor([float(rng.random() < 0.6) for _ in range(500)])
    second = torch.tensor([float(rng.random() < 0.3) for _ in range(500)])
    result = paired_difference(first, second)
    values = [a - b for a, b in zip(first.tolist(), second.tolist(), strict=True)]
    mean = sum(values) / len(values)
    variance = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
    half = 1.96 * (variance / len(values)) ** 0.5
    assert result["uptake"] == pytest.approx(mean, abs=1e-12)
    assert result["uptake_low"] == pytest.approx(mean - half, abs=1e-12)
    assert result["uptake_high"] == pytest.approx(mean + half, abs=1e-12)
