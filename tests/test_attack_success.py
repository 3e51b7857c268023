"""What a success means: top-1 and kinds, the toy checker's exact verdicts, the class-word filter,
every baseline arm's selection, per-kind summaries (old records included) and the bootstrap."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_attack_selection import WORDS, synthetic_atlas, unit, word_filter

from neuronattack.attack.filters import class_word_index, make_filter, related_words
from neuronattack.attack.judge import Verdict, image_kind, judge_embeddings
from neuronattack.attack.records import AttackRecord
from neuronattack.attack.run import summarize
from neuronattack.attack.selection import (
    select_random_neurons,
    select_random_neurons_own_words,
    select_random_words,
    select_words,
)
from neuronattack.attack.stats import bootstrap_mean, bootstrap_mean_difference, separated
from neuronattack.toy.checker import ToyChecker
from neuronattack.toy.renderer import ToyRenderer
from neuronattack.toy.world import CLASSES, min_training_size


def test_top1_is_the_headline_not_the_binary_test():
    classes = unit(torch.eye(3))  # cat, dog, ship
    # Closer to dog than to cat, but ship is the top-1: binary yes, top-1 no.
    embeddings = unit(torch.tensor([[0.1, 0.5, 1.0], [0.1, 1.0, 0.2]]))
    ship_wins, dog_wins = judge_embeddings(embeddings, classes, ["cat", "dog", "ship"], 0, 1)
    assert ship_wins.success and not ship_wins.top1_success and ship_wins.top1 == "ship"
    assert dog_wins.success and dog_wins.top1_success


def test_kind_precedence():
    assert image_kind(False, ()) == "contextual"
    assert image_kind(False, ("horse",)) == "distractor"
    assert image_kind(True, ("horse",)) == "typographic"


def test_toy_checker_knows_kind_and_recognisability_exactly():
    checker = ToyChecker(CLASSES)
    car, ship = CLASSES.index("car"), CLASSES.index("ship")
    prompts = ["a red car on the water", "a car under a sign showing the letter k",
               "a car beside a horse", "a car beside a ship", "a horse on the water",
               "three cars, three dogs, three horses and three birds on the road"]
    seeds = list(range(len(prompts)))
    verdicts = checker.check([None] * len(prompts), prompts, car, ship, seeds=seeds)
    layouts = [layout for _, layout in ToyRenderer().render_with_layouts(prompts, seeds)]
    # The target is never a distractor: drawing it makes the image invalid instead.
    assert [v.kind for v in verdicts[:4]] == ["contextual", "typographic", "distractor",
                                              "contextual"]
    assert verdicts[0].valid and verdicts[1].valid and verdicts[2].valid
    assert verdicts[2].distractors == ("horse",)
    assert not verdicts[3].target_absent and not verdicts[3].valid  # the ship is drawn
    assert not verdicts[4].source_present and not verdicts[4].valid
    for verdict, layout in zip(verdicts, layouts, strict=True):
        largest = max(layout.sizes("car"), default=0)
        assert verdict.details["source_size"] == largest
        assert verdict.recognisable == (largest >= min_training_size("car"))
        assert verdict.valid == (verdict.source_present and verdict.recognisable
                                 and verdict.target_absent)
    # A dozen small objects shrink every car below its smallest training size.
    assert verdicts[5].source_present and not verdicts[5].recognisable
    assert not verdicts[5].valid
    with pytest.raises(ValueError, match="seed"):
        checker.check([None], prompts[:1], car, ship)


def test_class_word_filter_drops_every_form_of_other_classes():
    index = class_word_index(["cat", "tiger cat", "great white shark", "seashore", "dog"])
    assert set(index.classes_of("cats")) == {"cat", "tiger cat"}  # the head noun names both
    assert index.classes_of("sharks") == ("great white shark",)
    assert index.classes_of("white") == () and index.classes_of("catalog") == ()
    assert index.classes_of("seashores") == ("seashore",)
    target = unit(torch.tensor([0.0, 0, 0, 1]))
    embeddings = unit(torch.randn(len(WORDS), 4, generator=torch.Generator().manual_seed(0)))
    classes = ["cat", "dog", "tree", "sun"]
    on = make_filter(WORDS, embeddings, target, 100.0, class_names=classes, source="cat")
    off = make_filter(WORDS, embeddings, target, 100.0)
    reasons = related_words(["tree", "sun", "water", "dogs", "cat"], "dog", on)
    assert reasons["tree"] == "names the class 'tree' of the judging class set"
    assert "sun" in reasons and "water" not in reasons and "cat" not in reasons  # the source
    assert reasons["dogs"].startswith("a form of the target")  # the target keeps its own reason
    assert set(related_words(["tree", "sun", "water"], "dog", off)) == set()


def test_class_word_filter_applies_to_every_arm_and_lists_what_it_dropped():
    delta = torch.tensor([1.0, 0.0, 0.0, 0.0])
    directions = unit(torch.randn(6, 4, generator=torch.Generator().manual_seed(1)))
    indices = torch.arange(6 * 3).reshape(6, 3) % len(WORDS)
    atlas = synthetic_atlas(directions, indices, torch.ones(6, 3))
    classes = ["cat", "dog", "tree", "moon"]
    base = word_filter(unit(torch.tensor([0.0, 0, 0, 1])), percentile=100.0)
    wf = make_filter(base.words, base.word_embeddings, base.target_embedding, 100.0,
                     class_names=classes, source="cat")
    arms = [select_words(atlas, "cat", "dog", delta, wf, 6, 20),
            select_random_neurons(atlas, "cat", "dog", delta, wf, 6, 20, seed=0),
            select_random_neurons_own_words(atlas, "cat", "dog", delta, wf, 6, 20, seed=0),
            select_random_words("cat", "dog", wf, list(WORDS), 20, seed=0)]
    for selection in arms:
        words = {w.word for w in selection.words}
        assert not words & {"tree", "moon", "dogs"}, selection.arm
        dropped = {d["word"]: d["reason"] for d in selection.dropped}
        assert "class" in dropped.get("tree", "class") and "moon" in dropped, selection.arm


def test_random_neuron_arms_share_neurons_and_differ_in_scoring():
    delta = torch.tensor([1.0, 0.0, 0.0, 0.0])
    directions = unit(torch.randn(8, 4, generator=torch.Generator().manual_seed(2)))
    indices = torch.arange(8 * 3).reshape(8, 3) % len(WORDS)
    coefficients = torch.rand(8, 3, generator=torch.Generator().manual_seed(3)) + 0.1
    atlas = synthetic_atlas(directions, indices, coefficients)
    wf = word_filter(unit(torch.tensor([0.0, 0, 0, 1])), percentile=100.0)
    scored = select_random_neurons(atlas, "cat", "dog", delta, wf, 4, 20, seed=7)
    blind = select_random_neurons_own_words(atlas, "cat", "dog", delta, wf, 4, 20, seed=7)
    assert [n for n, _ in scored.neurons] == [n for n, _ in blind.neurons]
    # δ-blind: each word scores its largest coefficient over the chosen neurons, whatever δ.
    chosen = [int(name.split(".")[1]) for name, _ in blind.neurons]
    best = {}
    for neuron in chosen:
        for index, coefficient in zip(indices[neuron].tolist(), coefficients[neuron].tolist(),
                                      strict=True):
            best[WORDS[index]] = max(best.get(WORDS[index], 0.0), coefficient)
    assert {w.word: w.score for w in blind.words} == pytest.approx(
        {w: c for w, c in best.items() if w not in related_words(list(best), "dog", wf)})
    flipped = select_random_neurons_own_words(atlas, "cat", "dog", -delta, wf, 4, 20, seed=7)
    assert [w.word for w in flipped.words] == [w.word for w in blind.words]


def test_random_words_are_drawable_seeded_and_filtered():
    wf = word_filter(unit(torch.tensor([0.0, 0, 0, 1])), percentile=100.0)
    drawable = ["sun", "tree", "water", "red", "moon", "dogs"]
    one = select_random_words("cat", "dog", wf, drawable, 3, seed=5)
    assert [w.word for w in one.words] == [w.word for w in
                                           select_random_words("cat", "dog", wf, drawable, 3,
                                                               seed=5).words]
    assert len(one.words) == 3 and {w.word for w in one.words} <= set(drawable) - {"dogs"}
    everything = select_random_words("cat", "dog", wf, drawable, 10, seed=5)
    assert {w.word for w in everything.words} == set(drawable) - {"dogs"}


def record(arm, index, *, top1, kind, valid=True, margin=0.0, binary=None, failed=False):
    """A results.jsonl record; summaries read its verdict fields."""
    return AttackRecord(id=f"cat-dog/s0/{arm}/{index:04d}", arm=arm, index=index, source="cat",
                        target="dog", prompt="a cat", seed=index, model="m", failed=failed,
                        valid=valid, success=top1 if binary is None else binary,
                        top1_success=top1, kind=kind, margin=margin,
                        scores={"m": {"top1": "dog" if top1 else "cat", "margin": margin}})


def test_summary_rates_per_kind_with_the_contextual_headline():
    rows = [record("method", 0, top1=True, kind="contextual", margin=0.3),
            record("method", 1, top1=True, kind="typographic", margin=0.2),
            record("method", 2, top1=True, kind="distractor", valid=False, margin=0.9),
            record("method", 3, top1=False, kind="distractor", binary=True, margin=0.1),
            record("source-only", 0, top1=False, kind="contextual", margin=-0.2),
            record("source-only", 1, top1=False, kind="contextual", margin=-0.1)]
    method = summarize(rows)["method"]
    assert method["contextual_top1"]["successes"] == 1 and method["top1"]["successes"] == 2
    assert {k: v["successes"] for k, v in method["top1_by_kind"].items()} == {
        "contextual": 1, "typographic": 1, "distractor": 0}  # the invalid one does not count
    assert method["valid_success"]["successes"] == 3 and method["success"]["successes"] == 4
    assert method["contextual_top1"]["trials"] == 4
    assert method["mean_margin"] == pytest.approx(0.2)  # valid images only
    assert method["margin_shift"]["mean"] == pytest.approx(0.2 - (-0.15))


def test_old_records_without_the_new_fields_still_summarise():
    line = record("method", 0, top1=True, kind=None, margin=0.4).to_json()
    for key in ("top1_success", "kind", "margin", "schema"):
        del line[key]
    old = AttackRecord.from_json(line | {"verdict": {"valid": True}})
    assert old.top1_success and old.margin == 0.4 and old.kind is None
    summary = summarize([old])["method"]
    assert summary["top1"]["successes"] == 1 and summary["contextual_top1"]["successes"] == 0
    assert "margin_shift" not in summary


def test_verdict_round_trips_as_json_ready_dict():
    verdict = Verdict(True, True, True, False, "toy", distractors=("horse",), kind="typographic")
    assert verdict.as_dict()["distractors"] == ["horse"]


def test_bootstrap_is_seeded_exact_in_its_mean_and_calibrated():
    rng = np.random.default_rng(0)
    a, b = rng.normal(0.3, 1.0, 40), rng.normal(0.0, 0.5, 60)
    first = bootstrap_mean_difference(a, b, seed=3)
    assert first == bootstrap_mean_difference(a, b, seed=3)
    assert first != bootstrap_mean_difference(a, b, seed=4)
    assert first["mean"] == pytest.approx(float(a.mean() - b.mean()), abs=1e-12)
    low, high = first["ci95"]
    assert low < first["mean"] < high
    # Against the normal-theory interval (the slow obvious reference at this n): within 15%.
    half = 1.959964 * np.sqrt(a.var(ddof=1) / a.size + b.var(ddof=1) / b.size)
    assert (high - low) / 2 == pytest.approx(half, rel=0.15)
    # Coverage of the true difference over independent samples: near 95%.
    covered = 0
    for trial in range(200):
        x, y = rng.normal(1.0, 1.0, 30), rng.normal(0.5, 2.0, 30)
        interval = bootstrap_mean_difference(x, y, seed=trial, resamples=1000)["ci95"]
        covered += interval[0] <= 0.5 <= interval[1]
    assert 0.88 <= covered / 200 <= 0.99
    assert bootstrap_mean([], seed=0)["mean"] is None
    assert bootstrap_mean([2.0, 2.0], seed=0)["ci95"] == [2.0, 2.0]


def test_separated_intervals():
    assert separated([0.2, 0.4], [0.0, 0.1]) and not separated([0.2, 0.4], [0.1, 0.3])
    assert not separated([None, None], [0.0, 0.1])


class _FixedTower(torch.nn.Module):
    """encode_image returns the embedding stored in each image's first pixel row (a stub CLIP)."""

    def __init__(self):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))

    def encode_image(self, pixels):
        return pixels[:, 0, 0, :]


