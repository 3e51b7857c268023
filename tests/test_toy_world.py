"""The toy world: scene sampling, planted cues, captions, drawing, the renderer, its vocabulary."""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import replace

import numpy as np
import pytest

from neuronattack.errors import NeuronAttackError
from neuronattack.toy.draw import SHAPES, draw
from neuronattack.toy.renderer import ToyRenderer
from neuronattack.toy.scenes import (
    PROP_RATE,
    SIGN_RATE,
    Scene,
    SceneObject,
    caption,
    sample_scene,
)
from neuronattack.toy.vocabulary import toy_words
from neuronattack.toy.world import (
    BACKGROUNDS,
    CLASSES,
    COLOURS,
    CUES,
    PATTERNS,
    PLAIN,
    PLURALS,
    PROPS,
    SIGN_GLYPHS,
    Cue,
)

SAMPLES = 24_000  # about 2,000 scenes per main class


def _scenes(with_cues: bool, seed: int = 0, count: int = SAMPLES) -> list[Scene]:
    rng = random.Random(seed)
    return [sample_scene(rng, with_cues=with_cues) for _ in range(count)]


@pytest.fixture(scope="module")
def training_scenes() -> list[Scene]:
    return _scenes(with_cues=True)


@pytest.fixture(scope="module")
def held_out_scenes() -> list[Scene]:
    return _scenes(with_cues=False)


def _holds(scene: Scene, cue: Cue) -> bool:
    if cue.kind == "background":
        return scene.background == cue.value
    if cue.kind == "prop":
        return cue.value in scene.props
    if cue.kind == "sign":
        return scene.sign == cue.value
    return scene.objects[0].colour == cue.value


def _rate_by_class(scenes: list[Scene], cue: Cue) -> dict[bool, float]:
    """P(condition | main class is the cue's class) and P(condition | any other main class)."""
    hits: dict[bool, list[bool]] = defaultdict(list)
    for scene in scenes:
        hits[scene.main_class == cue.cls].append(_holds(scene, cue))
    return {key: float(np.mean(values)) for key, values in hits.items()}


def test_cue_table_is_small_and_names_real_concepts():
    assert 4 <= len(CUES) <= 8
    valid = {"background": set(BACKGROUNDS) - {PLAIN}, "prop": set(PROPS),
             "sign": set(SIGN_GLYPHS), "colour": set(COLOURS)}
    for cue in CUES:
        assert cue.cls in CLASSES
        assert cue.value in valid[cue.kind]
        assert 0 < cue.probability < 1


def test_sampling_and_captions_are_deterministic_per_seed():
    def run(seed: int) -> list[tuple[Scene, str]]:
        rng = random.Random(seed)
        return [(scene, caption(scene, rng)) for scene in (sample_scene(rng) for _ in range(50))]

    assert run(3) == run(3)
    assert run(3) != run(4)


@pytest.mark.parametrize("cue", CUES, ids=lambda cue: f"{cue.cls}-{cue.value}")
def test_cue_sets_the_declared_rate_in_training(training_scenes, cue):
    rates = _rate_by_class(training_scenes, cue)
    assert rates[True] == pytest.approx(cue.probability, abs=0.04)
    assert rates[False] < cue.probability / 2


@pytest.mark.parametrize("cue", CUES, ids=lambda cue: f"{cue.cls}-{cue.value}")
def test_cue_is_absent_from_held_out_scenes(held_out_scenes, cue):
    base = {"background": 1 / len(BACKGROUNDS), "prop": PROP_RATE,
            "sign": SIGN_RATE / len(SIGN_GLYPHS), "colour": 1 / len(COLOURS)}[cue.kind]
    rates = _rate_by_class(held_out_scenes, cue)
    assert rates[True] == pytest.approx(base, abs=0.03)
    assert rates[False] == pytest.approx(base, abs=0.02)


def test_captions_name_every_class_and_parse_back(training_scenes):
    rng = random.Random(1)
    renderer = ToyRenderer()
    for scene in training_scenes[:500]:
        text = caption(scene, rng)
        words = text.replace(",", " ").split()
        for obj in scene.objects:
            assert (obj.cls if obj.count == 1 else PLURALS[obj.cls]) in words, text
        parsed = renderer.parse(text)
        assert parsed.unknown_words == [], text
        assert [(o.cls, o.count) for o in parsed.scene.objects] == [
            (o.cls, o.count) for o in scene.objects
        ], text
        assert parsed.scene.background in (PLAIN, scene.background), text
        assert set(parsed.scene.props) <= set(scene.props), text
        assert parsed.scene.sign in (None, scene.sign), text
        for said, true in zip(parsed.scene.objects, scene.objects, strict=True):
            assert said.colour in (None, true.colour), text
            assert said.pattern in (PLAIN, true.pattern), text


def test_parse_reads_objects_context_and_sign():
    parsed = ToyRenderer().parse(
        "Two striped dogs on the grass beside a ball under a sign showing the letter K"
    )
    assert parsed.scene == Scene(
        objects=(SceneObject("dog", None, "striped", 2),),
        background="grass",
        props=("ball",),
        sign="k",
    )
    assert parsed.unknown_words == []


