"""The default writer: offline, deterministic per seed, from templates and the composer."""

from __future__ import annotations

import random
from collections.abc import Collection, Iterator, Sequence
from pathlib import Path

from neuronattack.errors import NeuronAttackError
from neuronattack.resources import SENTENCE_TEMPLATES
from neuronattack.writing.base import TEMPLATE_PREFIX, Sentence, check_request
from neuronattack.writing.composer import Composer
from neuronattack.writing.matching import (
    contains_word,
    mentions_forbidden,
    mentions_text,
    post_filter,
    usable_words,
    words_in,
)
from neuronattack.writing.templates import Template, load_templates

MIN_WORDS = 3
MAX_WORDS = 6
# Tries per sentence (fresh random choices each) before a word that never fits safely is dropped.
_ATTEMPTS = 24
_CULPRIT_ATTEMPTS = 4  # per word left out, when looking for the word that keeps failing


class _WordQueue:
    """The chosen words in endless shuffled rounds, so that every word is used about equally.

    A word that would repeat within one sentence (at a round boundary) waits for the next one.
    """

    def __init__(self, words: Sequence[str], rng: random.Random) -> None:
        self._words = list(words)
        self._rng = rng
        self._waiting: list[str] = []
        self._stream = self._rounds()

    def _rounds(self) -> Iterator[str]:
        while True:
            order = list(self._words)
            self._rng.shuffle(order)
            yield from order

    def take(self, count: int) -> list[str]:
        count = min(count, len(self._words))
        taken: list[str] = []
        held: list[str] = []
        while len(taken) < count:
            word = self._waiting.pop(0) if self._waiting else next(self._stream)
            if word in taken:
                held.append(word)
            else:
                taken.append(word)
        self._waiting = held + self._waiting
        return taken


class TemplateWriter:
    """The default writer: offline, deterministic per seed, grammatical by construction.

    Each sentence takes the next 3 to 6 words (``min_words``..``max_words``) from shuffled rounds
    of the chosen words, so across sentences every word is used about equally; their roles (see
    ``lexicon.word_role``) become slot contents and a template that has a slot for each fills them.
    Words that fit no role are nouns in a list ("with a value, an elephant and the sun").
    Closed-class words with no phrase of their own ("because", "of", a preposition with nothing
    to govern) count only where the chosen template already says them: as nouns ("a because")
    they would make the sentence ungrammatical, and ``words_used`` says honestly what was used.
    A chosen word that itself names text ("sign", "captioned") is placed like any other; only
    the writer's own scaffolding is kept free of text.
    """

    def __init__(
        self,
        templates_path: str | Path | None = None,
        min_words: int = MIN_WORDS,
        max_words: int = MAX_WORDS,
    ) -> None:
        if not 1 <= min_words <= max_words:
            raise NeuronAttackError(
                f"Words per sentence must satisfy 1 <= min_words <= max_words; got {min_words} "
                f"and {max_words}."
            )
        path = SENTENCE_TEMPLATES if templates_path is None else Path(templates_path)
        self.templates = load_templates(path)
        self.name = TEMPLATE_PREFIX if templates_path is None else f"{TEMPLATE_PREFIX}:{path}"
        self.min_words = min_words
        self.max_words = max_words

    def write(
        self,
        source: str,
        words: Sequence[str],
        count: int,
        seed: int,
        forbidden: Collection[str] = (),
    ) -> list[Sentence]:
        source = check_request(source, count)
        rng = random.Random(seed)
        chosen = usable_words(words, source, forbidden)
        # A word the source name already says is in every sentence without being placed.
        queue = _WordQueue([w for w in chosen if not contains_word(source, w)], rng)
        composer = Composer(source, forbidden, rng)
        templates = [
            t
            for t in self.templates
            if not mentions_forbidden(t.literal_text, source, composer.forbidden)
        ]
        sentences: list[Sentence] = []
        seen: set[str] = set()
        for _ in range(count):
            picked = queue.take(rng.randint(self.min_words, self.max_words))
            text = self._compose(composer, picked, templates, seen, chosen)
            seen.add(text)
            sentences.append(Sentence(text, words_in(text, chosen)))
        return sentences

    def _compose(
        self,
        composer: Composer,
        words: list[str],
        templates: Sequence[Template],
        seen: set[str],
        chosen: Sequence[str],
    ) -> str:
        """A new sentence if one can be found, a repeat if only repeats pass, else an error.

        When no try passes the filter, one word is left out (the one whose absence lets a
        sentence pass, else the last) and the tries start again.
        """
        words = list(words)
        while True:
            text = self._attempt(composer, words, templates, seen, chosen, _ATTEMPTS)
            if text is not None:
                return text
            if not words:
                raise NeuronAttackError(
                    f"No template can describe '{composer.source}' without a forbidden word; "
                    f"add templates that avoid {', '.join(sorted(composer.forbidden)[:5])}, or "
                    "forbid fewer words."
                )
            words = self._without_culprit(composer, words, templates, seen, chosen)

    def _without_culprit(
        self,
        composer: Composer,
        words: list[str],
        templates: Sequence[Template],
        seen: set[str],
        chosen: Sequence[str],
    ) -> list[str]:
        """The words less one: a word whose phrase always holds a forbidden word ("the" in "on
        the beach") would otherwise take innocent words down with it."""
        for index in reversed(range(len(words))):
            rest = words[:index] + words[index + 1 :]
            if self._attempt(composer, rest, templates, seen, chosen, _CULPRIT_ATTEMPTS):
                return rest
        return words[:-1]

    def _attempt(
        self,
        composer: Composer,
        words: list[str],
        templates: Sequence[Template],
        seen: set[str],
        chosen: Sequence[str],
        tries: int,
    ) -> str | None:
        """The first new sentence that passes, else a repeat that passes, else None."""
        repeat = None
        for _ in range(tries):
            text = composer.sentence(words, templates)
            if text is None or not self._acceptable(text, composer, chosen):
                continue
            if text not in seen:
                return text
            repeat = text
        return repeat

    @staticmethod
    def _acceptable(text: str, composer: Composer, chosen: Sequence[str]) -> bool:
        if not post_filter([text], composer.source, composer.forbidden):
            return False
        return not mentions_text(text, [composer.source, *chosen])
