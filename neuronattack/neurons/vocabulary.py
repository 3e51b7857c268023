"""The words a neuron direction is decomposed over.

A vocabulary is an ordered list of strings (single words or short descriptions) whose CLIP text
embeddings form the dictionary of the sparse decomposition. It comes either from wordfreq's
English frequency list, cleaned so every entry is a plain lowercase word, or from a text file the
user wrote. Either way the list is deterministic and identified by a short hash, so embeddings
computed for it can be cached under (model spec, vocabulary hash).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path

import wordfreq

from neuronattack.errors import NeuronAttackError
from neuronattack.models.text_encoding import word_list_hash
from neuronattack.neurons.settings import DEFAULT_COMMON_WORDS
from neuronattack.resources import PROFANITY_LIST
from neuronattack.validation import parser_refusal

WORDFREQ_VERSION = version("wordfreq")
# Pinned to 'large' rather than wordfreq's default 'best': 'best' is a policy that picks 'large'
# for English today, and the vocabulary should name the exact list it was cut from.
WORDFREQ_LANGUAGE = "en"
WORDFREQ_WORDLIST = "large"
WORDFREQ_LICENCE = (
    "wordfreq data CC-BY-SA 4.0 (code Apache-2.0); see neuronattack/resources/words/README.md"
)


# ASCII letters only: wordfreq's tokens are already case-folded, so anything else is a
# contraction, number, abbreviation, accented or foreign word, or symbol, none of which we want as
# a dictionary atom. Single letters are excluded because they embed as letters, not concepts.
_CLEAN_WORD = re.compile(r"[a-z]{2,}")

_COMMON_SPEC = re.compile(r"common(?::(?P<n>\d+))?(?::(?P<clean>clean))?")


@dataclass(frozen=True)
class Vocabulary:
    """An ordered word list plus where it came from.

    ``hash`` is ``word_list_hash(words)``: two vocabularies with the same words in the same order
    share embeddings whatever their source. ``info`` is provenance for reports and manifests.
    """

    words: tuple[str, ...]
    source: str
    hash: str
    # Out of eq and hash: provenance does not change the vocabulary, and a dict field would make
    # the instance unhashable (it is a natural cache key).
    info: dict = field(compare=False)


def is_clean_word(token: str) -> bool:
    """Whether a wordfreq token is usable as a vocabulary word (lowercase a-z, two or more)."""
    return _CLEAN_WORD.fullmatch(token) is not None


def clean_tokens(tokens: Iterable[str], blocked: frozenset[str] = frozenset()) -> list[str]:
    """Keep clean, unblocked tokens in their given order, first occurrence of each only.

    Tokens are dropped, never rewritten, so every word kept is one wordfreq actually counted.
    """
    seen: set[str] = set()
    kept = []
    for token in tokens:
        if is_clean_word(token) and token not in blocked and token not in seen:
            seen.add(token)
            kept.append(token)
    return kept


def profanity_words() -> frozenset[str]:
    """The block list shipped in ``neuronattack/resources/words/profanity.txt``, lowercased."""
    if not PROFANITY_LIST.is_file():
        raise NeuronAttackError(
            f"The profanity block list {PROFANITY_LIST} is missing from this install; reinstall "
            "neuronattack or drop ':clean' from the vocabulary spec."
        )
    return frozenset(word.lower() for word in read_word_list(PROFANITY_LIST))


def common_english_words(
    n: int = DEFAULT_COMMON_WORDS, profanity_filter: bool = False
) -> list[str]:
    """The ``n`` most frequent clean English words, most frequent first.

    Clean means lowercase a-z only and at least two letters (see ``is_clean_word``); about 3% of
    wordfreq's top 30k tokens are not, so we ask for more tokens than ``n`` and cut. With
    ``profanity_filter`` the words in ``profanity.txt`` are skipped and the next clean words take
    their place, so the result still has exactly ``n`` words. The result depends only on the
    wordfreq version (its data ships inside the package), never on the machine.
    """
    if n < 1:
        raise NeuronAttackError(f"Asked for {n} common words; ask for at least 1.")
    blocked = profanity_words() if profanity_filter else frozenset()
    # A quarter more than n covers the rejected tokens at every size in wordfreq 3.1 (about 10%
    # even at the bottom of the list), so one fetch is the normal case; the loop is for other data.
    requested = n + n // 4 + 1000
    while True:
        tokens = wordfreq.top_n_list(WORDFREQ_LANGUAGE, requested, wordlist=WORDFREQ_WORDLIST)
        words = clean_tokens(tokens, blocked)
        if len(words) >= n:
            return words[:n]
        if len(tokens) < requested:
            raise NeuronAttackError(
                f"wordfreq {WORDFREQ_VERSION} has only {len(words)} clean English words"
                f"{' after the profanity filter' if profanity_filter else ''}; "
                f"ask for at most {len(words)}."
            )
        requested *= 2


def common_words_info(n: int, profanity_filter: bool) -> dict:
    """Provenance of ``common_english_words(n, profanity_filter)``, for manifests and reports."""
    return {
        "kind": "common",
        "source": (
            f"wordfreq {WORDFREQ_VERSION} top_n_list({WORDFREQ_LANGUAGE!r}, "
            f"wordlist={WORDFREQ_WORDLIST!r})"
        ),
        "wordfreq_version": WORDFREQ_VERSION,
        "n": n,
        "profanity_filter": profanity_filter,
        "cleaning": "lowercase a-z only, at least 2 letters, deduplicated, frequency order",
        "licence": WORDFREQ_LICENCE,
    }


def read_word_list(path: str | Path) -> list[str]:
    """Entries of a UTF-8 text file, one per line, in file order without duplicates.

    Lines whose first non-space character is ``#`` are comments; a ``#`` later in a line is kept,
    because descriptions may contain one. Runs of whitespace collapse to one space, so entries
    that differ only in spacing, which would embed identically, count as duplicates. Case is kept:
    whether "Dog" and "dog" differ is the tokenizer's business. A UTF-8 byte-order mark is ignored.
    """
    path = Path(path)
    if not path.is_file():
        raise NeuronAttackError(
            f"Word list {path} does not exist or is not a file; pass a UTF-8 text file with one "
            "word or description per line."
        )
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise NeuronAttackError(
            f"Word list {path} is not valid UTF-8 (byte {err.start}); save it as UTF-8."
        ) from err
    except OSError as err:
        raise NeuronAttackError(f"Cannot read word list {path}: {err.strerror or err}.") from err
    entries = []
    seen: set[str] = set()
    for line in text.splitlines():
        entry = " ".join(line.split())
        if entry and not entry.startswith("#") and entry not in seen:
            seen.add(entry)
            entries.append(entry)
    if not entries:
        raise NeuronAttackError(
            f"Word list {path} has no entries, only blank lines or # comments; add one word or "
            "description per line."
        )
    return entries


def vocabulary_spec_problem(value: object) -> str | None:
    """What is wrong with a vocabulary spec (``common[:N][:clean]``, ``none`` or a readable word
    list, which is read); None when nothing is."""
    if value == "none":
        return None
    return parser_refusal(load_vocabulary, value)


def load_vocabulary(source: str) -> Vocabulary:
    """Build a vocabulary from a spec string.

    Spec syntax:

    - ``common``: the 30000 most frequent clean English words from wordfreq.
    - ``common:N``: the N most frequent, e.g. ``common:5000``.
    - ``common:clean`` or ``common:N:clean``: the same with the profanity block list applied
      (blocked words are replaced by the next most frequent ones, so there are still N).
    - anything else: a path to a UTF-8 text file read by ``read_word_list`` (one word or
      description per line, ``#`` comments). To load a file literally named ``common...``, write
      it as ``./common...``.

    ``source`` on the result is canonical for wordfreq specs (``common`` becomes
    ``common:30000``) and the path as given for files.
    """
    spec = _COMMON_SPEC.fullmatch(source)
    if spec is None:
        if source.startswith("common:"):
            raise NeuronAttackError(
                f"Vocabulary spec {source!r} is not valid; use common, common:N, common:clean or "
                f"common:N:clean (or ./{source} for a file of that name)."
            )
        words = tuple(read_word_list(source))
        info = {"kind": "file", "path": source, "n": len(words)}
        return Vocabulary(words=words, source=source, hash=word_list_hash(words), info=info)
    n = int(spec["n"]) if spec["n"] else DEFAULT_COMMON_WORDS
    profanity_filter = spec["clean"] is not None
    words = tuple(common_english_words(n, profanity_filter))
    canonical = f"common:{n}" + (":clean" if profanity_filter else "")
    return Vocabulary(
        words=words,
        source=canonical,
        hash=word_list_hash(words),
        info=common_words_info(n, profanity_filter),
    )
