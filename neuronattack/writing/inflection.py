"""English inflection for the writers, from two maintained libraries instead of our own rules.

- ``inflect`` says 'a' or 'an' by sound ("an hour", "a unicorn", "a European") and writes
  plurals by rule, including the irregular ones ("mice", "sheep", "people", "firemen").
- ``lemminflect``'s bundled lexicon (about 80,000 English words) knows which forms are plurals
  ("leaves", "mice"), the plural spellings of each noun ("cacti", "cactuses"), and a word's
  classes (noun, verb, adjective...) with its verb forms ("sleeping" is a form of "sleep").

Where inflect's rules misspell a noun that lemminflect's lexicon knows ("egoes", "thiefs",
"gentlemans"), the lexicon's spelling wins; what both get wrong for our sentences is in
:mod:`neuronattack.writing.overrides`. inflect is imported on first use: its import takes
seconds (jaraco/inflect#212), and most commands never write a sentence.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

from neuronattack.writing.overrides import ARTICLES, PLURALS

if TYPE_CHECKING:
    import inflect

# inflect's number words from two up; "one" is a determiner ("one cat").
_NUMBERS = range(2, 100)
_LARGE_NUMBERS = ("hundred", "thousand", "million", "billion")


@lru_cache(maxsize=1)
def _engine() -> inflect.engine:
    import inflect

    return inflect.engine()


@lru_cache(maxsize=16384)
def noun_plurals(noun: str) -> tuple[str, ...]:
    """The plural spellings lemminflect's lexicon lists for a lowercase noun, preferred first;
    () for a word it does not know as a noun."""
    from lemminflect import getAllInflections

    return tuple(getAllInflections(noun, upos="NOUN").get("NNS", ()))


@lru_cache(maxsize=16384)
def word_classes(word: str) -> dict[str, tuple[str, ...]]:
    """lemminflect's universal POS tags for a lowercase word, each with the word's lemmas
    ("leaves": NOUN leaf and leave, VERB leave); {} for a word outside its lexicon."""
    from lemminflect import getAllLemmas

    return dict(getAllLemmas(word))


@lru_cache(maxsize=16384)
def verb_forms(word: str) -> frozenset[str]:
    """The Penn tags a lowercase word has as a form of a verb other than itself: ``VBG``
    ("sleeping"), ``VBN`` ("painted"), ``VBD`` ("saw"), ``VBZ`` ("travels")."""
    from lemminflect import getAllInflections

    tags = set()
    for lemma in word_classes(word).get("VERB", ()):
        if lemma != word:
            forms = dict(getAllInflections(lemma, upos="VERB"))
            # The lexicon leaves out a participle spelled like the past tense ("painted").
            forms.setdefault("VBN", forms.get("VBD", ()))
            tags |= {tag for tag, spellings in forms.items() if word in spellings}
    return frozenset(tags)


def plural(noun: str) -> str:
    """The plural of a noun or of a phrase's last word ("box" → "boxes", "mouse" → "mice").

    inflect writes it; when lemminflect's lexicon knows the noun and does not list inflect's
    spelling among its plurals, the lexicon's preferred spelling is used instead.
    """
    head, _, last = noun.rpartition(" ")
    form = _plural_word(last.lower())
    if last[:1].isupper():
        form = form[:1].upper() + form[1:]
    return f"{head} {form}" if head else form


@lru_cache(maxsize=16384)
def _plural_word(word: str) -> str:
    return PLURALS[word][0] if word in PLURALS else libraries_plural(word)


def libraries_plural(word: str) -> str:
    """The plural of a lowercase noun by the libraries alone, without ``overrides.PLURALS``."""
    guess = _engine().plural_noun(word)
    known = noun_plurals(word)
    # A lexicon entry whose only plural is the word itself marks an uncountable noun ("casino"
    # is listed so too): inflect's count plural is the one a number asks for.
    if known and known != (word,) and guess not in known:
        return known[0]
    if not known and word.endswith("man") and guess == f"{word[:-3]}men":
        return f"{word}s"  # the -man rule in overrides' docstring
    return guess


def indefinite_article(phrase: str) -> str:
    """'a' or 'an' for the phrase that follows, by the sound of its first word (inflect)."""
    text = phrase.lstrip("'\"(").strip()
    if not text:
        return "a"
    first = text.split(maxsplit=1)[0]
    if first.lower() in ARTICLES:
        return ARTICLES[first.lower()][0]
    return inflect_article(text)


def inflect_article(phrase: str) -> str:
    """inflect's 'a' or 'an' for a phrase, without ``overrides.ARTICLES``."""
    return _engine().a(phrase).split(" ", 1)[0].lower()


def is_plural(word: str) -> bool:
    """Whether a noun (or a phrase's last word) is written as a plural ("elephants", "mice").

    lemminflect's lexicon decides for the words it knows: a form of another noun ("glasses" of
    "glass", "data" of "datum"; "sheep" and "news" are their own singulars). A noun it lists
    with no plural but itself is plural when inflect reads it as the plural of a noun the lexicon
    knows ("travels", "dynamics"; not "news", "species"). inflect's rules decide for words
    outside the lexicon ("iphones").
    """
    lower = word.lower().rsplit(" ", 1)[-1]
    if lower in {form for form, _ in PLURALS.values()}:
        return True
    lemmas = word_classes(lower).get("NOUN")
    if lemmas is None:
        return bool(_engine().singular_noun(lower))
    if any(lemma != lower for lemma in lemmas):
        return True
    if noun_plurals(lower) not in ((), (lower,)):
        return False
    singular = _engine().singular_noun(lower)
    return bool(singular) and singular != lower and "NOUN" in word_classes(singular)


@lru_cache(maxsize=1)
def number_words() -> frozenset[str]:
    """Cardinal numbers from two as words ("two", "thirteen", "ninety"), from inflect."""
    engine = _engine()
    return frozenset(engine.number_to_words(n) for n in _NUMBERS) | frozenset(_LARGE_NUMBERS)
