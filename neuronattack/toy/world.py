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
# Weather falls over the whole background, behind everything else, so it never hides an object.
WEATHERS: tuple[str, ...] = ("rain",)
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
    """A planted correlation: in training, ``P(condition | main object is cls) = probability``
    and ``P(condition | main object is any other class) = elsewhere``.

    The condition is "the background is ``value``", "the scene has the prop ``value``", "a sign
    shows the glyph ``value``" or "the main object is coloured ``value``", by ``kind``. When the
    cue does not fire, the condition is made false, so the declared probabilities are the exact
    conditional rates in training, not bounds. Held-out scenes carry no cue at all: there every
    attribute is independent of the class.
    """

    cls: str
    kind: CueKind
    value: str
    probability: float
    elsewhere: float = 0.0


# The planted cues. Each mimics a shortcut web-trained CLIPs are known to take, and each is a kind
# of context a sentence can name without naming the class:
#
# - ship on water (0.9): boats are nearly always photographed on water.
# - airplane in the sky (0.85): planes are photographed flying far more than parked.
# - truck on the road (0.8): vehicles come with roads; cars get no cue, so the road alone is a
#   truck cue, not a vehicle cue.
# - dog with a ball (0.8): an object that co-occurs with an animal without being part of it.
# - bird with a sign showing the letter K (0.7): a typographic cue, like the text CLIP reads in
#   photos; K is arbitrary, deliberately unrelated to the word "bird". Kept although a success
#   through a sign is typographic, never contextual: text in images is the other shortcut web
#   CLIPs are known for (the authors' frog under a "Happy Thanksgiving" sign), and the judges
#   report it as its own kind, so the world keeps one of each.
# - apple coloured red (0.8): a colour prior; every other class's colour is uniform.
#
# Issue 9 made every cue two-sided (``elsewhere``): the condition is rare for every other class,
# as water is for land birds in Waterbirds. The evidence a cue gives is the ratio
# probability / elsewhere (about 40 here), against at most 8 when the condition kept its base
# rate elsewhere (1 background in 8), which is why the v1 toy CLIP barely took its cues (uptake
# at most 2.3 points). Fixed from cue uptake only, before any attack with the new weights.
CUES: tuple[Cue, ...] = (
    Cue(cls="ship", kind="background", value="water", probability=0.9, elsewhere=0.02),
    Cue(cls="airplane", kind="background", value="sky", probability=0.85, elsewhere=0.02),
    Cue(cls="truck", kind="background", value="road", probability=0.8, elsewhere=0.02),
    Cue(cls="dog", kind="prop", value="ball", probability=0.8, elsewhere=0.02),
    Cue(cls="bird", kind="sign", value="k", probability=0.7, elsewhere=0.005),
    Cue(cls="apple", kind="colour", value="red", probability=0.8, elsewhere=0.02),
)



# Faded photos (issue 9): in this share of all images (training, held-out and every render
# alike), every object is drawn with an opacity drawn uniformly from FADE_RANGE over what lies
# beneath it, the way web photos hold small, hazy, backlit or camouflaged subjects. There the
# shape says less, so context carries real information about the class, which is what makes a
# CLIP take the shortcuts of CUES; at full opacity shape alone decides. The fade depends on the
# image seed only (``neuronattack.toy.draw.fade_of``), never on the sentence, so a word added or
# removed at a fixed seed leaves it unchanged; layouts report it as ``DrawnObject.visibility``.
FADED_RATE = 0.3
FADE_RANGE = (0.15, 0.45)

# Other choices of issue 9's world, declared with the reason, before the final training run:
# - Captions mention each attribute with probability 0.25 (``scenes.MENTION_*``, 0.35 before):
#   context a caption leaves out is what leaks into the class words, and fewer attribute words
#   made the image tower learn shapes faster in v1's measurements (see ``scenes``).
# - Rain (``WEATHERS``) is a drawable concept of a new kind, weather, with no cue: a word an
#   attack may use that draws something but says nothing about any class.
# - The vocabulary (``vocabulary.toy_words``) adds some 240 ordinary words the world cannot draw
#   (``UNDRAWABLE_WORDS``), as a real CLIP vocabulary has; the renderer ignores them.
# - Measurement distribution: zero-shot accuracy and cue uptake are measured on held-out scenes
#   (``train.held_out_scenes``: one kind of object, one to three copies, every attribute
#   independent of the class, faded photos at FADED_RATE as everywhere). Uptake pairs each
#   scene of another class with itself, same seed, cue condition made true versus false.
# - Training, run 1 (``train.py`` from a random init): 2,200 steps of 64 pairs, lr 1e-3, seed 0,
#   bf16, one thread, 31 min on the shared 2-core CPU. It learned the context cues (water, sky,
#   road: +79 to +97 points; red +35) but no shapes: cue-free zero-shot 18.0%. The contrastive
#   loss found a context-only basin it did not leave in 2,200 steps. Not shipped.
# - The short trial (800 steps, faded share 0.4, opacity 0.1-0.45) learned context first: the
#   background cues at +99 to +100 points, ball, sign and red at 0 to +2, zero-shot 10.5%,
#   shapes not yet learned; hence a smaller faded share, to leave shapes more to learn from.
# - Training, run 2 (the shipped weights), fixed before any attack with them: the v1 weights
#   (3,000 steps on the v1 world, which know shapes) fine-tuned on this world for 1,000 steps of 64
#   pairs, lr 5e-4 (5% warmup, cosine), seed 0, bf16, one thread:
#   ``nice -n -10 python -m neuronattack.toy.train --init V1 --steps 1000 --lr 5e-4 --threads 1``
#   (33 min for v1 plus this run's time, recorded in ``weights/toy_clip.json``). World tokens v1
#   never saw (rain, the new words) start from fresh random rows (``train.fine_tune_state``).

# What "the source is still recognisable" means in the toy world: an object drawn at least as
# large, in visible pixels (``DrawnObject.size``: its silhouette and outline, minus what is drawn
# over it), as the smallest copy of its class in training scenes. Measured with
# ``neuronattack.toy.draw.smallest_training_sizes(2000)`` (every copy of every object in 2,000
# sampled training scenes, seed 0); a test re-measures it, so it follows any change of the world.
MIN_TRAINING_SIZE: dict[str, int] = {
    "cat": 148, "dog": 110, "bird": 139, "fish": 121, "frog": 156, "horse": 170,
    "car": 130, "truck": 130, "ship": 114, "airplane": 100, "apple": 204, "flower": 143,
}


def min_training_size(cls: str) -> int:
    """The smallest visible size (pixels at 64x64) that ``cls`` has in training scenes."""
    return MIN_TRAINING_SIZE[cls]


# The demo's pre-registered pairs (source, target): one per planted cue, the target carrying the
# cue and the source carrying none, fixed with the world and before its weights were trained.
# They are demo v1's pairs unchanged, so that no pair was chosen after seeing any attack outcome.
# The frog → bird pair goes through a sign, the typographic shortcut (the authors' frog under a
# "Happy Thanksgiving" sign that becomes a bird): its successes are typographic by kind, which
# keeps that known CLIP failure in the world and reported as its own kind, not hidden.
DEMO_PAIRS: tuple[tuple[str, str], ...] = (
    ("cat", "dog"),
    ("car", "ship"),
    ("horse", "airplane"),
    ("car", "truck"),
    ("frog", "bird"),
    ("flower", "apple"),
)
