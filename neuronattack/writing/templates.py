"""The template language: one template per line, with slots and optional [groups].

The file format (slots, groups, comments) is described in the header of the shipped
``neuronattack/resources/sentence_templates.txt``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from neuronattack.errors import NeuronAttackError
from neuronattack.resources import SENTENCE_TEMPLATES
from neuronattack.writing.matching import QUOTED, TEXT_WORDS, contains_word

SLOTS = ("subject", "action", "place", "time", "near", "nouns")

@dataclass(frozen=True)
class _Slot:
    name: str


_Part = str | _Slot | tuple[str | _Slot, ...]
_TEMPLATE_TOKEN = re.compile(r"\{(\w*)\}|(\[)|(\])|([^\[\]{}]+)|([{}])")
_ARTICLE_BEFORE_SLOT = re.compile(r"\ban?\s*\[?\s*\{", re.IGNORECASE)


@dataclass(frozen=True)
class Template:
    """A parsed template line: literal text, slots, and bracketed groups of both.

    A group is dropped whole when any slot in it is empty; an empty slot outside a group just
    disappears, with the spaces and commas around it tidied.
    """

    line: str
    parts: tuple[_Part, ...]
    slots: frozenset[str]

    @property
    def literal_text(self) -> str:
        """Every word the template itself says, groups included."""
        pieces = [p for part in self.parts for p in (part if isinstance(part, tuple) else (part,))]
        return " ".join(piece for piece in pieces if isinstance(piece, str))

    def render(self, values: Mapping[str, str]) -> str:
        out: list[str] = []
        for part in self.parts:
            if isinstance(part, tuple):
                if all(values.get(p.name) for p in part if isinstance(p, _Slot)):
                    out.extend(values[p.name] if isinstance(p, _Slot) else p for p in part)
            else:
                out.append(values.get(part.name, "") if isinstance(part, _Slot) else part)
        return _tidy("".join(out))


def _tidy(text: str) -> str:
    text = " ".join(text.split())
    text = re.sub(r"\s+,", ",", text)
    text = re.sub(r",(?:\s*,)+", ",", text)
    return text.strip(" ,")


def parse_template(line: str) -> Template:
    """One template line, or ValueError saying what is wrong with it."""
    stack: list[list[_Part]] = [[]]
    for match in _TEMPLATE_TOKEN.finditer(line):
        slot, opening, closing, text, stray = match.groups()
        if stray:
            raise ValueError(f"it has a stray '{stray}'")
        if slot is not None:
            if slot not in SLOTS:
                raise ValueError(f"{{{slot}}} is not a slot")
            stack[-1].append(_Slot(slot))
        elif opening:
            if len(stack) > 1:
                raise ValueError("it nests '[' groups")
            stack.append([])
        elif closing:
            if len(stack) == 1:
                raise ValueError("it has a ']' with no '['")
            group = tuple(stack.pop())  # nesting is refused above, so these are str or _Slot
            if not any(isinstance(part, _Slot) for part in group):
                raise ValueError("it has a [group] with no slot")
            stack[-1].append(group)
        else:
            stack[-1].append(text)
    if len(stack) > 1:
        raise ValueError("it has a '[' that is never closed")
    parts: tuple[_Part, ...] = tuple(stack[0])
    names = [
        p.name
        for part in parts
        for p in (part if isinstance(part, tuple) else (part,))
        if isinstance(p, _Slot)
    ]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"it has {{{repeated[0]}}} more than once")
    if _Slot("subject") not in parts:
        raise ValueError("it has no {subject} outside brackets")
    if _ARTICLE_BEFORE_SLOT.search(line):
        raise ValueError("it puts 'a' or 'an' before a slot, but slots bring their own articles")
    template = Template(line, parts, frozenset(names))
    if QUOTED.search(template.literal_text) or "'" in template.literal_text:
        raise ValueError("it contains quotes, which ask for written text in the image")
    text_words = sorted(w for w in TEXT_WORDS if contains_word(template.literal_text, w))
    if text_words:
        raise ValueError(f"it says '{text_words[0]}', which asks for written text in the image")
    return template


def load_templates(path: str | Path) -> tuple[Template, ...]:
    """The templates in a file, or a NeuronAttackError naming the first bad line."""
    path = Path(path)
    if not path.is_file():
        raise NeuronAttackError(
            f"The template file {path} does not exist; pass a text file with one template per "
            f"line (see {SENTENCE_TEMPLATES} for the format)."
        )
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise NeuronAttackError(
            f"Cannot read the template file {path} ({error}); save it as UTF-8 text."
        ) from error
    templates = []
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        try:
            templates.append(parse_template(text))
        except ValueError as problem:
            raise NeuronAttackError(
                f"Line {number} of the template file {path} is malformed: {problem}; see the "
                f"header of {SENTENCE_TEMPLATES} for the slots and syntax."
            ) from None
    if not any(template.slots == frozenset(SLOTS) for template in templates):
        raise NeuronAttackError(
            f"No template in {path} holds all six slots ({', '.join(SLOTS)}); add at least one, "
            "so that every word set has a template that fits."
        )
    return tuple(templates)


