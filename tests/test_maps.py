"""Maps: patch values + rest == the score they explain, neuron maps against the lens, why-maps
against the judge, and the heatmap command."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner
from conftest import build_tiny_clip, random_images
from PIL import Image

from neuronattack.cli import main
from neuronattack.lens.first_order import decompose
from neuronattack.lens.neuron_effects import second_order
from neuronattack.lens.traced_pass import trace
from neuronattack.maps.neuron_maps import (
    ClassNeurons,
    neuron_activation_map,
    neuron_effect_map,
)
from neuronattack.maps.patches import check_layers, cls_attention_map, explain, grid_shape
from neuronattack.maps.why import why_map_path, why_maps, write_why_maps
from neuronattack.models.clip import load_clip


@pytest.fixture(scope="module")
def model64():
    """A float64 tiny CLIP: the sums are checked to 1e-10, not to float32 rounding."""
    return build_tiny_clip(layers=4, seed=2).double()


@pytest.fixture(scope="module")
def toy():
    return load_clip("toy")


@pytest.mark.parametrize("layers", [None, (2, 3), (0,)])
@pytest.mark.parametrize("per_norm", [False, True])
def test_patch_values_and_rest_sum_to_the_projected_embedding(model64, layers, per_norm):
    images = random_images(3, seed=1, dtype=torch.float64)
    generator = torch.Generator().manual_seed(3)
    direction = torch.randn(3, model64.visual.proj.shape[1], generator=generator,
                            dtype=torch.float64)  # one direction per image
    result = explain(decompose(model64.visual, images), direction, grid_shape(model64.visual),
                     layers, per_norm=per_norm)
    with torch.no_grad():
        embedding = model64.encode_image(images)
    expected = (embedding * direction).sum(-1)
    if per_norm:
        expected = expected / embedding.norm(dim=-1)
    assert result.values.shape == (3, 4, 4)
    assert torch.allclose(result.score, expected, rtol=0, atol=1e-10)
    assert torch.allclose(result.total(), expected, rtol=0, atol=1e-10)
    assert result.values.abs().sum() > 1e-3 * expected.abs().max()  # the patches carry something


def test_patch_values_add_over_layers(model64):
    """A map over two blocks is the sum of the two one-block maps (same pieces, split)."""
    images = random_images(2, seed=4, dtype=torch.float64)
    pieces = decompose(model64.visual, images)
    direction = torch.randn(model64.visual.proj.shape[1], dtype=torch.float64)
    grid = grid_shape(model64.visual)
    both = explain(pieces, direction, grid, (1, 3)).values
    split = explain(pieces, direction, grid, (1,)).values + explain(pieces, direction, grid,
                                                                     (3,)).values
    assert torch.allclose(both, split, rtol=0, atol=1e-12)


def test_bad_layers_are_one_line_errors():
    from neuronattack.errors import NeuronAttackError

    with pytest.raises(NeuronAttackError, match="0..3"):
        check_layers((4,), 4)


def test_neuron_effect_map_sums_to_the_neurons_second_order_effects(model64):
    """Per-token effects summed over tokens == Σ_n φ_n · d from the lens (itself checked against
    the brute-force formula in test_lens)."""
    images = random_images(2, seed=5, dtype=torch.float64)
    neurons = {1: torch.tensor([3, 17, 200]), 2: torch.tensor([0, 5])}
    chosen = ClassNeurons("x", neurons, {k: torch.ones(len(v)) for k, v in neurons.items()})
    direction = torch.randn(model64.visual.proj.shape[1], dtype=torch.float64)
    record = trace(model64.visual, images, mlp_layers=(1, 2))
    result = neuron_effect_map(model64.visual, record, chosen, direction,
                               grid_shape(model64.visual))
    expected = sum((second_order(model64, images, layer, idx) @ direction).sum(1)
                   for layer, idx in neurons.items())
    assert torch.allclose(result.score, expected, rtol=0, atol=1e-10)
    assert torch.allclose(result.total(), expected, rtol=0, atol=1e-10)
    # The papers' activation map: the chosen neurons' mean activation at each patch.
    activation = neuron_activation_map(record, chosen, grid_shape(model64.visual))
    by_hand = torch.stack([record.mlp_post[1][0, 6, 3], record.mlp_post[1][0, 6, 17],
                           record.mlp_post[1][0, 6, 200], record.mlp_post[2][0, 6, 0],
                           record.mlp_post[2][0, 6, 5]]).mean()
    assert torch.isclose(activation[0, 1, 1], by_hand)  # token 6 = patch 5 = row 1, column 1


def test_cls_attention_baseline_is_a_distribution_over_patches_and_cls(model64):
    images = random_images(2, seed=6, dtype=torch.float64)
    record = trace(model64.visual, images, first_order=True)
    attention = cls_attention_map(record, grid_shape(model64.visual))
    last = record.attn_cls_rows[3]  # [batch, heads, tokens]
    assert torch.allclose(attention.sum((1, 2)) + last[:, :, 0].mean(1),
                          torch.ones(2, dtype=torch.float64))


def test_why_map_explains_the_judges_margin(toy, tmp_path):
    from neuronattack.attack.judge import Judge
    from neuronattack.models.zeroshot import class_embeddings, judge_templates
    from neuronattack.toy.draw import draw
    from neuronattack.toy.scenes import Scene, SceneObject
    from neuronattack.toy.world import CLASSES

    names = list(CLASSES)
    rows = class_embeddings(toy, names, judge_templates(toy))
    judge = Judge(toy, names, rows)
    scenes = [Scene((SceneObject("frog", "green"),), "grass", sign="k"),
              Scene((SceneObject("car", "red"),), "water")]
    images = [draw(scene, seed) for seed, scene in enumerate(scenes)]
    source, target = names.index("frog"), names.index("bird")
    margins = [j.margin for j in judge.judge(images, source, target)]
    result = why_maps(toy, images, rows[source], rows[target])
    assert torch.allclose(result.total().double(), torch.tensor(margins, dtype=torch.float64),
                          atol=1e-5)
    paths = [tmp_path / f"{i}.png" for i in range(2)]
    written = write_why_maps(toy, images, paths, rows[source], rows[target])
    assert written == [tmp_path / "0-why.png", tmp_path / "1-why.png"] == [why_map_path(p) for p
                                                                          in paths]
    with Image.open(written[0]) as png:
        info = json.loads(png.text["neuronattack"])
        assert png.size == (128, 128)
    assert info["margin"] == pytest.approx(margins[0], abs=1e-5)
    assert info["patches"] + info["rest"] == pytest.approx(info["margin"], abs=1e-5)


def test_heatmap_command_writes_the_overlay_and_reports_the_split(tmp_path):
    from neuronattack.toy.draw import draw
    from neuronattack.toy.scenes import Scene, SceneObject

    image = tmp_path / "frog.png"
    draw(Scene((SceneObject("frog", "green"),), "grass"), 1).save(image)
    out = tmp_path / "maps" / "frog-bird.png"
    result = CliRunner().invoke(main, ["heatmap", str(image), "--clip", "toy", "--text", "a bird",
                                       "--minus", "a frog", "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["patches"] + summary["rest"] == pytest.approx(summary["score"], abs=1e-5)
    assert out.exists() and len(summary["top_patches"]) == 5
    with Image.open(out) as png:
        assert png.width == 256 and png.height > 256  # enlarged, with the caption strip
    missing = CliRunner().invoke(main, ["heatmap", str(tmp_path / "nope.png"), "--clip", "toy",
                                        "--text", "a bird"])
    assert missing.exit_code == 2 and "Traceback" not in missing.output
    bad_layer = CliRunner().invoke(main, ["heatmap", str(image), "--clip", "toy", "--text", "a",
                                          "--layers", "9", "--out", str(out)])
    assert bad_layer.exit_code == 2 and "0..5" in bad_layer.output
