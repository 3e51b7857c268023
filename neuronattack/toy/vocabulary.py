"""The toy world's words: a dictionary for word decompositions, and every word a caption can use.

The decomposition dictionary holds the world's concepts and nothing else, so an atlas of the toy
CLIP reads in the world's terms ("+water +striped -moon"). Glyphs appear as "letter k" and
"number 7" because single characters embed as characters, not as the sign that shows them.
"""

from __future__ import annotations

from neuronattack.toy.world import (
    BACKGROUNDS,
    CLASSES,
    COLOURS,
    COUNT_WORDS,
    DIGITS,
    FILLER_WORDS,
    LETTERS,
    PATTERNS,
    PLAIN,
    PLURALS,
    PROPS,
)


def toy_words() -> list[str]:
    """The world's concept words and phrases (about 100), grouped by kind, without repeats."""
    groups = [
        CLASSES,
        [PLURALS[cls] for cls in CLASSES if PLURALS[cls] != cls],
        tuple(COLOURS),
        tuple(PATTERNS),
        tuple(PATTERNS.values()),
        [bg for bg in BACKGROUNDS if bg != PLAIN],
        PROPS,
        ("sign", "letter", "number"),
        [f"letter {letter}" for letter in LETTERS],
        [f"number {digit}" for digit in DIGITS],
        tuple(COUNT_WORDS.values()),
    ]
    return [word for group in groups for word in group]


def caption_words() -> list[str]:
    """Every token text a caption or zero-shot prompt of the world can contain, sorted.

    The toy CLIP trains exactly the token embeddings of these (see ``neuronattack.toy.model``).
    """
    words = {part for phrase in toy_words() for part in phrase.split()}
    return sorted(words | set(LETTERS) | set(DIGITS) | FILLER_WORDS | {","})
