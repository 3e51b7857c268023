"""Segmentation scores: masks against themselves, the uniform baseline's known numbers, a slow
reference for pixel accuracy and IoU, the mask folder format, and the toy set end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from neuronattack.cli import main
from neuronattack.errors import NeuronAttackError
from neuronattack.maps.segment import (
    Tally,
    binarise,
    read_mask,
    scale01,
    scan_mask_folder,
    two_channel_ap,
)
from neuronattack.maps.toyset import write_toy_masks


def blob_masks(count: int, size: int = 16, seed: int = 0) -> torch.Tensor:
    """Random rectangles, never empty and never the whole frame: bool ``[count, size, size]``."""
    rng = np.random.default_rng(seed)
    masks = torch.zeros(count, size, size, dtype=torch.bool)
    for mask in masks:
        y0, x0 = rng.integers(0, size // 2, 2)
        y1, x1 = rng.integers(size // 2 + 1, size, 2)
        mask[y0:y1, x0:x1] = True
    return masks


def test_masks_scored_against_themselves_give_one():
    masks = blob_masks(6)
    tally = Tally()
    tally.add(masks.double() * 3.5 - 1.0, masks)  # any affine map with a positive top
    assert tally.scores() == {"pixel_accuracy": 1.0, "miou": 1.0, "iou_background": 1.0,
                              "iou_foreground": 1.0, "ap": 1.0, "images": 6}


def test_the_uniform_map_gives_the_expected_baseline():
    """A constant map predicts no foreground: accuracy = background share, foreground IoU 0,
    and per image AP = b² + (1 − b)/2 (background channel tied at 1, foreground tied at 0)."""
    masks = blob_masks(5, seed=1)
    tally = Tally()
    tally.add(torch.full(masks.shape, 0.3), masks)
    background = (~masks).double().mean((1, 2))
    scores = tally.scores()
    assert scores["pixel_accuracy"] == pytest.approx(float((~masks).double().mean()))
    assert scores["iou_foreground"] == 0.0
    assert scores["miou"] == pytest.approx(float((~masks).double().mean()) / 2)
    assert scores["ap"] == pytest.approx(float((background ** 2 + (1 - background) / 2).mean()))


def test_pixel_accuracy_and_iou_against_a_slow_reference():
    masks = blob_masks(4, seed=2)
    maps = torch.randn(masks.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    tally = Tally()
    tally.add(maps, masks)
    correct = union_fg = inter_fg = union_bg = inter_bg = total = 0
    for values, mask in zip(maps.tolist(), masks.tolist(), strict=True):
        flat = [max(v, 0.0) for row in values for v in row]
        low, high = min(flat), max(flat)
        scaled = [(v - low) / (high - low) for v in flat]
        mean = sum(scaled) / len(scaled)
        truth = [m for row in mask for m in row]
        for s, t in zip(scaled, truth, strict=True):
            p = s > mean
            correct += p == t
            inter_fg += p and t
            union_fg += p or t
            inter_bg += (not p) and (not t)
            union_bg += (not p) or (not t)
            total += 1
    scores = tally.scores()
    assert scores["pixel_accuracy"] == pytest.approx(correct / total, abs=1e-12)
    assert scores["iou_foreground"] == pytest.approx(inter_fg / union_fg, abs=1e-12)
    assert scores["miou"] == pytest.approx((inter_fg / union_fg + inter_bg / union_bg) / 2,
                                           abs=1e-12)


def test_scaling_binarising_and_ap_by_hand():
    values = torch.tensor([[[-1.0, 0.0], [2.0, 3.0]]])
    scaled = scale01(values)
    assert torch.equal(scaled, torch.tensor([[[0.0, 0.0], [2 / 3, 1.0]]]))
    assert torch.equal(binarise(scaled), torch.tensor([[[False, False], [True, True]]]))
    # Perfect ranking in both channels -> AP 1; the reverse ranking is poor.
    mask = torch.tensor([[False, False], [True, True]])
    assert two_channel_ap(scaled[0], mask) == 1.0
    assert two_channel_ap(1 - scaled[0], mask) < 0.6


def test_mask_folder_format_and_geometry(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    # A wide image: the model sees its centre square, so the mask must be cropped the same way.
    Image.new("RGB", (40, 20)).save(tmp_path / "images" / "a.jpg")
    mask = np.zeros((20, 40), np.uint8)
    mask[:, 10:20] = 255  # the left half of the centre square
    Image.fromarray(mask).save(tmp_path / "masks" / "a.png")
    (tmp_path / "labels.json").write_text(json.dumps({"a": "dog"}))
    [pair] = scan_mask_folder(tmp_path)
    assert (pair.name, pair.label) == ("a", "dog")
    view = read_mask(pair.mask, 8)
    assert view.shape == (8, 8)
    assert view[:, :4].all() and not view[:, 4:].any()
    Image.new("RGB", (8, 8)).save(tmp_path / "images" / "b.png")
    with pytest.raises(NeuronAttackError, match="no mask"):
        scan_mask_folder(tmp_path)
    with pytest.raises(NeuronAttackError, match="images/ and masks/"):
        scan_mask_folder(tmp_path / "images")


def test_toy_masks_are_the_renderers_exact_object_pixels(tmp_path):
    from neuronattack.toy.draw import draw_with_layout

    folder = write_toy_masks(tmp_path / "toy", 6, seed=3)
    labels = json.loads((folder / "labels.json").read_text())
    assert len(labels) == 6
    mask = np.asarray(Image.open(folder / "masks" / "00000.png")) > 0
    assert 0 < mask.sum() < mask.size
    # The mask is exactly the pixels the object's copies cover in the image.
    import random

    from neuronattack.toy.scenes import sample_scene

    scene = sample_scene(random.Random("toy-masks:3"), with_cues=False, max_kinds=1)
    image, layout = draw_with_layout(scene, seed=3 * 1_000_003)
    expected = np.logical_or.reduce([obj.mask for obj in layout.objects])
    assert np.array_equal(mask, expected) and labels["00000"] == scene.main_class
    assert np.array_equal(np.asarray(Image.open(folder / "images" / "00000.png")),
                          np.asarray(image))


def test_segment_command_on_toy_scenes(tmp_path):
    out = tmp_path / "seg.json"
    result = CliRunner().invoke(main, ["segment", str(tmp_path / "toy"), "--toy", "12", "--clip",
                                       "toy", "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert set(summary["kinds"]) == {"text", "attention", "uniform"}
    assert summary["images"] == 12 and json.loads(out.read_text())["schema"] == \
        "neuronattack.segmentation/1"
    uniform = summary["kinds"]["uniform"]
    assert uniform["iou_foreground"] == 0.0 and uniform["miou"] == pytest.approx(
        uniform["pixel_accuracy"] / 2)
    no_data = CliRunner().invoke(main, ["segment", "--clip", "toy"])
    assert no_data.exit_code == 2 and "--toy" in no_data.output


class StubAtlas:
    """The two things neuron maps read from an atlas: word search and directions."""

    def __init__(self, out_dim: int, seed: int = 0):
        from types import SimpleNamespace

        generator = torch.Generator().manual_seed(seed)
        self.directions = {
            layer: SimpleNamespace(neurons=torch.arange(512),
                                   direction=torch.nn.functional.normalize(
                                       torch.randn(512, out_dim, generator=generator), dim=-1))
            for layer in (3, 4)}

    @property
    def layers(self):
        return sorted(self.directions)

    def search(self, word):
        return [(3, 5, 0.9, 0), (4, 7, 0.5, 1), (3, 9, -0.2, 2)] if word == "frog" else []


def test_neuron_kinds_with_an_atlas(tmp_path):
    from neuronattack.maps.neuron_maps import class_neurons
    from neuronattack.maps.segment import evaluate_folder
    from neuronattack.models.clip import load_clip
    from neuronattack.models.zeroshot import class_embeddings, judge_templates
    from neuronattack.toy.world import CLASSES

    clip = load_clip("toy")
    atlas = StubAtlas(clip.model.visual.proj.shape[1])
    chosen = class_neurons(atlas, "frog")
    assert {k: v.tolist() for k, v in chosen.neurons.items()} == {3: [5], 4: [7]}  # positive only
    rows = class_embeddings(clip, list(CLASSES), judge_templates(clip))
    by_direction = class_neurons(atlas, "frog", 10, "direction", rows[CLASSES.index("frog")])
    scores = torch.cat([atlas.directions[layer].direction @ rows[CLASSES.index("frog")]
                        for layer in (3, 4)])
    assert by_direction.count == 10
    assert min(c.abs().min() for c in by_direction.coefficients.values()) >= \
        scores.abs().sort(descending=True).values[9] - 1e-6
    folder = write_toy_masks(tmp_path / "toy", 10, seed=1)
    result = evaluate_folder(clip, folder, list(CLASSES), rows, atlas, neurons=10,
                             show_progress=False)
    assert set(result["kinds"]) == {"text", "attention", "uniform", "neurons",
                                    "neuron-activations"}
    labels = set(json.loads((folder / "labels.json").read_text()).values())
    assert result["classes_no_neuron_names"] == sorted(labels - {"frog"})
    with pytest.raises(NeuronAttackError, match="No neuron"):
        class_neurons(atlas, "cat")
