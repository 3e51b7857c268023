"""Everything the toy world contains, and the one table of correlations planted in its training.

The toy world exists so that every part of neuronattack can run for real without pretrained
weights: a small CLIP is trained here on drawn scenes, and the attack renders its sentences with a
renderer that knows exactly what it drew. For the attack to find anything, the training data must
hold the kind of shortcut real CLIPs learn from the web, so a few class–context correlations are
planted on purpose. They are all declared in :data:`CUES`, before any attack was ever run, and the
world must not be retuned after seeing attack outcomes.

Every word here is a word of the world: captions use only these words plus :data:`FILLER_WORDS`,
and the renderer understands exactly these.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

CLASSES: tuple[str, ...] = (
    "cat",
    "dog",
    "bird",
    "fish",
    "frog",
    "horse",
    "car",
    "truck",
    "ship",
    "airplane",
    "apple",
    "flower",
)
PLURALS: dict[str, str] = {cls: "fish" if cls == "fish" else f"{cls}s" for cls in CLASSES}

# Saturated, well separated RGB values: colour is a concept of its own, never a class's identity
# (every class comes in every colour), so classes must be told apart by shape.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 40, 40),
    "orange": (245, 140, 30),
    "yellow": (245, 220, 50),
    "green": (60, 170, 60),
    "blue": (45, 90, 215),
    "purple": (130, 60, 180),
    "pink": (245, 130, 185),
    "brown": (130, 80, 40),
    "black": (25, 25, 25),
    "white": (245, 245, 245),
    "grey": (135, 135, 135),
}

PLAIN = "plain"
# Adjective (as in "a striped cat") -> noun (as in "a cat with stripes").
PATTERNS: dict[str, str] = {"striped": "stripes", "dotted": "dots", "checkered": "checks"}

# "plain" is the neutral studio backdrop: never named in a caption, and what the renderer draws
# when a sentence names no background, so an unmentioned background adds no context of its own.
BACKGROUNDS: tuple[str, ...] = (PLAIN, "water", "grass", "sky", "snow", "sand", "road", "night")
PROPS: tuple[str, ...] = ("sun", "moon", "cloud", "tree", "house", "ball")
LETTERS: tuple[str, ...] = tuple("abcdefghijklmnopqrstuvwxyz")
DIGITS: tuple[str, ...] = tuple("0123456789")
# What a sign can show: one lowercase letter or one digit (drawn upper-case).
SIGN_GLYPHS: tuple[str, ...] = LETTERS + DIGITS
COUNT_WORDS: dict[int, str] = {1: "one", 2: "two", 3: "three"}
MAX_COUNT = 3

# Words captions use to hold the concepts together; the renderer skips them without counting them
# as unknown. "sign", "letter" and "number" are concepts and live in the vocabulary instead.
FILLER_WORDS: frozenset[str] = frozenset((
    "a", "an", "the", "of", "photo", "picture", "image", "drawing", "there", "is", "are", "on",
    "in", "at", "with", "and", "under", "beside", "near", "next", "to", "below", "above", "showing",
))

CueKind = Literal["background", "prop", "sign", "colour"]


@dataclass(frozen=True)
class Cue:
    """A planted correlation: in training, ``P(condition | main object is cls) = probability``.

    The condition is "the background is ``value``", "the scene has the prop ``value``", "a sign
    shows the glyph ``value``" or "the main object is coloured ``value``", by ``kind``. When the
    cue does not fire, the condition is made false, so the declared probability is the exact
    conditional rate in training, not a lower bound. Held-out scenes carry no cue at all: there
    every attribute is independent of the class.
    """

    cls: str
    kind: CueKind
    value: str
    probability: float


# The planted cues, fixed before any attack was run. Each mimics a shortcut web-trained CLIPs are
# known to take, and each is a kind of context a sentence can name without naming the class:
#
# - ship on water (0.9): boats are nearly always photographed on water.
# - airplane in the sky (0.85): planes are photographed flying far more than parked.
# - truck on the road (0.75): vehicles come with roads; cars get no cue, so the road alone is a
#   truck cue, not a vehicle cue.
# - dog with a ball (0.7): an object that co-occurs with an animal without being part of it.
# - bird with a sign showing the letter K (0.6): a typographic cue, like the text CLIP reads in
#   photos; K is arbitrary, deliberately unrelated to the word "bird".
# - apple coloured red (0.7): a colour prior; every other class's colour is uniform.
CUES: tuple[Cue, ...] = (
    Cue(cls="ship", kind="background", value="water", probability=0.9),
    Cue(cls="airplane", kind="background", value="sky", probability=0.85),
    Cue(cls="truck", kind="background", value="road", probability=0.75),
    Cue(cls="dog", kind="prop", value="ball", probability=0.7),
    Cue(cls="bird", kind="sign", value="k", probability=0.6),
    Cue(cls="apple", kind="colour", value="red", probability=0.7),
)


def cues_for(cls: str) -> tuple[Cue, ...]:
    """The cues planted on scenes whose main object is ``cls``."""
    return tuple(cue for cue in CUES if cue.cls == cls)