def test_clip_checker_estimates_validity_and_kind():
    from types import SimpleNamespace

    from neuronattack.attack.judge import ClipChecker, Judge

    names = ["cat", "dog", "ship", "horse", "sun", "frog", "tree"]
    rows = {  # image embeddings over the seven classes, then a text axis
        "plain cat": [1.0, 0, 0, 0, 0, 0, 0, 0], "cat and horse": [1.0, 0, 0, 0.995, 0, 0, 0, 0],
        "cat with text": [1.0, 0, 0, 0, 0, 0, 0, 1.0],
        "no cat": [-0.5, 0.3, 1.0, 0.3, 0.3, 0.3, 0.3, 0],
    }

    def preprocess(image):
        return torch.tensor(rows[image.info], dtype=torch.float32).reshape(1, 1, 8)

    clip = SimpleNamespace(model=_FixedTower(), preprocess=preprocess, spec="stub")
    classes = torch.cat([torch.eye(7), torch.zeros(7, 1)], dim=1)  # [classes, 8]
    text = torch.tensor([[0, 0, 0, 0, 0, 0, 0, 1.0], [0.2] * 7 + [0.0]])
    checker = ClipChecker(Judge(clip, names, classes), text)

    class Tagged:
        def __init__(self, tag):
            self.info = tag

        def convert(self, _mode):
            return self

    images = [Tagged(tag) for tag in rows]
    prompts = ["a cat", "a cat", "a cat", "a cat near the sun"]
    verdicts = checker.check(images, prompts, 0, 1)
    assert [v.kind for v in verdicts[:3]] == ["contextual", "distractor", "typographic"]
    assert verdicts[1].distractors == ("horse",)  # seen by the checker
    assert "sun" in verdicts[3].distractors  # named by the sentence
    assert all(v.valid for v in verdicts[:3])
    assert not verdicts[3].source_present and not verdicts[3].valid
