"""Words in text: whole words, any case, plurals included; and the filter every writer's lines
pass (the source named, no forbidden word, no written text in the image)."""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from functools import lru_cache

from neuronattack.writing.inflection import noun_plurals, plural
from neuronattack.writing.lexicon import word_set

# Words that ask for written text in the image. Templates may not contain them, and a line that
# does is dropped unless the source or a chosen word itself brings the word ("stop sign").
TEXT_WORDS = word_set(
    "sign signboard label labeled labelled caption captioned text lettering letter word written "
    "writing inscription inscribed reads says saying spelled spelling logo banner poster "
    "billboard placard plaque typography font slogan graffiti headline"
)
QUOTED = re.compile(r"[\"“”«»]|(?:^|[\s(])['‘][^'’]+['’](?=$|[\s,.;:!?)])")


def _forms(word: str) -> set[str]:
    """Every written form :func:`contains_word` accepts for one lowercase word.

    Generous on purpose (both "-s" and "-es", "-ves" for "-f"): for forbidden words a false
    match only costs a retry, while a missed plural would let the target through.
    """
    forms = {word, plural(word), *noun_plurals(word), f"{word}s", f"{word}es"}
    if re.search(r"[^aeiou]y$", word):
        forms.add(f"{word[:-1]}ies")
    if word.endswith("f"):
        forms.add(f"{word[:-1]}ves")
    if word.endswith("fe"):
        forms.add(f"{word[:-2]}ves")
    return forms


@lru_cache(maxsize=8192)
def _word_pattern(word: str) -> str:
    """A regex for a word or phrase as a whole word, its last word in any plural form."""
    tokens = re.split(r"[\s\-]+", word.strip().lower())
    last = "|".join(sorted((re.escape(form) for form in _forms(tokens[-1])), key=len, reverse=True))
    # Hyphens count as spaces, so "hot-dog" is "hot dog"; apostrophes end a word ("dog's").
    body = r"[\s\-]+".join([*map(re.escape, tokens[:-1]), f"(?:{last})"])
    return rf"(?<!\w){body}(?!\w)"


@lru_cache(maxsize=256)
def _any_word_regex(words: frozenset[str]) -> re.Pattern[str] | None:
    """One compiled regex for many words: forbidden lists run to hundreds of entries."""
    patterns = [_word_pattern(word) for word in sorted(words) if word.strip()]
    return re.compile("|".join(patterns), re.IGNORECASE) if patterns else None


def contains_word(text: str, word: str) -> bool:
    """Whether ``text`` contains ``word`` as a whole word, in any case, or a plural of it.

    ``word`` may be a phrase ("golden retriever"); its last word takes the plural. "dog" is in
    "Dogs", "dog's" and "dog-friendly" but not in "hotdog"; "puppy" is in "puppies".
    """
    if not word.strip():
        return False
    return re.search(_word_pattern(word), text, re.IGNORECASE) is not None


def _without_source(text: str, source: str) -> str:
    """The text with every mention of the source blanked out.

    When a forbidden token is part of the source name (tiger cat → tabby cat forbids "cat") the
    source must still be nameable, so only mentions outside the source name count against a line.
    """
    return re.sub(_word_pattern(source), " ", text, flags=re.IGNORECASE)


def normalised(forbidden: Collection[str]) -> frozenset[str]:
    """Forbidden words as a hashable set, the key of the compiled-regex cache."""
    return frozenset(" ".join(word.lower().split()) for word in forbidden if word.strip())


def mentions_forbidden(text: str, source: str, forbidden: frozenset[str]) -> bool:
    """Whether ``text`` names a forbidden word (see :func:`normalised`) outside the source name."""
    regex = _any_word_regex(forbidden)
    return regex is not None and regex.search(_without_source(text, source)) is not None


def post_filter(lines: Iterable[str], source: str, forbidden: Collection[str]) -> list[str]:
    """The lines that name ``source`` and no forbidden word, whitespace-normalised, deduplicated.

    Mentions inside the source name itself are not held against a line (see
    :func:`_without_source`); order is kept and only the first copy of a line (ignoring case).
    """
    forbidden = normalised(forbidden)
    kept, seen = [], set()
    for line in lines:
        text = " ".join(line.split())
        key = text.lower()
        if not text or key in seen or not contains_word(text, source):
            continue
        if mentions_forbidden(text, source, forbidden):
            continue
        seen.add(key)
        kept.append(text)
    return kept


def mentions_text(line: str, allowed: Iterable[str] = ()) -> bool:
    """Whether a line asks for written text in the image (a sign, a label, quoted words).

    Words that the source or a chosen word brings ("stop sign", "letter k") are allowed: they are
    the objects asked for, not text the writer added.
    """
    if QUOTED.search(line):
        return True
    allowed = list(allowed)
    return any(
        contains_word(line, term) and not any(contains_word(phrase, term) for phrase in allowed)
        for term in TEXT_WORDS
    )


def words_in(text: str, words: Iterable[str]) -> tuple[str, ...]:
    """The words that appear in ``text`` (see :func:`contains_word`), in their given order."""
    return tuple(word for word in words if contains_word(text, word))


def usable_words(words: Iterable[str], source: str, forbidden: Collection[str]) -> list[str]:
    """The chosen words a sentence may use: whitespace-normalised, deduplicated (ignoring case),
    without empty entries and without any that contain a forbidden word."""
    forbidden = normalised(forbidden)
    kept, seen = [], set()
    for word in words:
        text = " ".join(word.split())
        if text and text.lower() not in seen and not mentions_forbidden(text, source, forbidden):
            seen.add(text.lower())
            kept.append(text)
    return kept
