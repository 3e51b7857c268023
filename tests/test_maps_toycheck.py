"""The toy why-map check: regions from the renderer's layout, and mass shares by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neuronattack.maps.toycheck import (
    class_region,
    cue_region,
    patch_fractions,
    positive_share,
    region_shares,
    word_region,
)
from neuronattack.toy.renderer import ToyRenderer
from neuronattack.toy.world import CUES


def cue(value: str):
    return next(c for c in CUES if c.value == value)


def test_mass_shares_by_hand():
    mask = np.zeros((4, 4), dtype=bool)
    mask[:2, :2] = True  # the top-left patch of a 2x2 grid, whole
    mask[2, 2] = True  # a quarter of the bottom-right patch
    fractions = patch_fractions(mask, (2, 2))
    assert torch.equal(fractions, torch.tensor([[1.0, 0.0], [0.0, 0.25]], dtype=torch.float64))
    values = torch.tensor([[3.0, -5.0], [1.0, 4.0]])  # positive mass 8; negatives ignored
    assert positive_share(values, fractions) == pytest.approx((3 + 0.25 * 4) / 8)
    assert positive_share(-values.abs(), fractions) is None
    # A uniform map's share is the region's area.
    assert positive_share(torch.ones(2, 2), fractions) == pytest.approx(mask.mean())


def test_regions_come_from_the_layout():
    [(image, layout)] = ToyRenderer().render_with_layouts(
        ["a frog on the water under a sign with the letter k beside a ball"], [5])
    water, sign, ball = cue_region(layout, cue("water")), cue_region(layout, cue("k"), "k"), \
        cue_region(layout, cue("ball"))
    frog = class_region(layout, "frog")
    assert frog.any() and sign.any() and ball.any()
    # The background is what nothing covers: the regions tile the frame exactly.
    assert not (water & frog).any() and not (water & sign).any() and not (water & ball).any()
    assert (water | frog | sign | ball).all()
    assert cue_region(layout, cue("sky")) is None  # drawn on water, not sky
    assert cue_region(layout, cue("red")) is None  # a colour has no region of its own
    assert np.array_equal(word_region(layout, "letter k", "k"), sign)
    assert np.array_equal(word_region(layout, "sign"), sign)
    assert word_region(layout, "letter k", "t") is None  # a sign showing another glyph
    assert cue_region(layout, cue("k"), "t") is None
    assert np.array_equal(word_region(layout, "balls"), ball)
    assert word_region(layout, "red") is None and word_region(layout, "sky") is None
    shares = region_shares(torch.ones(8, 8), {"cue": sign, "source": frog, "flip": None})
    assert shares["cue"]["share"] == pytest.approx(sign.mean())
    assert shares["source"]["area"] == pytest.approx(frog.mean())
    assert shares["flip"] is None


def test_rain_is_drawn_on_the_background():
    [(_, layout)] = ToyRenderer().render_with_layouts(["a frog on the grass in the rain"], [2])
    grass = word_region(layout, "grass")
    assert grass.any() and not (grass & class_region(layout, "frog")).any()
    assert np.array_equal(word_region(layout, "rain"), grass)
    [(_, dry)] = ToyRenderer().render_with_layouts(["a frog on the grass"], [2])
    assert word_region(dry, "rain") is None


def test_run_shares_on_a_toy_attack_folder(tmp_path):
    """Records are re-rendered from their prompts and seeds; the flip word's region and what its
    removal changed are measured for successes that `explain` covered."""
    import json

    from neuronattack.attack.records import AttackRecord
    from neuronattack.maps.toycheck import run_shares

    prompts = ["a cat beside a ball on the grass", "a cat on the grass", "a dog beside a ball"]
    records = [AttackRecord(id=f"cat-dog/s0/method/{i:04d}", arm="method", index=i,
                            source="cat", target="dog", prompt=prompt, seed=10 + i,
                            image=f"images/{i}.png", valid=i < 2, top1_success=i == 0)
               for i, prompt in enumerate(prompts)]
    (tmp_path / "results.jsonl").write_text("".join(r.line() for r in records))
    (tmp_path / "explain.jsonl").write_text(json.dumps({
        "id": records[0].id, "word": "ball", "effect": 0.1, "necessary": True,
        "failed": False, "prompt": "a cat on the grass"}) + "\n")
    [pair] = run_shares(tmp_path)["pairs"].values()
    assert pair["images"] == 2 and pair["successes"] == 1  # the invalid image is left out
    assert pair["cue"] == "prop ball" and pair["flip_words"] == ["ball"]
    [(_, layout)] = ToyRenderer().render_with_layouts([prompts[0]], [10])
    success = pair["success"]
    assert success["flip"]["area"] == pytest.approx(layout.prop_masks["ball"].mean())
    assert success["cue"] == success["flip"]  # the flip word is the planted cue here
    assert success["flip-change"]["images"] == 1 and 0 <= success["flip-change"]["share"] <= 1
    assert pair["all"]["source"]["images"] == 2 and pair["all"]["cue"]["images"] == 1
    assert pair["all"]["sign"]["images"] == 0
