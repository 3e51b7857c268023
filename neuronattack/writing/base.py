"""The contract every writer keeps: :class:`Sentence`, :class:`Writer`, and the checks every
writer makes on a request before writing."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Protocol

from neuronattack.errors import NeuronAttackError

TEMPLATE_PREFIX = "template"
HF_PREFIX = "hf:"


@dataclass(frozen=True)
class Sentence:
    """One image description and the chosen words it uses.

    Each word of ``words_used`` appears in ``text`` as given or as a plural ("two elephants" uses
    "elephant"); :func:`neuronattack.writing.matching.contains_word` is the test.
    """

    text: str
    words_used: tuple[str, ...]


class Writer(Protocol):
    """What the attack needs from a writer; ``name`` is a spec ``load_writer`` reads back."""

    name: str

    def write(
        self,
        source: str,
        words: Sequence[str],
        count: int,
        seed: int,
        forbidden: Collection[str] = (),
    ) -> list[Sentence]:
        """``count`` descriptions that contain ``source`` and no ``forbidden`` word, or an error."""
        ...


def check_request(source: str, count: int) -> str:
    """The source name, whitespace-normalised, after the checks every writer makes."""
    name = " ".join(source.split())
    if not name:
        raise NeuronAttackError(
            "The source class name is empty; give the class the image must show, e.g. 'cat'."
        )
    if count < 0:
        raise NeuronAttackError(f"Asked for {count} sentences; ask for 0 or more.")
    return name