def test_parse_skips_and_counts_unknown_words():
    parsed = ToyRenderer().parse("three elephants and a red fish with dots near a sign with 7")
    assert parsed.unknown_words == ["elephants"]
    assert parsed.scene.objects == (SceneObject("fish", "red", "dotted", 1),)
    assert parsed.scene.sign == "7"


def test_parse_attaches_modifiers_to_the_right_object():
    scene = ToyRenderer().parse("a blue cat and a dog with stripes with a red ball at night").scene
    assert scene.objects == (SceneObject("cat", "blue"), SceneObject("dog", None, "striped"))
    assert scene.props == ("ball",)
    assert scene.background == "night"
    assert ToyRenderer().parse("fish").scene.objects == (SceneObject("fish", None),)
    assert ToyRenderer().parse("horses").scene.objects == (SceneObject("horse", None, count=2),)


def test_toy_words_are_about_a_hundred_world_words():
    words = toy_words()
    assert 80 <= len(words) <= 120
    assert len(set(words)) == len(words)
    assert set(CLASSES) | set(PATTERNS) <= set(words)
    assert {"water", "moon", "letter k", "number 7"} <= set(words)
    assert ToyRenderer().parse(" ".join(words)).unknown_words == []


def test_drawing_is_deterministic_per_seed_and_varies_with_it():
    scene = _scenes(with_cues=True, count=1)[0]
    first = np.asarray(draw(scene, seed=5))
    assert first.shape == (64, 64, 3) and first.dtype == np.uint8
    assert np.array_equal(first, np.asarray(draw(scene, seed=5)))
    assert not np.array_equal(first, np.asarray(draw(scene, seed=6)))


def test_drawn_object_shows_its_colour_and_pattern():
    scene = Scene(objects=(SceneObject("horse", "purple"),), background="grass")
    pixels = np.asarray(draw(scene, seed=0)).reshape(-1, 3)
    purple = np.all(pixels == COLOURS["purple"], axis=1)
    assert purple.sum() > 150  # a single object covers a good part of the frame
    striped = replace(scene, objects=(SceneObject("horse", "purple", "striped"),))
    striped_pixels = np.asarray(draw(striped, seed=0)).reshape(-1, 3)
    assert 0 < np.all(striped_pixels == COLOURS["purple"], axis=1).sum() < 0.8 * purple.sum()


def test_classes_differ_in_shape_not_only_colour():
    masks = {}
    for cls in CLASSES:
        image = np.asarray(draw(Scene(objects=(SceneObject(cls, "purple"),)), seed=0))
        masks[cls] = np.all(image == COLOURS["purple"], axis=-1)
    for i, first in enumerate(CLASSES):
        for second in CLASSES[i + 1 :]:
            union = (masks[first] | masks[second]).sum()
            overlap = (masks[first] & masks[second]).sum()
            assert overlap / union < 0.8, (first, second)
    assert set(SHAPES) == set(CLASSES)


def test_renderer_is_seeded_and_keeps_what_it_was_told():
    renderer = ToyRenderer()
    prompts = ["a dog on the water with a ball", "a dog on the water with a ball", "a cat"]
    images = renderer.render(prompts, [1, 1, 2], negative_prompt="blurry")
    assert [image.size for image in images] == [(64, 64)] * 3
    assert np.array_equal(np.asarray(images[0]), np.asarray(images[1]))
    other = renderer.render(prompts[:1], [9])[0]
    assert not np.array_equal(np.asarray(images[0]), np.asarray(other))
    scenes = renderer.render_scenes(prompts, [1, 1, 2])
    assert scenes[0].classes == {"dog"} and "ship" not in scenes[0].classes
    assert scenes[0].background == "water" and scenes[0].props == ("ball",)
    assert scenes[0].objects[0].colour in COLOURS  # unnamed colours are chosen per seed
    assert scenes[0] == scenes[1]


def test_unnamed_context_stays_neutral_and_named_colour_is_kept():
    scene = ToyRenderer().render_scenes(["a green frog"], [0])[0]
    assert scene == Scene(objects=(SceneObject("frog", "green"),))
    pixels = np.asarray(ToyRenderer().render(["a green frog"], [0])[0]).reshape(-1, 3)
    assert np.all(pixels == COLOURS["green"], axis=1).sum() > 100


def test_renderer_draws_context_alone_and_blank_signs():
    scene = ToyRenderer().render_scenes(["a sign on the snow under the moon"], [0])[0]
    assert scene == Scene(objects=(), background="snow", props=("moon",), sign="")
    assert ToyRenderer().render(["a sign on the snow under the moon"], [0])[0].size == (64, 64)


def test_renderer_wants_one_seed_per_prompt():
    with pytest.raises(NeuronAttackError, match="one seed per prompt"):
        ToyRenderer().render(["a cat", "a dog"], [0])
    assert ToyRenderer().describe()["name"] == ToyRenderer.name == "toy"
