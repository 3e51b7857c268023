"""The toy world: scene sampling, planted cues, captions, drawing, the renderer, its vocabulary."""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import replace

import numpy as np
import pytest

from neuronattack.errors import NeuronAttackError
from neuronattack.toy.draw import (
    SHAPES,
    draw,
    draw_with_layout,
    fade_of,
    smallest_training_sizes,
)
from neuronattack.toy.renderer import ToyRenderer
from neuronattack.toy.scenes import (
    PROP_RATE,
    SIGN_RATE,
    Scene,
    SceneObject,
    caption,
    sample_scene,
)
from neuronattack.toy.vocabulary import (
    UNDRAWABLE_WORDS,
    caption_words,
    drawable_words,
    toy_words,
    vocabulary_coverage,
)
from neuronattack.toy.world import (
    BACKGROUNDS,
    CLASSES,
    COLOURS,
    CUES,
    DEMO_PAIRS,
    FADE_RANGE,
    FADED_RATE,
    MIN_TRAINING_SIZE,
    PATTERNS,
    PLAIN,
    PLURALS,
    PROPS,
    SIGN_GLYPHS,
    WEATHERS,
    Cue,
    min_training_size,
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
        assert 0 <= cue.elsewhere < cue.probability < 1


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
    # Other classes' cues may override a background drawn for this one, so "elsewhere" is
    # an upper bound, reached within sampling error.
    assert cue.elsewhere / 2 < rates[False] < cue.elsewhere + 0.01


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
        assert parsed.scene.weather in (None, scene.weather), text
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


def test_drawable_words_are_about_a_hundred_world_words():
    words = drawable_words()
    assert 80 <= len(words) <= 120
    assert len(set(words)) == len(words)
    assert set(CLASSES) | set(PATTERNS) | set(WEATHERS) <= set(words)
    assert {"water", "moon", "letter k", "number 7"} <= set(words)
    assert ToyRenderer().parse(" ".join(words)).unknown_words == []


def test_the_vocabulary_is_mostly_words_the_world_cannot_draw():
    words, drawable = toy_words(), set(drawable_words())
    assert len(set(words)) == len(words) and set(words[: len(drawable)]) == drawable
    undrawable = [word for word in words if word not in drawable]
    assert undrawable == list(UNDRAWABLE_WORDS) and len(undrawable) > len(drawable)
    plain = ToyRenderer().parse("a cat").scene
    for word in undrawable:
        parsed = ToyRenderer().parse(f"a cat {word}")
        assert parsed.scene == plain and parsed.unknown_words == word.split(), word
    assert not {part for word in undrawable for part in word.split()} & set(caption_words())


def test_vocabulary_coverage_counts_distinct_vocabulary_words():
    vocabulary = ["cat", "dog", "water", "piano"]
    assert vocabulary_coverage([], vocabulary) == 0
    assert vocabulary_coverage([["cat", "water"], ["cat", "violin"]], vocabulary) == 0.5
    assert vocabulary_coverage([vocabulary, ["dog"]], vocabulary) == 1


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


def _layout_scenes(count: int = 60) -> list[tuple[Scene, int]]:
    rng = random.Random(11)
    return [(sample_scene(rng), rng.getrandbits(32)) for _ in range(count)]


def test_layout_reports_every_copy_with_its_visible_pixels():
    for scene, seed in _layout_scenes():
        image, layout = draw_with_layout(scene, seed)
        assert np.array_equal(np.asarray(image), np.asarray(draw(scene, seed)))
        expected = sorted((index, obj.cls) for index, obj in enumerate(scene.objects)
                          for _ in range(obj.count))
        assert sorted((o.scene_index, o.cls) for o in layout.objects) == expected
        masks = [o.mask for o in layout.objects] + list(layout.prop_masks.values())
        masks += [] if layout.sign_mask is None else [layout.sign_mask]
        for obj in layout.objects:
            assert obj.size == obj.mask.sum() > 0
            assert obj.mask.shape == (64, 64) and obj.mask.dtype == bool
            x0, y0, x1, y1 = obj.box
            ys, xs = np.nonzero(obj.mask)
            assert x0 <= xs.min() and xs.max() < x1 and y0 <= ys.min() and ys.max() < y1
        assert set(layout.prop_masks) == set(scene.props)
        assert (layout.sign_mask is None) == (scene.sign is None)
        # Each pixel belongs to at most one item: the one drawn last there.
        assert np.sum(masks, axis=0).max() <= 1 if masks else True
        assert layout.background == scene.background and layout.ignored_words == ()
        assert draw_with_layout(scene, seed)[1] == layout


def test_layout_masks_cover_the_painted_pixels():
    scene = Scene(objects=(SceneObject("horse", "purple"),), background="grass")
    image, layout = draw_with_layout(scene, seed=0)
    purple = np.all(np.asarray(image) == COLOURS["purple"], axis=-1)
    (horse,) = layout.objects
    assert purple.sum() > 150 and not (purple & ~horse.mask).any()


def test_ball_drawn_last_takes_its_pixels_out_of_the_objects_below():
    occluded = 0
    for seed in range(40):
        scene = Scene(objects=(SceneObject("truck", "red", count=3),), props=("ball",))
        _, layout = draw_with_layout(scene, seed)
        ball = layout.prop_masks["ball"]
        assert ball.sum() > 20
        for obj in layout.objects:
            assert not (obj.mask & ball).any()
        unoccluded = draw_with_layout(replace(scene, props=()), seed)[1]
        # Without the ball the same copies are drawn in the same places (the ball is drawn last).
        boxes = [o.box for o in layout.objects]
        assert [o.box for o in unoccluded.objects] == boxes
        occluded += sum(a.size < b.size for a, b in zip(layout.objects, unoccluded.objects,
                                                         strict=True))
    assert occluded > 0


def test_min_training_size_is_the_measured_smallest_size():
    assert smallest_training_sizes(2000) == MIN_TRAINING_SIZE
    assert all(min_training_size(cls) > 50 for cls in CLASSES)


def test_renderer_layouts_match_its_images_and_name_ignored_words():
    renderer = ToyRenderer()
    prompts = ["a red dog with a ball near a sign with 7 on an elephant", "two cats at night"]
    rendered = renderer.render_with_layouts(prompts, [3, 4])
    for (image, _), plain in zip(rendered, renderer.render(prompts, [3, 4]), strict=True):
        assert np.array_equal(np.asarray(image), np.asarray(plain))
    first, second = (layout for _, layout in rendered)
    assert first.ignored_words == ("elephant",) and second.ignored_words == ()
    assert [o.cls for o in first.objects] == ["dog"] and first.objects[0].colour == "red"
    assert first.sign_mask is not None and set(first.prop_masks) == {"ball"}
    assert [o.cls for o in second.objects] == ["cat", "cat"] and second.background == "night"


def test_rain_falls_behind_everything_and_fading_keeps_the_layout():
    scene = Scene(objects=(SceneObject("cat", "red"),), background="grass", props=("sun",),
                  sign="k")
    seed = next(seed for seed in range(100) if fade_of(seed) == 1)
    dry_image, dry = draw_with_layout(scene, seed)
    wet_image, wet = draw_with_layout(replace(scene, weather="rain"), seed)
    changed = np.any(np.asarray(dry_image) != np.asarray(wet_image), axis=-1)
    covered = dry.objects[0].mask | dry.prop_masks["sun"] | dry.sign_mask
    assert changed.sum() > 100 and not (changed & covered).any()
    assert wet.weather == "rain" and dry.weather is None
    faded_seed = next(seed for seed in range(100) if fade_of(seed) < 1)
    faded_image, faded = draw_with_layout(scene, faded_seed)
    (cat,) = faded.objects
    assert FADE_RANGE[0] <= cat.visibility < FADE_RANGE[1]
    # A faded red cat shows no pure red pixel, but covers the same pixels as at full opacity.
    assert not np.all(np.asarray(faded_image) == COLOURS["red"], axis=-1).any()


def test_fading_depends_on_the_seed_only_and_has_the_declared_rate():
    fades = [fade_of(seed) for seed in range(4000)]
    assert np.mean([fade < 1 for fade in fades]) == pytest.approx(FADED_RATE, abs=0.03)
    assert all(fade == 1 or FADE_RANGE[0] <= fade <= FADE_RANGE[1] for fade in fades)
    renderer = ToyRenderer()
    for seed in range(20):
        layouts = [layout for _, layout in renderer.render_with_layouts(
            ["a red cat", "a red cat on the water with a ball"], [seed, seed])]
        assert layouts[0].objects[0].visibility == layouts[1].objects[0].visibility


def test_demo_pairs_give_each_cue_one_pair_from_an_uncued_source():
    cued = {cue.cls for cue in CUES}
    assert sorted(target for _, target in DEMO_PAIRS) == sorted(cue.cls for cue in CUES)
    assert all(source in CLASSES and source not in cued for source, _ in DEMO_PAIRS)
