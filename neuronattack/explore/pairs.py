"""Per class pair, the neurons and words an attack would use: the attack's own selection.

δ is the difference of the two class embeddings the attack's judge uses (the same templates), the
target filter is the attack's (lexical forms, CLIP similarity percentile), and the ranking is
``attack.selection.select_words``; nothing here re-implements them. The class-word filter needs
the judging class set and is left off: the explorer shows a pair, not a campaign.
"""

from __future__ import annotations

import torch

from neuronattack.attack.settings import AttackSettings
from neuronattack.errors import NeuronAttackError


def parse_pairs(texts: tuple[str, ...]) -> list[tuple[str, str]]:
    """``("cat:dog", ...)`` -> ``[("cat", "dog"), ...]``."""
    pairs = []
    for text in texts:
        source, sep, target = text.partition(":")
        if not sep or not source.strip() or not target.strip():
            raise NeuronAttackError(
                f"--pair takes SOURCE:TARGET, e.g. --pair cat:dog; got {text!r}.")
        pairs.append((source.strip(), target.strip()))
    return pairs


def pair_views(atlas, clip, pairs: list[tuple[str, str]],
               n_neurons: int = AttackSettings.n_neurons, n_words: int = AttackSettings.n_words,
               percentile: float = AttackSettings.similarity_percentile) -> list[dict]:
    """For each (source, target): the method's neurons (``r·δ``), kept words and dropped words."""
    from neuronattack.attack.filters import make_filter
    from neuronattack.attack.selection import class_delta, select_words
    from neuronattack.models.zeroshot import class_embeddings, judge_templates, text_embedding
    from neuronattack.neurons.text_dictionary import cached_encodings
    from neuronattack.neurons.vocabulary import Vocabulary, word_list_hash

    if not pairs:
        return []
    words = tuple(atlas.words)
    encoded = cached_encodings(clip, Vocabulary(words, "atlas", word_list_hash(words), {}))
    word_embeddings = torch.nn.functional.normalize(encoded.float(), dim=-1)  # [words, out_dim]
    views = []
    for source, target in pairs:
        classes = class_embeddings(clip, [source, target], judge_templates(clip))  # [2, out_dim]
        delta = class_delta(classes[1], classes[0])
        word_filter = make_filter(words, word_embeddings, text_embedding(clip, target),
                                  percentile, source=source)
        selection = select_words(atlas, source, target, delta, word_filter, n_neurons, n_words)
        views.append(selection.as_dict())
    return views
