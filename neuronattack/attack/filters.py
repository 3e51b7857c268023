"""Which words are "the target in disguise" — a general rule, no hand-written list per class.

A word is dropped when it is lexically the target (a class-name token, an inflection of one, a
compound containing one), when CLIP's text tower places it unusually close to the target name (in
the top ``100 - percentile`` % of the vocabulary by cosine to the bare target name, a cut that
adapts to each model's similarity scale), or when the user blocks it. Every drop has a reason.

The class-word filter (on by default) also drops every word that names another class of the
judging class set than the source, in any lexical form ("dogs" for dog): such a word makes the
renderer draw that class, and an image that wins by showing a third class is a distractor, not the
shortcut the product looks for. A class is named by its whole name or its head noun (the last
token: "tiger cat" by "cat", "great white shark" by "shark"), inflections included; compounds are
not matched, so "catalog" survives. With ImageNet's 1000 classes this is a real trade-off: scene
classes such as seashore, valley and lakeside are also the contexts a shortcut lives in, and the
filter removes them (docs/success.md).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import Tensor

SHORT_TOKEN = 3  # tokens this short match compounds only at a word's start or end ("hotdog")


@dataclass(frozen=True)
class WordFilter:
    words: tuple[str, ...]  # the vocabulary the similarity cut is measured on
    word_embeddings: Tensor  # [words, out_dim]  unit, bare words
    target_embedding: Tensor  # [out_dim]  unit, the bare target name
    similarity_cutoff: float  # cosine at the percentile
    percentile: float
    block_list: frozenset[str] = frozenset()
    # The class-word filter: the judging class set's words and the source they may not name
    # besides; None when the filter is off.
    class_words: ClassWordIndex | None = None
    source: str = ""


def make_filter(
    words: Iterable[str], word_embeddings: Tensor, target_embedding: Tensor,
    percentile: float = 99.0, block_list: Iterable[str] = (),
    class_names: Iterable[str] | None = None, source: str = "",
) -> WordFilter:
    """``class_names`` turns the class-word filter on (every class but ``source``)."""
    words = tuple(words)
    similarity = word_embeddings @ target_embedding  # [words]
    cutoff = float(torch.quantile(similarity.float(), percentile / 100.0))
    return WordFilter(words, word_embeddings, target_embedding, cutoff, percentile,
                      frozenset(w.lower() for w in block_list),
                      None if class_names is None else class_word_index(class_names), source)


def stem(word: str) -> str:
    """A crude English stem, enough to match plurals and common inflections of class names."""
    word = word.lower().removesuffix("'s")
    for suffix, replacement, shortest in (("ies", "y", 5), ("ves", "f", 5), ("ches", "ch", 6),
                                          ("shes", "sh", 6), ("xes", "x", 5), ("sses", "ss", 6),
                                          ("ing", "", 6), ("ed", "", 5)):
        if word.endswith(suffix) and len(word) >= shortest:
            return word[: -len(suffix)] + replacement
    if word.endswith("s") and not word.endswith("ss") and len(word) > 3:
        return word[:-1]
    return word


def name_tokens(name: str) -> list[str]:
    return [token for token in re.split(r"[\s_\-/,']+", name.lower()) if len(token) >= 2]


def lexical_reason(word: str, target: str) -> str | None:
    """Why ``word`` is lexically the target, or None."""
    word = word.lower()
    joined = "".join(name_tokens(target))
    for token in (*name_tokens(target), joined):
        if word == token or stem(word) == stem(token):
            return f"a form of the target name '{target}'"
        if len(token) <= SHORT_TOKEN:
            if word.startswith(token) or word.endswith(token) or word.endswith(stem(token)):
                return f"a compound of the target token '{token}'"
        elif token in word or (len(word) > SHORT_TOKEN and word in token):
            return f"contains or is part of the target token '{token}'"
    return None


@dataclass(frozen=True)
class ClassWordIndex:
    """Which classes of a class set a word names: ``{form: classes}`` over whole names, joined
    names and head nouns, each also by its stem."""

    forms: dict[str, tuple[str, ...]]

    def classes_of(self, word: str) -> tuple[str, ...]:
        word = word.lower()
        # Nouns name classes: plurals are forms of a class name, verb forms are not
        # ("watching" does not name the class "digital watch").
        noun = not word.endswith(("ing", "ed"))
        return self.forms.get(word) or (self.forms.get(stem(word)) if noun else None) or ()


def class_word_index(class_names: Iterable[str]) -> ClassWordIndex:
    forms: dict[str, list[str]] = {}
    for name in class_names:
        tokens = name_tokens(name)
        if not tokens:
            continue
        for form in {name.lower(), "".join(tokens), tokens[-1]}:
            for key in (form, stem(form)):
                if name not in forms.setdefault(key, []):
                    forms[key].append(name)
    return ClassWordIndex({key: tuple(names) for key, names in forms.items()})


def class_word_reason(word: str, word_filter: WordFilter) -> str | None:
    """Why ``word`` names a class of the judging set other than the source, or None."""
    if word_filter.class_words is None:
        return None
    named = [name for name in word_filter.class_words.classes_of(word)
             if name.lower() != word_filter.source.lower()]
    return f"names the class '{named[0]}' of the judging class set" if named else None


def related_words(words: Iterable[str], target: str, word_filter: WordFilter) -> dict[str, str]:
    """``{word: reason}`` for every word to drop."""
    index = {word: i for i, word in enumerate(word_filter.words)}
    reasons = {}
    for word in words:
        lexical = lexical_reason(word, target) or class_word_reason(word, word_filter)
        if lexical:
            reasons[word] = lexical
        elif word.lower() in word_filter.block_list:
            reasons[word] = "on the user's block list"
        elif word in index:
            similarity = float(word_filter.word_embeddings[index[word]]
                               @ word_filter.target_embedding)
            if similarity >= word_filter.similarity_cutoff:
                reasons[word] = (f"CLIP text similarity {similarity:.3f} to '{target}' is in the "
                                 f"top {100 - word_filter.percentile:g}% of the vocabulary")
    return reasons
