"""Scene graphs of the toy world: how training scenes are sampled and how they are captioned.

A scene is everything the drawing depends on apart from jitter: which objects (class, colour,
pattern, count), the background, the props and the sign. Training scenes carry the planted cues of
:mod:`neuronattack.toy.world`; held-out scenes do not, so accuracy on them measures shape
recognition rather than shortcut use. Captions mention only part of each scene, the way web
captions do, which is what lets context leak into what CLIP thinks a class looks like.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

from neuronattack.toy.world import (
    BACKGROUNDS,
    CLASSES,
    COLOURS,
    COUNT_WORDS,
    CUES,
    MAX_COUNT,
    PATTERNS,
    PLAIN,
    PLURALS,
    PROPS,
    SIGN_GLYPHS,
    WEATHERS,
    Cue,
)

SECOND_OBJECT_RATE = 0.3  # scenes with a second kind of object, so captions compose
PATTERNED_RATE = 0.45
PROP_RATE = 0.15  # each prop independently
SIGN_RATE = 0.25
WEATHER_RATE = 0.15
COUNT_WEIGHTS = {1: 0.6, 2: 0.25, 3: 0.15}  # keys run 1..MAX_COUNT

# How often a caption mentions each part of the scene. The class is always named, the rest only
# now and then: captions rich in easy attributes let the contrastive loss match pairs by colour
# and background alone, and the image tower then learns shapes far more slowly (zero-shot
# accuracy after 77k training images: 18% with these rates at 0.6, 47% at 0.35). Unmentioned
# context is also what lets a planted cue leak into what CLIP thinks a class looks like.
MENTION_COLOUR = 0.25
MENTION_PATTERN = 0.25
MENTION_BACKGROUND = 0.25
MENTION_PROP = 0.25
MENTION_SIGN = 0.25
MENTION_WEATHER = 0.25

PREFIXES = ("", "a photo of ", "a picture of ", "an image of ", "a drawing of ")
BACKGROUND_PHRASES: dict[str, tuple[str, ...]] = {
    "water": ("on the water", "on water", "in the water"),
    "grass": ("on the grass", "on grass", "in the grass"),
    "sky": ("in the sky", "in a sky"),
    "snow": ("in the snow", "on snow", "on the snow"),
    "sand": ("on the sand", "on sand"),
    "road": ("on the road", "on a road"),
    "night": ("at night", "in the night"),
}
WEATHER_PHRASES: dict[str, tuple[str, ...]] = {"rain": ("in the rain", "in rain", "with rain")}
PROP_PREPOSITIONS: dict[str, tuple[str, ...]] = {
    "sun": ("under the sun", "under a sun", "with the sun"),
    "moon": ("under the moon", "under a moon", "with the moon"),
    "cloud": ("under a cloud", "below a cloud", "with a cloud"),
    "tree": ("beside a tree", "near a tree", "next to a tree", "with a tree"),
    "house": ("beside a house", "near a house", "next to a house", "with a house"),
    "ball": ("with a ball", "beside a ball", "near a ball", "next to a ball"),
}
SIGN_PREPOSITIONS = ("under", "beside", "near", "with")


@dataclass(frozen=True)
class SceneObject:
    """One kind of object in a scene, drawn ``count`` times (same colour and pattern).

    ``colour`` is None only in scenes parsed from sentences that name no colour; the renderer
    picks one per seed before drawing.
    """

    cls: str
    colour: str | None
    pattern: str = PLAIN  # PLAIN or a key of PATTERNS
    count: int = 1


@dataclass(frozen=True)
class Scene:
    """A scene graph. ``objects[0]`` is the main object, the one cues and accuracy refer to.

    ``props`` is in :data:`PROPS` order without repeats; ``sign`` is the glyph a sign shows, ""
    for a blank sign (a sentence that names a sign but no glyph), or None for no sign;
    ``weather`` is one of :data:`WEATHERS` or None.
    """

    objects: tuple[SceneObject, ...]
    background: str = PLAIN
    props: tuple[str, ...] = ()
    sign: str | None = None
    weather: str | None = None

    @property
    def main_class(self) -> str:
        return self.objects[0].cls

    @property
    def classes(self) -> frozenset[str]:
        return frozenset(obj.cls for obj in self.objects)


def sample_scene(rng: random.Random, with_cues: bool = True, max_kinds: int = 2) -> Scene:
    """A scene from the training distribution (``with_cues``) or the cue-free held-out one.

    Without cues every attribute is independent of the classes. With cues, each cue of the main
    class fires with its probability and, when it does not, its condition is made false, so
    ``P(condition | class)`` is exactly the declared probability. ``max_kinds=1`` gives scenes with
    one kind of object, whose class is then unambiguous (used for zero-shot accuracy).
    """
    main = rng.choice(CLASSES)
    classes = [main]
    if max_kinds > 1 and rng.random() < SECOND_OBJECT_RATE:
        classes.append(rng.choice([cls for cls in CLASSES if cls != main]))
    # Two kinds of object share the frame, so each comes at most twice: tiny copies are unreadable.
    max_count = MAX_COUNT if len(classes) == 1 else 2
    scene = Scene(
        objects=tuple(_sample_object(rng, cls, max_count) for cls in classes),
        background=rng.choice(BACKGROUNDS),
        props=tuple(prop for prop in PROPS if rng.random() < PROP_RATE),
        sign=rng.choice(SIGN_GLYPHS) if rng.random() < SIGN_RATE else None,
        weather=rng.choice(WEATHERS) if rng.random() < WEATHER_RATE else None,
    )
    if with_cues:
        # Other classes' cues first and the main class's own last, so that its rate is exact.
        for cue in sorted(CUES, key=lambda cue: cue.cls == main):
            rate = cue.probability if cue.cls == main else cue.elsewhere
            scene = with_condition(scene, cue, rng.random() < rate, rng)
    return scene


def _sample_object(rng: random.Random, cls: str, max_count: int) -> SceneObject:
    pattern = rng.choice(tuple(PATTERNS)) if rng.random() < PATTERNED_RATE else PLAIN
    counts = [count for count in COUNT_WEIGHTS if count <= max_count]
    count = rng.choices(counts, weights=[COUNT_WEIGHTS[count] for count in counts])[0]
    return SceneObject(cls, rng.choice(tuple(COLOURS)), pattern, count)


def with_condition(scene: Scene, cue: Cue, holds: bool, rng: random.Random) -> Scene:
    """The scene changed just enough for the cue's condition to hold (or not).

    A condition that must be false and already is leaves the scene alone. To make it false, a
    background or colour is redrawn among the values no cue uses (so that removing one cue
    does not plant another), a prop removed, and a sign showing the cue glyph given another.
    """
    if cue.kind == "background":
        if holds:
            return replace(scene, background=cue.value)
        if scene.background != cue.value:
            return scene
        return replace(scene, background=rng.choice(_neutral(BACKGROUNDS, "background")))
    if cue.kind == "prop":
        kept = set(scene.props) - {cue.value} | ({cue.value} if holds else set())
        return replace(scene, props=tuple(prop for prop in PROPS if prop in kept))
    if cue.kind == "sign":
        if holds:
            return replace(scene, sign=cue.value)
        if scene.sign == cue.value:
            return replace(scene, sign=rng.choice(_neutral(SIGN_GLYPHS, "sign")))
        return scene
    colour = scene.objects[0].colour
    if not holds and colour != cue.value:
        return scene
    colour = cue.value if holds else rng.choice(_neutral(tuple(COLOURS), "colour"))
    return replace(scene, objects=(replace(scene.objects[0], colour=colour), *scene.objects[1:]))


def _neutral(values: tuple[str, ...], kind: str) -> list[str]:
    """The values of a kind that no planted cue uses."""
    used = {cue.value for cue in CUES if cue.kind == kind}
    return [value for value in values if value not in used]


def caption(scene: Scene, rng: random.Random) -> str:
    """A caption for the scene in one of many phrasings, naming every class and part of the rest.

    Uses only world words and :data:`~neuronattack.toy.world.FILLER_WORDS`, so the toy renderer
    parses every caption without unknown words.
    """
    subject = " and ".join(_object_phrase(obj, rng) for obj in scene.objects)
    modifiers = []
    if scene.background != PLAIN and rng.random() < MENTION_BACKGROUND:
        modifiers.append(rng.choice(BACKGROUND_PHRASES[scene.background]))
    modifiers += [
        rng.choice(PROP_PREPOSITIONS[prop]) for prop in scene.props if rng.random() < MENTION_PROP
    ]
    if scene.sign is not None and rng.random() < MENTION_SIGN:
        modifiers.append(_sign_phrase(scene.sign, rng))
    if scene.weather is not None and rng.random() < MENTION_WEATHER:
        modifiers.append(rng.choice(WEATHER_PHRASES[scene.weather]))
    rng.shuffle(modifiers)
    if modifiers and rng.random() < 0.2:
        # Fronted context ("at night, a cat") so position in the sentence is no cue to role.
        first = modifiers.pop(0)
        return " ".join([f"{first},", subject, *modifiers])
    if rng.random() < 0.15:
        verb = "is" if len(scene.objects) == 1 and scene.objects[0].count == 1 else "are"
        return " ".join([f"there {verb}", subject, *modifiers])
    return " ".join([rng.choice(PREFIXES) + subject, *modifiers])


def _object_phrase(obj: SceneObject, rng: random.Random) -> str:
    """"a red striped cat", "two dogs with dots", "three green fish"."""
    noun = obj.cls if obj.count == 1 else PLURALS[obj.cls]
    words = [] if obj.count == 1 else [COUNT_WORDS[obj.count]]
    if rng.random() < MENTION_COLOUR:
        words.append(obj.colour)
    trailing = ""
    if obj.pattern != PLAIN and rng.random() < MENTION_PATTERN:
        if rng.random() < 0.5:
            words.append(obj.pattern)
        else:
            trailing = f" with {PATTERNS[obj.pattern]}"
    words.append(noun)
    if obj.count == 1:
        words.insert(0, "an" if words[0][0] in "aeiou" else "a")
    return " ".join(words) + trailing


def _sign_phrase(glyph: str, rng: random.Random) -> str:
    """"under a sign showing the letter k", "near a sign with 7", "beside a sign with the number 7".
    """
    shown = rng.choice((f"the number {glyph}", glyph)) if glyph.isdigit() else f"the letter {glyph}"
    verb = rng.choice(("showing", "with"))
    return f"{rng.choice(SIGN_PREPOSITIONS)} a sign {verb} {shown}"
