"""The sentence composer: from one sentence's words to slot contents ("a fluffy red cat", "on the
beach", "under the moon"), then to a template that has a slot for each."""

from __future__ import annotations

import random
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

from neuronattack.writing.inflection import indefinite_article, is_plural, plural
from neuronattack.writing.lexicon import (
    ADJECTIVE,
    ADVERB,
    COLOUR,
    DETERMINER,
    DETERMINERS,
    FINITE_VERB,
    FUNCTION,
    GERUND,
    INTENSIFIER,
    MODAL,
    NAME,
    NOUN,
    OBJECT_PRONOUN,
    PLACE,
    PLACES,
    PREDICATIVE,
    PREPOSITION,
    QUANTITY,
    SUBJECT_PRONOUN,
    THE_NOUNS,
    TIME,
    TIMES,
    UNDER_NOUNS,
    VERB,
    WITH_NOUNS,
    display,
    is_mass,
    is_quantity,
    word_role,
)
from neuronattack.writing.matching import contains_word, mentions_forbidden, normalised
from neuronattack.writing.templates import Template

# Scaffolding the phrase builder adds around words that need a partner; any of it may be
# forbidden, so each use picks among options.
_INFINITIVE_FRAMES = ("ready to", "about to", "trying to", "waiting to")
_SEEN_VERBS = ("spotted", "found", "photographed", "saw")
_LOOK_FRAMES = ("looking at", "facing", "next to")
_PARTICIPLES = ("lit", "photographed", "posed")  # after an adverb: "a softly lit cat"
_MODAL_DEFAULTS = ("be seen", "be found")
_RELATIVES = ("that", "which")  # before a finite verb: "a cat that explores"
_DEFAULT_ADJECTIVES = ("small", "large", "old")  # after an intensifier with nothing to intensify
_NEAR_PREPOSITIONS = ("beside", "near", "next to")
_PLURAL_OTHERS = "others"  # "with two others": a number with no noun to count


@dataclass
class _Noun:
    """A noun phrase under construction; ``preposition`` set means it goes to the {near} slot."""

    word: str
    role: str = NOUN
    modifiers: list[str] = field(default_factory=list)
    determiner: str | None = None
    quantity: str | None = None
    preposition: str | None = None

    @property
    def plain(self) -> bool:
        """Whether it takes modifiers, a determiner or a number (names and phrases do not)."""
        return self.role == NOUN and " " not in self.word and self.word != _PLURAL_OTHERS

    def text(self) -> str:
        if self.role == NAME:
            return self.word
        if " " in self.word:
            first = self.word.split()[0].lower()
            if first in DETERMINERS or first in ("a", "an", "the") or is_quantity(first):
                return self.word
            if is_plural(self.word):
                return self.word
            return f"{indefinite_article(self.word)} {self.word}"
        head = self.word
        if self.quantity and self.quantity != "one" and not is_plural(head) and not is_mass(head):
            head = plural(head)
        body = " ".join([*self.modifiers, head])
        if self.quantity or self.determiner:
            return f"{self.quantity or self.determiner} {body}"
        if is_plural(head) or is_mass(head):
            return body
        if head.lower() in THE_NOUNS:
            return f"the {body}"
        return f"{indefinite_article(body)} {body}"


def _join(items: Sequence[str], conjunction: str = "and") -> str:
    if len(items) <= 1:
        return "".join(items)
    return f"{', '.join(items[:-1])} {conjunction} {items[-1]}"


@dataclass
class _Draft:
    """One sentence's words, by role, while the composer places them."""

    by_role: dict[str, list[str]]
    nouns: list[_Noun] = field(default_factory=list)
    # Closed-class words no phrase could hold: used only if the chosen template says them.
    spare: list[str] = field(default_factory=list)

    def take(self, role: str) -> list[str]:
        return list(self.by_role.get(role, []))


