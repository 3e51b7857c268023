"""The toy world's words: the dictionary for word decompositions, and every word a caption can use.

The dictionary is built like a real CLIP vocabulary, which holds far more words than any one
picture can show: the world's concepts (:func:`drawable_words`, which the renderer draws) plus
:data:`UNDRAWABLE_WORDS`, ordinary words of web captions that the world has no picture for. The
renderer ignores the latter and reports them (``ParsedPrompt.unknown_words``,
``Layout.ignored_words``), and the toy CLIP never saw them in training: their token embeddings are
zero, so each embeds only as a sentence of its length. An atlas of the toy CLIP therefore reads in
the world's terms ("+water +striped -moon"), and a selection of words has to find the few that the
world can draw among many that it cannot. Glyphs appear as "letter k" and "number 7" because
single characters embed as characters, not as the sign that shows them.
"""

from __future__ import annotations

from collections.abc import Iterable

from neuronattack.toy.world import (
    BACKGROUNDS,
    CLASSES,
    COLOURS,
    COUNT_WORDS,
    DIGITS,
    FILLER_WORDS,
    LETTERS,
    PATTERNS,
    PLAIN,
    PLURALS,
    PROPS,
    WEATHERS,
)

# Common words of web captions with no picture in the toy world, grouped by kind; some are near
# misses a reader would expect to work (synonyms of classes, context the world lacks), which is
# exactly what an attack's words must learn to avoid.
UNDRAWABLE_WORDS: tuple[str, ...] = (
    # animals and plants the world lacks
    "elephant", "zebra", "lion", "tiger", "bear", "monkey", "rabbit", "mouse", "sheep", "cow",
    "pig", "goat", "deer", "fox", "wolf", "owl", "duck", "chicken", "parrot", "penguin", "snake",
    "turtle", "lizard", "spider", "bee", "butterfly", "shark", "whale", "dolphin", "crab",
    "kitten", "puppy", "pony", "rose", "tulip", "daisy", "cactus", "mushroom", "grapes", "banana",
    "juice", "lemon", "cherry", "pear", "peach", "strawberry", "tomato", "carrot", "bread",
    "cake", "pizza", "cheese", "coffee", "tea", "milk", "wine", "sandwich", "soup", "cookie",
    # things and vehicles
    "bicycle", "motorcycle", "bus", "train", "boat", "helicopter", "rocket", "tractor", "van",
    "piano", "violin", "guitar", "drum", "trumpet", "flute", "chair", "table", "sofa", "bed",
    "lamp", "clock", "phone", "computer", "camera", "television", "book", "pen", "cup", "bottle",
    "bowl", "plate", "knife", "spoon", "hat", "shoe", "shirt", "dress", "glasses", "umbrella",
    "bag", "key", "door", "window", "wall", "bridge", "tower", "castle", "church", "fence",
    "rock", "mountain", "hill", "river", "lake", "beach", "forest", "desert", "island", "field",
    "garden", "park", "street", "city", "village", "farm", "kitchen", "bedroom", "office",
    "school", "market", "stadium", "airport", "station", "harbor",
    # weather, light and time the world does not draw
    "fog", "storm", "wind", "lightning", "rainbow", "sunset", "sunrise", "dawn", "dusk",
    "winter", "summer", "autumn", "spring", "morning", "evening", "shadow",
    # people and events
    "man", "woman", "child", "baby", "boy", "girl", "family", "friend", "farmer", "sailor",
    "pilot", "driver", "teacher", "doctor", "soldier", "king", "queen", "thanksgiving",
    "christmas", "birthday", "wedding", "party", "holiday", "vacation", "festival", "game",
    "music", "dance", "sport", "race", "picnic",
    # qualities
    "happy", "sad", "angry", "cute", "funny", "beautiful", "ugly", "old", "new", "young",
    "big", "small", "tiny", "huge", "tall", "short", "long", "fast", "slow", "heavy", "soft",
    "hard", "wet", "dry", "hot", "cold", "warm", "bright", "dark", "shiny", "fluffy", "wooden",
    "metal", "plastic", "golden", "silver", "gold", "beige", "violet", "turquoise", "cyan",
    "magenta", "vintage", "modern", "wild", "famous", "lonely", "quiet", "loud", "empty",
    "crowded", "clean", "dirty", "broken", "colorful", "realistic", "cartoon", "painting",
    "sketch", "closeup", "portrait", "landscape",
)


def drawable_words() -> list[str]:
    """The world's concept words and phrases (about 100), grouped by kind, without repeats:
    every one of them changes what the renderer draws."""
    groups = [
        CLASSES,
        [PLURALS[cls] for cls in CLASSES if PLURALS[cls] != cls],
        tuple(COLOURS),
        tuple(PATTERNS),
        tuple(PATTERNS.values()),
        [bg for bg in BACKGROUNDS if bg != PLAIN],
        PROPS,
        WEATHERS,
        ("sign", "letter", "number"),
        [f"letter {letter}" for letter in LETTERS],
        [f"number {digit}" for digit in DIGITS],
        tuple(COUNT_WORDS.values()),
    ]
    return [word for group in groups for word in group]


def toy_words() -> list[str]:
    """The whole vocabulary: :func:`drawable_words`, then :data:`UNDRAWABLE_WORDS`."""
    return drawable_words() + list(UNDRAWABLE_WORDS)


def vocabulary_coverage(word_lists: Iterable[Iterable[str]], vocabulary: Iterable[str]) -> float:
    """The share of ``vocabulary`` that appears in at least one of ``word_lists`` (e.g. the
    words of 100 random neurons); words outside the vocabulary are not counted."""
    vocabulary = set(vocabulary)
    used = {word for words in word_lists for word in words} & vocabulary
    return len(used) / len(vocabulary)


def caption_words() -> list[str]:
    """Every token text a caption or zero-shot prompt of the world can contain, sorted.

    The toy CLIP trains exactly the token embeddings of these (see ``neuronattack.toy.model``);
    :data:`UNDRAWABLE_WORDS` are not among them.
    """
    words = {part for phrase in drawable_words() for part in phrase.split()}
    return sorted(words | set(LETTERS) | set(DIGITS) | FILLER_WORDS | {","})
