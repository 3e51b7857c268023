"""English inflection for the writers: plurals, 'a' or 'an', and whether a noun is plural."""

from __future__ import annotations

import re

from neuronattack.writing.lexicon import word_set

_IRREGULAR_PLURALS = {
    "man": "men", "woman": "women", "child": "children", "person": "people", "mouse": "mice",
    "goose": "geese", "foot": "feet", "tooth": "teeth", "ox": "oxen", "leaf": "leaves",
    "knife": "knives", "wife": "wives", "life": "lives", "wolf": "wolves", "half": "halves",
    "shelf": "shelves", "loaf": "loaves", "calf": "calves", "thief": "thieves", "cactus": "cacti",
    "fungus": "fungi", "sheep": "sheep", "deer": "deer", "fish": "fish", "moose": "moose",
}  # fmt: skip
# Nouns in -man that are not compounds of "man".
_MAN_NOT_MEN = word_set("human german roman shaman talisman caiman cayman ottoman")
_IRREGULAR_PLURAL_FORMS = frozenset(_IRREGULAR_PLURALS.values()) - {"sheep", "deer", "fish"}

_A_BEFORE_VOWEL = ("uni", "use", "usu", "uti", "ure", "uro", "eu", "ewe", "one", "once", "ufo")
_AN_BEFORE_H = ("hour", "honest", "honor", "honour", "heir")


def plural(noun: str) -> str:
    """The usual plural of a noun or of a phrase's last word ("box" → "boxes")."""
    head, _, last = noun.rpartition(" ")
    lower = last.lower()
    if lower in _IRREGULAR_PLURALS:
        form = last[: len(last) - len(lower)] + _IRREGULAR_PLURALS[lower]
    elif lower.endswith("man") and len(lower) > 3 and lower not in _MAN_NOT_MEN:
        form = last[:-3] + "men"
    elif re.search(r"[^aeiou]y$", lower):
        form = last[:-1] + "ies"
    elif lower.endswith(("s", "x", "z", "ch", "sh")):
        form = last + "es"
    else:
        form = last + "s"
    return f"{head} {form}" if head else form


def indefinite_article(phrase: str) -> str:
    """'a' or 'an' for the phrase that follows, by its first word's sound (roughly spelled)."""
    word = phrase.lower().lstrip("'\"(")
    if word.startswith(_AN_BEFORE_H):
        return "an"
    return "an" if word[:1] in tuple("aeiou") and not word.startswith(_A_BEFORE_VOWEL) else "a"


def is_plural(word: str) -> bool:
    """Whether a noun (or a phrase's last word) is written as a plural ("elephants", "mice")."""
    lower = word.lower().rsplit(" ", 1)[-1]
    if lower in _IRREGULAR_PLURAL_FORMS:
        return True
    return (
        len(lower) > 3
        and lower.endswith("s")
        and not lower.endswith(("ss", "us", "is", "ous", "ics", "ness"))
    )
