"""`neuronattack analyze`: artifacts, resuming after an interruption, precision, CLI errors."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import PARITY_DIR, random_images
from PIL import Image

from neuronattack.cli import main
from neuronattack.imagesets import iter_batches, scan_images
from neuronattack.lens.neuron_effects import effect_basis, effect_coords
from neuronattack.lens.traced_pass import trace
from neuronattack.models import load_clip
from neuronattack.neurons import analysis
from neuronattack.neurons.analysis import AnalysisSettings, analyze, load_directions
from neuronattack.neurons.directions import RankOneFitter

SPEC = f"local-dir:{PARITY_DIR}"


@pytest.fixture(scope="module")
def clip():
    return load_clip(SPEC)


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for index in range(27):
        pixels = rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{index:03d}.png")
    (folder / "broken.jpg").write_bytes(b"not an image")
    return folder


def settings(**overrides) -> AnalysisSettings:
    return AnalysisSettings(**({"layers": (1, 2), "top_k": 5} | overrides))


def test_analysis_equals_an_in_memory_fit(clip, image_dir, tmp_path):
    image_set = scan_images(image_dir)
    result = analyze(clip, image_set, tmp_path, settings(), batch_size=4, show_progress=False)
    assert result.meta["status"] == "complete"
    assert result.meta["images_used"] == 27
    assert result.meta["images_skipped"] == ["broken.jpg"]
    assert [row["layer"] for row in result.meta["summary"]] == [1, 2]
    assert not (tmp_path / analysis.CHECKPOINT).exists()

    pixels = torch.cat([batch.pixels for batch in iter_batches(image_set, clip.preprocess, 64)])
    basis = effect_basis(clip.model.visual, 2)
    fitter = RankOneFitter(basis, 5)
    with torch.no_grad():
        coords = effect_coords(trace(clip.model.visual, pixels, mlp_layers=(2,)), basis)
    fitter.add_to_mean(*coords)
    fitter.add_to_top_k(*coords, torch.arange(27))  # indices below the broken file match
    expected = fitter.result()
    loaded = load_directions(tmp_path)[2]
    assert torch.equal(loaded.top_images, expected.top_images)
    assert torch.allclose(loaded.direction, expected.direction, atol=1e-5)
    assert torch.allclose(loaded.variance_explained, expected.variance_explained, atol=1e-5)


def run_interrupted(clip, image_set, out, monkeypatch, target, after: int) -> dict:
    """Raise KeyboardInterrupt on the (after+1)-th call of ``analysis.<target>``; then resume.

    Returns the number of calls the resumed run made and its result.
    """
    calls = {"count": 0, "armed": True}
    real = getattr(analysis if target == "effect_coords" else RankOneFitter, target)

    def counting(*args):
        calls["count"] += 1
        if calls["armed"] and calls["count"] > after:
            raise KeyboardInterrupt
        return real(*args)

    owner = analysis if target == "effect_coords" else RankOneFitter
    monkeypatch.setattr(owner, target, counting)
    with pytest.raises(KeyboardInterrupt):
        analyze(clip, image_set, out, settings(), batch_size=4, show_progress=False,
                checkpoint_seconds=0.0)
    assert (out / analysis.CHECKPOINT).exists()
    assert json.loads((out / "meta.json").read_text())["status"] == "running"
    calls.update(count=0, armed=False)
    result = analyze(clip, image_set, out, settings(), batch_size=4, show_progress=False)
    return {"calls": calls["count"], "result": result}


# 28 files in batches of 4: 7 batches per pass, 2 blocks, so 14 effect_coords calls per pass.
@pytest.mark.parametrize(("target", "after", "calls_left"), [
    ("effect_coords", 10, 4 + 14),  # in pass 1, batch 6: 2 batches and pass 2 are left
    ("effect_coords", 19, 10 + 0),  # in pass 2, batch 3, between the two blocks
    ("add_to_top_k", 5, 2 * 2 * 5),  # inside the update of pass 2, batch 3: redone from batch 3
])
def test_interrupted_run_resumes_without_redoing_work(clip, image_dir, tmp_path, monkeypatch,
                                                      target, after, calls_left):
    image_set = scan_images(image_dir)
    reference = analyze(clip, image_set, tmp_path / "clean", settings(), batch_size=4,
                        show_progress=False)
    resumed = run_interrupted(clip, image_set, tmp_path / "run", monkeypatch, target, after)
    if target == "effect_coords":
        assert resumed["calls"] == calls_left
    for layer in (1, 2):
        ours, theirs = resumed["result"].directions[layer], reference.directions[layer]
        assert torch.equal(ours.top_images, theirs.top_images)
        assert torch.allclose(ours.direction, theirs.direction, atol=1e-6)
        assert torch.allclose(ours.mean_effect, theirs.mean_effect, atol=1e-6)
    assert resumed["result"].meta["images_skipped"] == ["broken.jpg"]


def test_a_complete_run_is_not_recomputed(clip, image_dir, tmp_path, monkeypatch):
    image_set = scan_images(image_dir)
    first = analyze(clip, image_set, tmp_path, settings(), batch_size=8, show_progress=False)

    def fail(*args):
        raise AssertionError("recomputed")

    monkeypatch.setattr(analysis, "trace", fail)
    again = analyze(clip, image_set, tmp_path, settings(), batch_size=8, show_progress=False)
    assert again.meta["summary"] == first.meta["summary"]


def test_other_settings_in_the_same_folder_are_refused(clip, image_dir, tmp_path):
    from neuronattack.errors import NeuronAttackError

    image_set = scan_images(image_dir)
    analyze(clip, image_set, tmp_path, settings(), batch_size=8, show_progress=False)
    with pytest.raises(NeuronAttackError, match="--overwrite"):
        analyze(clip, image_set, tmp_path, settings(top_k=6), batch_size=8, show_progress=False)
    redone = analyze(clip, image_set, tmp_path, settings(top_k=6), batch_size=8,
                     show_progress=False, overwrite=True)
    assert redone.directions[1].top_images.shape == (256, 6)
    # Other weights under the same spec (a replaced checkpoint file) are another model.
    changed = load_clip(SPEC)
    with torch.no_grad():
        changed.model.visual.ln_post.bias.add_(0.1)
    with pytest.raises(NeuronAttackError, match="another model"):
        analyze(changed, image_set, tmp_path, settings(top_k=6), batch_size=8,
                show_progress=False)


def test_half_precision_error_is_bounded(clip):
    """bf16 traced pass (CPU; fp16 on GPU behaves alike) against float32, on the effects."""
    visual = clip.model.visual
    images = random_images(12, seed=3)
    basis = effect_basis(visual, 1)
    with torch.no_grad():
        exact = basis.effects(*effect_coords(trace(visual, images, mlp_layers=(1,)), basis))
        half_visual = copy.deepcopy(visual).to(torch.bfloat16)
        half_trace = trace(half_visual, images.bfloat16(), mlp_layers=(1,)).to(torch.float32)
        half = basis.effects(*effect_coords(half_trace, basis))
    assert (half - exact).abs().max() <= 2e-2 * exact.abs().max()


def test_bf16_analysis_agrees_with_fp32(clip, image_dir, tmp_path):
    image_set = scan_images(image_dir)
    exact = analyze(clip, image_set, tmp_path / "fp32", settings(), batch_size=8,
                    show_progress=False)
    half = analyze(clip, image_set, tmp_path / "bf16", settings(precision="bf16"), batch_size=8,
                   show_progress=False)
    for layer in (1, 2):
        cosine = (exact.directions[layer].direction * half.directions[layer].direction).sum(1)
        assert cosine.abs().median() >= 0.99
        relative = (half.directions[layer].threshold - exact.directions[layer].threshold).abs()
        assert (relative / exact.directions[layer].threshold).max() <= 5e-2


def test_cli_analyze_writes_artifacts(image_dir, tmp_path):
    out = tmp_path / "out"
    result = CliRunner().invoke(main, [
        "analyze", "--clip", SPEC, "--images", str(image_dir), "--layers", "0", "2",
        "--out", str(out), "--top-k", "4", "--batch-size", "16", "--json", "--device", "cpu",
        "--words", "none",
    ])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert [row["layer"] for row in summary] == [0, 2]
    assert all(row["neurons"] == 256 for row in summary)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["settings"]["layers"] == [0, 2]
    assert meta["model"] == SPEC
    assert meta["image_set"]["fingerprint"] == scan_images(image_dir).fingerprint()
    assert set(meta["versions"]) >= {"neuronattack", "torch", "open_clip"}
    directions = load_directions(out)
    assert directions[0].direction.shape == (256, 32)
    assert torch.allclose(directions[2].direction.norm(dim=1), torch.ones(256), atol=1e-5)


@pytest.mark.parametrize(("overrides", "message"), [
    ({"--images": "MISSING"}, "does not exist"),
    ({"--layers": "3"}, "cannot be analysed"),
    ({"--layers": "1 x"}, "block numbers"),
    ({"--precision": "fp16", "--device": "cpu"}, "fp16"),
    ({"--clip": "ViT-B-23:openai"}, "did you mean"),
])
def test_cli_errors_are_one_line(image_dir, tmp_path, overrides, message):
    options = {"--clip": SPEC, "--images": str(image_dir), "--out": str(tmp_path / "o")}
    options |= overrides
    if options["--images"] == "MISSING":
        options["--images"] = str(tmp_path / "missing")
    argv = ["analyze"] + [word for flag, value in options.items() for word in (flag,
                                                                                *value.split())]
    result = CliRunner().invoke(main, argv)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
