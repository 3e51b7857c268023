"""Neuron and word selection, the target filter, the judge's arithmetic, confidence intervals."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from neuronattack.attack.filters import lexical_reason, make_filter, related_words, stem
from neuronattack.attack.judge import judge_embeddings
from neuronattack.attack.selection import (
    score_words,
    select_random_neurons,
    select_similar_words,
    select_words,
)
from neuronattack.attack.stats import wilson_interval
from neuronattack.neurons.atlas import Atlas, WordCodes
from neuronattack.neurons.directions import RankOneDirections

WORDS = ["sun", "elephant", "value", "puppy", "dogs", "hotdog", "tree", "water", "red", "moon"]


def unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True)


def synthetic_atlas(directions: torch.Tensor, indices: torch.Tensor, coefficients: torch.Tensor
                    ) -> Atlas:
    """One block (9) whose neurons have the given directions and word codes."""
    count = directions.shape[0]
    fit = RankOneDirections(
        layer=9, neurons=torch.arange(count), direction=directions,
        mean_effect=torch.zeros_like(directions), variance_explained=torch.ones(count),
        singular_value=torch.ones(count), threshold=torch.ones(count),
        top_norms=torch.ones(count, 1), top_images=torch.zeros(count, 1, dtype=torch.long),
        convention="centred",
    )
    codes = WordCodes(indices, coefficients, torch.ones(count), directions)
    return Atlas(Path("."), {"settings": {"convention": "centred"}}, {"words": WORDS}, {9: fit},
                 {9: codes}, None, ())


def word_filter(target_embedding, percentile=90.0, block=()):
    generator = torch.Generator().manual_seed(0)
    embeddings = unit(torch.randn(len(WORDS), 4, generator=generator))
    return make_filter(WORDS, embeddings, target_embedding, percentile, block)


def test_stem_and_lexical_rule():
    assert stem("puppies") == "puppy" and stem("boxes") == "box" and stem("dogs") == "dog"
    assert lexical_reason("dogs", "dog") and lexical_reason("Dog", "dog")
    assert lexical_reason("hotdog", "dog") and lexical_reason("retrievers", "golden retriever")
    assert lexical_reason("golden", "golden retriever")
    assert lexical_reason("puppy", "dog") is None and lexical_reason("sun", "dog") is None
    assert lexical_reason("education", "cat") is None  # short tokens match only at the ends


def test_similarity_cut_is_a_vocabulary_percentile():
    target = unit(torch.tensor([1.0, 0.5, 0.0, 0.0]))
    wf = word_filter(target, percentile=80.0)
    similarity = wf.word_embeddings @ target
    reasons = related_words(WORDS, "giraffe", wf)
    by_similarity = {w for w, s in zip(WORDS, similarity.tolist(), strict=True)
                     if s >= wf.similarity_cutoff}
    assert len(by_similarity) == 2  # the top 20% of ten words
    assert set(reasons) == by_similarity
    assert all("top 20%" in reasons[w] for w in by_similarity)
    blocked = related_words(["tree"], "giraffe", word_filter(target, 100.0, block=["TREE"]))
    assert blocked == {"tree": "on the user's block list"}


def test_method_picks_aligned_neurons_and_scores_words():
    delta = torch.tensor([1.0, 0.0, 0.0, 0.0])
    directions = unit(torch.tensor([[1.0, 0.1, 0, 0], [-0.9, 1, 0, 0], [0.05, 1, 0, 0]]))
    indices = torch.tensor([[0, 1, 4], [2, 3, 0], [6, 7, 8]])
    coefficients = torch.tensor([[0.5, -0.2, 0.3], [-0.4, 0.1, 0.1], [0.9, 0.9, 0.9]])
    atlas = synthetic_atlas(directions, indices, coefficients)
    wf = word_filter(unit(torch.tensor([0.0, 0, 0, 1])), percentile=100.0)
    selection = select_words(atlas, "cat", "dog", delta, wf, n_neurons=2, n_words=10)
    assert [name for name, _ in selection.neurons] == ["9.0", "9.1"]  # |r·δ| 0.995, 0.67
    scores = {w.word: w.score for w in selection.words}
    p0, p1 = float(directions[0] @ delta), float(directions[1] @ delta)
    # "sun" scores on both neurons (0.5·p0 and 0.1·p1 < 0): the best one counts.
    assert scores["sun"] == pytest.approx(0.5 * p0)
    assert scores["value"] == pytest.approx(-0.4 * p1)  # negative coef × negative projection
    assert "elephant" not in scores  # −0.2 × p0 < 0 pushes away from the target
    assert "puppy" not in scores  # 0.1 × p1 < 0
    assert [d["word"] for d in selection.dropped] == ["dogs"]  # lexical: a form of "dog"
    assert list(scores) == sorted(scores, key=lambda w: -scores[w])
    assert score_words(atlas, [(9, 2, 0.05)])[0].word in {"tree", "water", "red"}


def test_baselines():
    delta = torch.tensor([1.0, 0.0, 0.0, 0.0])
    directions = unit(torch.randn(6, 4, generator=torch.Generator().manual_seed(1)))
    indices = torch.arange(6 * 3).reshape(6, 3) % len(WORDS)
    atlas = synthetic_atlas(directions, indices, torch.ones(6, 3))
    target = unit(torch.tensor([0.2, 1.0, 0.3, 0.0]))
    wf = word_filter(target, percentile=95.0)
    one = select_random_neurons(atlas, "cat", "dog", delta, wf, n_neurons=3, seed=4)
    again = select_random_neurons(atlas, "cat", "dog", delta, wf, n_neurons=3, seed=4)
    assert one.neurons == again.neurons and len(one.neurons) == 3
    similar = select_similar_words("cat", "dog", wf, n_words=4)
    similarity = wf.word_embeddings @ target
    survivors = [w for w in sorted(WORDS, key=lambda w: -float(similarity[WORDS.index(w)]))
                 if w not in related_words(WORDS, "dog", wf)]
    assert [w.word for w in similar.words] == survivors[:4]


def test_judge_arithmetic():
    classes = torch.eye(3)
    embeddings = unit(torch.tensor([[0.2, 1.0, 0.1], [1.0, 0.5, 0.0]]))
    first, second = judge_embeddings(embeddings, classes, ["cat", "dog", "ship"], 0, 1)
    assert first.success and not second.success
    assert first.margin == pytest.approx(float(embeddings[0, 1] - embeddings[0, 0]))
    assert first.top1 == "dog" and second.top5 == ["cat", "dog", "ship"]
    assert first.p_target == pytest.approx(1.0) and first.p_target > first.p_source


def test_wilson_interval_known_values():
    assert wilson_interval(0, 0) == (0.0, 1.0)
    low, high = wilson_interval(5, 10)
    assert low == pytest.approx(0.2366, abs=1e-4) and high == pytest.approx(0.7634, abs=1e-4)
    low, high = wilson_interval(0, 10)
    assert low == 0.0 and high == pytest.approx(0.2775, abs=1e-4)
