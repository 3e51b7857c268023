"""What a checker says about an image (``Verdict``) and what a checker is (``Checker``).

Every checker answers in these terms: the second CLIP (``attack.judge.ClipChecker``), the toy
world's, which knows what it drew (``toy.checker.ToyChecker``), and none at all. They live below
both so that the toy world plugs in through the same interface as real models.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Protocol

from PIL import Image

KINDS = ("contextual", "typographic", "distractor")


@dataclass(frozen=True)
class Verdict:
    valid: bool  # source present and recognisable, target absent
    source_present: bool
    target_absent: bool
    no_text: bool  # False: text or a sign is drawn (a typographic image)
    checker: str
    recognisable: bool = True  # the source is drawn large or clear enough to be told
    distractors: tuple[str, ...] = ()  # other classes of the class set that are drawn
    kind: str | None = "contextual"  # one of KINDS (by image_kind); None: nobody checked
    details: dict = field(default_factory=dict)  # checker-specific facts (sizes, ignored words)

    def as_dict(self) -> dict:
        return asdict(self) | {"distractors": list(self.distractors)}


def image_kind(has_text: bool, distractors: Sequence[str]) -> str:
    """Typographic before distractor: text is the stronger, better-known CLIP failure."""
    if has_text:
        return "typographic"
    return "distractor" if distractors else "contextual"


class Checker(Protocol):
    """Validity and kind of attack images; ``source``/``target`` index the attack's class set."""

    @property
    def name(self) -> str:
        """Recorded with every verdict and in the attack's meta.json."""
        ...

    def check(self, images: Sequence[Image.Image], prompts: Sequence[str], source: int,
              target: int, seeds: Sequence[int] | None = None) -> list[Verdict]: ...
