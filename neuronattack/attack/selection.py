"""From a class pair to the words an attack sentence should use (method.md §6).

δ = e(target) − e(source). Neurons whose rank-one direction has the largest |r_n · δ| push an
image along δ (or against it); each of their words scores ``coefficient × (r_n · δ)``, so a word
scores high when writing it moves the embedding toward the target. Words tied to the target itself
are removed by ``filters.related_words`` (a general rule, no per-class list), so the attack cannot
succeed by simply drawing the target, and so are words naming any other class of the judging set
(the class-word filter, on by default), so it cannot win by drawing a third class either.

The baselines isolate one ingredient each, at the same number of words and through the same filter:
``random-neurons`` (random neurons, words still scored against δ: does choosing neurons matter?),
``random-neurons-own`` (the same random neurons, each word scored by its coefficient alone: does δ
matter?), ``random-words`` (words drawn at random from what the generator can draw: do neurons
matter at all?), ``similar-words`` (the words closest to the target) and ``source-only``.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field

import torch
from torch import Tensor

from neuronattack.attack.filters import WordFilter, related_words
from neuronattack.neurons.atlas import Atlas


@dataclass(frozen=True)
class ScoredWord:
    word: str
    score: float  # coefficient × (r_n · δ) of its best neuron
    neuron: str  # "layer.index" of that neuron
    coefficient: float
    projection: float  # r_n · δ


@dataclass(frozen=True)
class Selection:
    """What an attack arm writes with, and why; serialisable with ``as_dict``."""

    source: str
    target: str
    arm: str
    neurons: list[tuple[str, float]]  # ("layer.index", r_n · δ), strongest first
    words: list[ScoredWord]
    dropped: list[dict] = field(default_factory=list)  # {"word", "reason", "score"}

    def as_dict(self) -> dict:
        return {"source": self.source, "target": self.target, "arm": self.arm,
                "neurons": [{"neuron": name, "projection": value} for name, value in self.neurons],
                "words": [asdict(word) for word in self.words], "dropped": self.dropped}


def neuron_projections(atlas: Atlas, delta: Tensor) -> list[tuple[int, int, float]]:
    """``(layer, neuron, r_n · δ)`` for every neuron of the atlas; delta ``[out_dim]``."""
    rows = []
    for layer in atlas.layers:
        fit = atlas.directions[layer]
        projections = fit.direction @ delta.to(fit.direction)
        rows += [(layer, int(n), float(p)) for n, p in zip(fit.neurons, projections, strict=True)]
    return rows


def score_words(atlas: Atlas, neurons: list[tuple[int, int, float]]) -> list[ScoredWord]:
    """Each word's best score over the given neurons, positive scores only, best first."""
    best: dict[str, ScoredWord] = {}
    for layer, neuron, projection in neurons:
        code = atlas.codes[layer]
        row = atlas.position(layer, neuron)
        for index, coefficient in zip(code.word_indices[row].tolist(),
                                      code.word_coefficients[row].tolist(), strict=True):
            score = coefficient * projection
            if coefficient == 0 or score <= 0:
                continue
            word = atlas.words[index]
            if word not in best or score > best[word].score:
                best[word] = ScoredWord(word, score, f"{layer}.{neuron}", coefficient, projection)
    return sorted(best.values(), key=lambda w: (-w.score, w.word))


def select_words(
    atlas: Atlas, source: str, target: str, delta: Tensor, word_filter: WordFilter,
    n_neurons: int = 100, n_words: int = 50,
) -> Selection:
    """The method: the neurons most aligned with δ, their target-unrelated words."""
    projections = neuron_projections(atlas, delta)
    chosen = sorted(projections, key=lambda row: -abs(row[2]))[:n_neurons]
    return _finish(atlas, source, target, "method", chosen, word_filter, n_words)


def select_random_neurons(
    atlas: Atlas, source: str, target: str, delta: Tensor, word_filter: WordFilter,
    n_neurons: int = 100, n_words: int = 50, seed: int = 0,
) -> Selection:
    """Baseline: as many neurons drawn at random, their words scored the same way."""
    projections = neuron_projections(atlas, delta)
    chosen = random.Random(seed).sample(projections, min(n_neurons, len(projections)))
    return _finish(atlas, source, target, "random-neurons", chosen, word_filter, n_words)


def select_random_neurons_own_words(
    atlas: Atlas, source: str, target: str, delta: Tensor, word_filter: WordFilter,
    n_neurons: int = 100, n_words: int = 50, seed: int = 0,
) -> Selection:
    """Baseline: the random neurons of ``select_random_neurons`` (same seed, same neurons), each
    word scored by its own coefficient, blind to δ: a neuron's strongest words, whatever the
    pair. δ only labels the neurons in the selection file."""
    projections = neuron_projections(atlas, delta)
    chosen = random.Random(seed).sample(projections, min(n_neurons, len(projections)))
    blind = [(layer, neuron, 1.0) for layer, neuron, _ in chosen]
    neurons = [(f"{layer}.{neuron}", projection) for layer, neuron, projection in chosen]
    return _filtered(source, target, "random-neurons-own", neurons, score_words(atlas, blind),
                     word_filter, n_words)


def select_random_words(
    source: str, target: str, word_filter: WordFilter, drawable: list[str], n_words: int = 50,
    seed: int = 0,
) -> Selection:
    """Baseline: words drawn at random from ``drawable`` (what the generator can draw), through
    the same filter."""
    order = random.Random(seed).sample(list(drawable), len(drawable))
    words = [ScoredWord(word, float(len(order) - rank), "", 0.0, 0.0)
             for rank, word in enumerate(order)]
    return _filtered(source, target, "random-words", [], words, word_filter, n_words)


def select_similar_words(
    source: str, target: str, word_filter: WordFilter, n_words: int = 50,
) -> Selection:
    """Baseline: the vocabulary words most similar to the target that survive the filter."""
    similarity = word_filter.word_embeddings @ word_filter.target_embedding  # [words]
    order = similarity.argsort(descending=True).tolist()
    words = [ScoredWord(word_filter.words[i], float(similarity[i]), "", 0.0, 0.0) for i in order]
    return _filtered(source, target, "similar-words", [], words, word_filter, n_words)


def source_only(source: str, target: str) -> Selection:
    """Baseline: the source alone, no words."""
    return Selection(source, target, "source-only", [], [])


def _finish(atlas, source, target, arm, chosen, word_filter, n_words) -> Selection:
    neurons = [(f"{layer}.{neuron}", projection) for layer, neuron, projection in chosen]
    return _filtered(source, target, arm, neurons, score_words(atlas, chosen), word_filter,
                     n_words)


def _filtered(source, target, arm, neurons, words, word_filter, n_words) -> Selection:
    reasons = related_words([w.word for w in words], target, word_filter)
    kept = [w for w in words if w.word not in reasons and w.word != source.lower()][:n_words]
    dropped = [{"word": w.word, "reason": reasons[w.word], "score": w.score}
               for w in words if w.word in reasons]
    # Arms that rank the whole vocabulary report only what was dropped from the part of the
    # ranking they would have used.
    cutoff = kept[-1].score if kept else float("inf")
    dropped = [d for d in dropped
               if d["score"] >= cutoff or arm not in ("similar-words", "random-words")][:200]
    return Selection(source, target, arm, neurons, kept, dropped)


def class_delta(target_embedding: Tensor, source_embedding: Tensor) -> Tensor:
    """δ = e(target) − e(source) from unit class embeddings ``[out_dim]`` each."""
    return (target_embedding - source_embedding).to(torch.float32)
