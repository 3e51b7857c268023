"""The toy renderer: sentences in, toy-world images out, behind the same interface as diffusion.

It parses a sentence into a scene graph and draws it. Because it knows what it drew, an attack
image is valid by construction: :meth:`ToyRenderer.render_scenes` says which classes are in each
image, so "the source object is present and the target is absent" is a lookup, not a judgement.

Parsing is deliberately literal. Words it does not know are skipped and reported. Colours and
patterns attach to the next object noun ("a red striped dog"), or to the previous one after
"with" ("a dog with stripes") or when no object follows. A plural without a number means two.
Background words set the background (the last one wins); props and weather are present when
named; a sign
shows the glyph after "letter" or "number", or any digit. Whatever a sentence leaves out takes
its neutral value: the plain backdrop, no props, no pattern, one copy; only colour, which every
object must have, is picked at random per seed.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

from PIL import Image

from neuronattack.errors import NeuronAttackError
from neuronattack.toy.draw import Layout, draw_with_layout
from neuronattack.toy.scenes import Scene, SceneObject
from neuronattack.toy.world import (
    BACKGROUNDS,
    CLASSES,
    COLOURS,
    COUNT_WORDS,
    FILLER_WORDS,
    LETTERS,
    PATTERNS,
    PLAIN,
    PLURALS,
    PROPS,
    WEATHERS,
)

_TOKEN = re.compile(r"[a-z]+|[0-9]+")
_SINGULAR = {cls: cls for cls in CLASSES}
_PLURAL = {PLURALS[cls]: cls for cls in CLASSES if PLURALS[cls] != cls}
_PATTERN_WORDS = {**{adj: adj for adj in PATTERNS}, **{noun: adj for adj, noun in PATTERNS.items()}}
_PROP_WORDS = {**{prop: prop for prop in PROPS}, **{f"{prop}s": prop for prop in PROPS}}
_BACKGROUND_WORDS = frozenset(bg for bg in BACKGROUNDS if bg != PLAIN)
_COUNTS = {word: count for count, word in COUNT_WORDS.items()}
_WEATHER_WORDS = {**{w: w for w in WEATHERS}, "raining": "rain", "rainy": "rain"}


@dataclass(frozen=True)
class ParsedPrompt:
    """What a sentence asks for; object colours it does not name are None."""

    scene: Scene
    unknown_words: list[str]


@dataclass
class _Group:
    cls: str
    count: int
    colour: str | None = None
    pattern: str = PLAIN


class ToyRenderer:
    """Draws toy-world scenes from sentences, seeded: the same sentence and seed, the same image."""

    name = "toy"

    def __init__(self, size: int = 64) -> None:
        self.size = size

    def describe(self) -> dict[str, object]:
        """What produced the images, for manifests."""
        return {
            "name": self.name,
            "size": self.size,
            "classes": list(CLASSES),
            "parsing": "literal; unknown words skipped and counted",
        }

    def parse(self, prompt: str) -> ParsedPrompt:
        """The scene a sentence describes, and the words it could not use."""
        return parse_prompt(prompt)

    def render_scenes(self, prompts: Sequence[str], seeds: Sequence[int]) -> list[Scene]:
        """The exact scenes :meth:`render` draws for these prompts and seeds (colours chosen)."""
        _check_lengths(prompts, seeds)
        pairs = zip(prompts, seeds, strict=True)
        return [_choose_colours(parse_prompt(prompt).scene, seed) for prompt, seed in pairs]

    def render(
        self,
        prompts: Sequence[str],
        seeds: Sequence[int],
        negative_prompt: str | None = None,
    ) -> list[Image.Image]:
        """One RGB image per prompt, seeded per prompt. ``negative_prompt`` is accepted and
        ignored: the toy world draws only what is named."""
        return [image for image, _ in self.render_with_layouts(prompts, seeds)]

    def render_with_layouts(
        self, prompts: Sequence[str], seeds: Sequence[int]
    ) -> list[tuple[Image.Image, Layout]]:
        """The images :meth:`render` makes, each with the :class:`~neuronattack.toy.draw.Layout`
        of what it shows; ``Layout.ignored_words`` lists the words the sentence could not use."""
        _check_lengths(prompts, seeds)
        rendered = []
        for prompt, seed in zip(prompts, seeds, strict=True):
            parsed = parse_prompt(prompt)
            image, layout = draw_with_layout(_choose_colours(parsed.scene, seed), seed, self.size)
            rendered.append((image, replace(layout, ignored_words=tuple(parsed.unknown_words))))
        return rendered


def parse_prompt(prompt: str) -> ParsedPrompt:
    """Read a sentence left to right into a scene; see the module docstring for the rules."""
    groups: list[_Group] = []
    colour: str | None = None
    pattern: str | None = None
    count: int | None = None
    after_with = False  # modifiers after "with" describe the previous object
    expect_letter = False
    background, props, sign, weather = PLAIN, set(), None, None
    unknown = []
    for token in _TOKEN.findall(prompt.lower()):
        if expect_letter and token in LETTERS:
            sign, expect_letter = token, False
            continue
        expect_letter = False
        modifier = token in COLOURS or token in _PATTERN_WORDS
        # "with" reaches back to the previous object only for the modifiers right after it.
        after_with = after_with and modifier
        if token in _SINGULAR or token in _PLURAL:
            plural = token in _PLURAL
            default = 2 if plural else 1
            groups.append(_Group(_SINGULAR.get(token) or _PLURAL[token], count or default,
                                 colour, pattern or PLAIN))
            colour = pattern = count = None
        elif modifier:
            if after_with and groups:
                _attach(groups[-1], token)
            elif token in COLOURS:
                colour = token
            else:
                pattern = _PATTERN_WORDS[token]
        elif token in _COUNTS:
            count = _COUNTS[token]
        elif token in _WEATHER_WORDS:
            weather = _WEATHER_WORDS[token]
            colour = pattern = count = None
        elif token in _BACKGROUND_WORDS or token in _PROP_WORDS:
            if token in _BACKGROUND_WORDS:
                background = token
            else:
                props.add(_PROP_WORDS[token])
            # Adjectives before a context word describe it ("a red ball"); the world draws
            # context in fixed colours, so they are dropped rather than moved to an object.
            colour = pattern = count = None
        elif token in ("sign", "signs", "letter", "number"):
            sign = "" if sign is None else sign
            expect_letter = token == "letter"
        elif token.isdigit() and len(token) == 1:
            sign = token  # numbers exist in the world only on signs
        elif token == "with":
            after_with = bool(groups)
        elif token in ("a", "an", "the"):
            # A new noun phrase: what came before it ("three elephants and a fish") is not its.
            colour = pattern = count = None
        elif token not in FILLER_WORDS:
            unknown.append(token)
    if groups:
        for word in (colour, pattern):
            if word is not None:
                _attach(groups[-1], word)
    scene = Scene(
        objects=tuple(SceneObject(g.cls, g.colour, g.pattern, g.count) for g in groups),
        background=background,
        props=tuple(prop for prop in PROPS if prop in props),
        sign=sign,
        weather=weather,
    )
    return ParsedPrompt(scene, unknown)


def _attach(group: _Group, word: str) -> None:
    if word in COLOURS:
        group.colour = word
    else:
        group.pattern = _PATTERN_WORDS[word]


def _choose_colours(scene: Scene, seed: int) -> Scene:
    """Give every uncoloured object a colour drawn from its own seeded stream.

    The stream is separate from the drawing's, so naming a colour does not move anything else.
    """
    rng = random.Random(f"{seed}:colours")
    objects = tuple(
        obj if obj.colour is not None else SceneObject(obj.cls, rng.choice(tuple(COLOURS)),
                                                       obj.pattern, obj.count)
        for obj in scene.objects
    )
    return replace(scene, objects=objects)


def _check_lengths(prompts: Sequence[str], seeds: Sequence[int]) -> None:
    if len(prompts) != len(seeds):
        raise NeuronAttackError(
            f"Got {len(prompts)} prompts but {len(seeds)} seeds; give one seed per prompt."
        )