class Composer:
    """Builds one sentence: slot contents from the words' roles, then a template that fits them.

    Every choice goes through ``rng`` and every piece of scaffolding through :meth:`pick`, which
    never returns a forbidden option, so retries differ and stay clear of forbidden words.
    """

    def __init__(self, source: str, forbidden: Collection[str], rng: random.Random) -> None:
        self.source = source
        self.forbidden = normalised(forbidden)
        self.rng = rng

    def pick(self, options: Sequence[str]) -> str | None:
        allowed = [o for o in options if not mentions_forbidden(o, self.source, self.forbidden)]
        return self.rng.choice(allowed) if allowed else None

    def sentence(self, words: Sequence[str], templates: Sequence[Template]) -> str | None:
        """A sentence using ``words``, or None when no template fits what they became."""
        by_role: dict[str, list[str]] = {}
        for word in words:
            role = word_role(word)
            by_role.setdefault(role, []).append(display(word, role))
        draft = _Draft(
            by_role,
            nouns=[_Noun(w) for w in by_role.get(NOUN, [])],
            spare=list(by_role.get(FUNCTION, [])),
        )
        values = self._slots(draft)
        fitting = [t for t in templates if {k for k, v in values.items() if v} <= t.slots]
        if not fitting:
            return None
        return self._best(fitting, values, draft.spare).render(values)

    def _best(
        self, templates: Sequence[Template], values: Mapping[str, str], spare: Sequence[str]
    ) -> Template:
        """A random template among those that already say the most spare words ("a photo of")."""
        if not spare:
            return self.rng.choice(templates)
        scores = [sum(contains_word(t.render(values), w) for w in spare) for t in templates]
        best = max(scores)
        return self.rng.choice([t for t, s in zip(templates, scores, strict=True) if s == best])

    def _slots(self, draft: _Draft) -> dict[str, str]:
        names = draft.take(NAME)
        draft.nouns += [_Noun(name, NAME) for name in names[1:]]
        # Patterns and surfaces belong to the subject ("a red cat with stripes"), not the scene.
        worn = [n.word for n in draft.nouns if n.word.lower() in WITH_NOUNS]
        draft.nouns = [n for n in draft.nouns if n.word.lower() not in WITH_NOUNS]
        modifiers = self._subject_modifiers(draft)
        action, participle = self._actions(draft)
        determiners = draft.take(DETERMINER)
        subject_determiner = f"{names[0]}'s" if names else None
        if subject_determiner is None and determiners:
            subject_determiner = determiners.pop(0)
        self._count_nouns(draft, determiners, draft.take(QUANTITY))
        places = [self._setting(word, PLACES) for word in draft.take(PLACE)]
        self._place_prepositions(draft, places, draft.take(PREPOSITION))
        # A few nouns are placed by a preposition, so that scenes have a layout, not just a list.
        unplaced = [n for n in draft.nouns if not n.preposition]
        for noun in self.rng.sample(unplaced, self.rng.randint(0, min(2, len(unplaced)))):
            used = {n.preposition for n in draft.nouns}
            noun.preposition = self._near_preposition(noun.word, used)
        listed = [n.text() for n in draft.nouns if not n.preposition]
        conjunction = "or" if "or" in draft.spare and len(listed) > 1 else "and"
        return {
            "subject": self._subject(subject_determiner, participle, modifiers, worn),
            "action": action,
            "place": " ".join(places),
            "time": " ".join(self._setting(word, TIMES) for word in draft.take(TIME)),
            "near": " ".join(f"{n.preposition} {n.text()}" for n in draft.nouns if n.preposition),
            "nouns": _join(listed, conjunction),
        }

    def _subject(
        self, determiner: str | None, participle: str, modifiers: list[str], worn: list[str]
    ) -> str:
        # "a quietly sleeping fluffy cat" but "a fluffy sleeping cat": a bare participle sits
        # next to the noun like a compound, one with an adverb leads like a clause.
        if " " in participle:
            parts = (participle, *modifiers, self.source)
        else:
            parts = (*modifiers, participle, self.source)
        body = " ".join(part for part in parts if part)
        if determiner:
            body = f"{determiner} {body}"
        elif not is_plural(self.source):
            body = f"{indefinite_article(body)} {body}"
        return f"{body} with {_join(worn)}" if worn else body

    def _subject_modifiers(self, draft: _Draft) -> list[str]:
        """Adjectives and colours before the source: two and one at most when nouns can take the
        rest ("a fluffy red cat with a famous elephant"), all of them otherwise."""
        adjectives, colours = draft.take(ADJECTIVE), draft.take(COLOUR)
        intensifiers = draft.take(INTENSIFIER)
        if any(noun.plain for noun in draft.nouns):
            self._modify_nouns(draft.nouns, adjectives[2:] + colours[1:])
            adjectives, colours = adjectives[:2], colours[:1]
        if intensifiers and not (adjectives or colours):
            default = self.pick(_DEFAULT_ADJECTIVES)
            adjectives = [default] if default else []
        if not (adjectives or colours):
            draft.spare += intensifiers
            return []
        return [*intensifiers, *adjectives, *([_join(colours)] if colours else [])]

    def _actions(self, draft: _Draft) -> tuple[str, str]:
        """The {action} text and the participle before the source ("quietly sleeping")."""
        gerunds, adverbs = draft.take(GERUND), draft.take(ADVERB)
        participle = ""
        if adverbs:
            partner = gerunds.pop(0) if gerunds else self.pick(_PARTICIPLES)
            participle = f"{adverbs.pop(0)} {partner}" if partner else ""
        elif gerunds and self.rng.random() < 0.5:
            participle = gerunds.pop(0)
        parts = [*gerunds, *draft.take(PREDICATIVE)]
        # A lone adverb after the source still reads ("a cat quietly on the beach").
        parts += [self._framed([a], "{words} {frame}", _PARTICIPLES) or a for a in adverbs]
        verbs, modals = draft.take(VERB), draft.take(MODAL)
        if modals and verbs:
            parts.append(f"that {_join(modals)} {_join(verbs)}")
        elif modals:
            self._frame_or_spare(draft, parts, modals, "that {words} {frame}", _MODAL_DEFAULTS)
        elif verbs:
            framed = self._framed(verbs, "{frame} {words}", _INFINITIVE_FRAMES)
            if framed:
                parts.append(framed)
            else:
                draft.spare += verbs  # verbs with a noun reading are nouns (lexicon.library_role)
        self._frame_or_spare(draft, parts, draft.take(FINITE_VERB), "{frame} {words}", _RELATIVES)
        objects = draft.take(OBJECT_PRONOUN)
        self._frame_or_spare(draft, parts, objects, "{frame} {words}", _LOOK_FRAMES)
        clause: list[str] = []
        subjects = draft.take(SUBJECT_PRONOUN)
        self._frame_or_spare(draft, clause, subjects, "{words} {frame}", _SEEN_VERBS)
        return " ".join([*clause, _join(parts)]).strip(), participle

    def _framed(self, words: Sequence[str], pattern: str, frames: Sequence[str]) -> str | None:
        """``words`` set in a frame ("ready to {words}"), or None when every frame is forbidden."""
        frame = self.pick(frames) if words else None
        return pattern.format(frame=frame, words=_join(words)) if frame else None

    def _frame_or_spare(
        self,
        draft: _Draft,
        parts: list[str],
        words: Sequence[str],
        pattern: str,
        frames: Sequence[str],
    ) -> None:
        framed = self._framed(words, pattern, frames)
        if framed:
            parts.append(framed)
        else:
            draft.spare += words

    @staticmethod
    def _modify_nouns(nouns: list[_Noun], modifiers: list[str]) -> None:
        """Hang leftover adjectives and colours on nouns, singular ones first ("a red ball")."""
        targets = sorted((n for n in nouns if n.plain), key=lambda n: is_plural(n.word))
        for index, modifier in enumerate(modifiers):
            targets[index % len(targets)].modifiers.append(modifier)

    def _count_nouns(self, draft: _Draft, determiners: list[str], quantities: list[str]) -> None:
        """Give determiners to singular nouns and numbers to countable ones ("two elephants")."""
        for word in determiners:
            free = [
                n
                for n in draft.nouns
                if n.plain
                and not (n.determiner or n.quantity)
                and not is_plural(n.word)
                and not is_mass(n.word)
            ]
            if free:
                free[0].determiner = word
            else:
                draft.spare.append(word)
        for word in quantities:
            free = [
                n
                for n in draft.nouns
                if n.plain
                and not (n.determiner or n.quantity)
                and (word == "some" or not is_mass(n.word))
            ]
            if free:
                free[0].quantity = word
            elif self.pick([_PLURAL_OTHERS]):
                draft.nouns.append(_Noun(_PLURAL_OTHERS, quantity=word))
            else:
                draft.spare.append(word)

    @staticmethod
    def _place_prepositions(draft: _Draft, places: list[str], prepositions: list[str]) -> None:
        """Chosen prepositions take a noun ("under an elephant"), else a place ("under the
        water")."""
        for preposition in prepositions:
            free = [n for n in draft.nouns if not n.preposition]
            reworded = [i for i, p in enumerate(places) if len(p.split()) >= 3]
            if free:
                free[0].preposition = preposition
            elif reworded:
                index = reworded[0]
                places[index] = f"{preposition} {places[index].split(' ', 1)[1]}"
            else:
                draft.spare.append(preposition)

    def _near_preposition(self, word: str, used: Collection[str | None]) -> str:
        """ "under" the sky's things, else a side preposition this sentence has not used yet."""
        if word.lower() in UNDER_NOUNS:
            return "under"
        fresh = [p for p in _NEAR_PREPOSITIONS if p not in used]
        return self.pick(fresh or _NEAR_PREPOSITIONS) or "with"

    @staticmethod
    def _setting(word: str, table: Mapping[str, str]) -> str:
        """A place or time word with its preposition: "on the beach", "in Paris", "at night"."""
        prefix = table.get(word.lower(), "in" if word[:1].isupper() else "")
        if prefix.endswith(" a"):
            prefix = f"{prefix[:-2]} {indefinite_article(word)}"
        return f"{prefix} {word}".strip()


