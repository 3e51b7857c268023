"""Pixels for toy scenes: each class a distinct silhouette, everything seeded, thousands per second.

Shapes are lists of primitives (ellipses, rectangles, polygons, lines) in a unit box, mapped onto
a jittered pixel box and mirrored at random. Only the parts with the ``body`` role take the
object's colour and pattern; eyes, wheels, windows, beaks and leaves keep fixed colours, so that
two classes in the same colour still differ in more than outline. Every object gets a contrasting
outline so a green frog on grass remains a frog.

Layout: the top third of the frame holds the sky props and the sign, the sides hold trees and
houses, and the objects stand in the lower two thirds, drawn over the props so that the class is
never hidden by context (only the ball, drawn last, can cover part of an object).

:func:`draw_with_layout` also reports exactly what ended up in the frame (:class:`Layout`): every
item is drawn through an :class:`_Ink` that paints its coverage into a mask as well, and a later
item's coverage is taken out of every earlier mask, so the masks are the visible pixels.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFilter, ImageFont

from neuronattack.toy.scenes import Scene, SceneObject, sample_scene
from neuronattack.toy.world import COLOURS, FADE_RANGE, FADED_RATE, PLAIN

RGB = tuple[int, int, int]
# A primitive in the unit box, y pointing down: (role, kind, coordinates). Kinds: "ellipse" and
# "rect" take (x0, y0, x1, y1); "poly" takes x, y pairs; "line" takes (x0, y0, x1, y1, width) with
# the width as a fraction of the box width.
Part = tuple[str, str, tuple[float, ...]]

ROLE_COLOURS: dict[str, RGB] = {
    "dark": (30, 30, 30),
    "light": (205, 230, 250),
    "accent": (245, 150, 30),
    "leaf": (50, 140, 50),
    "wood": (110, 70, 35),
}
SHADE = 0.6  # "shade" parts (a dog's ear, a bird's wing) are the body colour darkened


@dataclass(frozen=True)
class Shape:
    """A class's drawing: width/height ratio of its box and its parts, drawn in order."""

    aspect: float
    parts: tuple[Part, ...]


def _legs(xs: tuple[float, ...], top: float, width: float) -> tuple[Part, ...]:
    return tuple(("body", "rect", (x, top, x + width, 1.0)) for x in xs)


# Facing right. Animals differ in posture as much as in detail: the cat sits upright, the dog
# stands with short legs and a snout, the horse has long legs and a long neck, the frog squats.
SHAPES: dict[str, Shape] = {
    "cat": Shape(0.8, (
        ("body", "ellipse", (0.12, 0.42, 0.78, 1.0)),
        ("body", "ellipse", (0.35, 0.12, 0.88, 0.52)),
        ("body", "poly", (0.38, 0.25, 0.42, 0.0, 0.56, 0.16)),
        ("body", "poly", (0.68, 0.16, 0.84, 0.0, 0.86, 0.28)),
        ("body", "poly", (0.16, 0.92, 0.0, 0.72, 0.02, 0.42, 0.1, 0.42, 0.1, 0.68, 0.24, 0.84)),
        ("dark", "ellipse", (0.5, 0.26, 0.57, 0.33)),
        ("dark", "ellipse", (0.7, 0.26, 0.77, 0.33)),
    )),
    "dog": Shape(1.3, (
        ("body", "ellipse", (0.12, 0.32, 0.78, 0.7)),
        *_legs((0.18, 0.32, 0.56, 0.68), 0.55, 0.1),
        ("body", "ellipse", (0.62, 0.05, 0.92, 0.42)),
        ("body", "rect", (0.82, 0.2, 1.0, 0.36)),
        ("body", "poly", (0.16, 0.42, 0.0, 0.12, 0.06, 0.1, 0.24, 0.38)),
        ("shade", "ellipse", (0.6, 0.08, 0.72, 0.5)),
        ("dark", "ellipse", (0.95, 0.19, 1.0, 0.26)),
        ("dark", "ellipse", (0.78, 0.14, 0.84, 0.21)),
    )),
    "bird": Shape(1.0, (
        ("body", "ellipse", (0.18, 0.32, 0.76, 0.8)),
        ("body", "ellipse", (0.52, 0.12, 0.86, 0.46)),
        ("body", "poly", (0.22, 0.5, 0.0, 0.38, 0.02, 0.66)),
        ("shade", "poly", (0.26, 0.48, 0.62, 0.46, 0.4, 0.7)),
        ("accent", "poly", (0.84, 0.24, 1.0, 0.31, 0.84, 0.38)),
        ("dark", "ellipse", (0.7, 0.22, 0.77, 0.29)),
        ("dark", "line", (0.42, 0.78, 0.42, 1.0, 0.05)),
        ("dark", "line", (0.54, 0.78, 0.54, 1.0, 0.05)),
    )),
    "fish": Shape(1.7, (
        ("body", "ellipse", (0.2, 0.18, 0.92, 0.82)),
        ("body", "poly", (0.3, 0.5, 0.0, 0.12, 0.0, 0.88)),
        ("shade", "poly", (0.42, 0.22, 0.58, 0.0, 0.64, 0.24)),
        ("shade", "poly", (0.5, 0.55, 0.62, 0.72, 0.66, 0.55)),
        ("dark", "ellipse", (0.74, 0.34, 0.81, 0.45)),
    )),
    "frog": Shape(1.4, (
        ("body", "ellipse", (0.14, 0.32, 0.86, 1.0)),
        ("body", "ellipse", (0.2, 0.12, 0.42, 0.46)),
        ("body", "ellipse", (0.58, 0.12, 0.8, 0.46)),
        ("body", "poly", (0.0, 1.0, 0.12, 0.6, 0.26, 0.72, 0.14, 1.0)),
        ("body", "poly", (1.0, 1.0, 0.88, 0.6, 0.74, 0.72, 0.86, 1.0)),
        ("dark", "ellipse", (0.26, 0.2, 0.36, 0.32)),
        ("dark", "ellipse", (0.64, 0.2, 0.74, 0.32)),
        ("dark", "line", (0.32, 0.62, 0.68, 0.62, 0.04)),
    )),
    "horse": Shape(1.1, (
        ("body", "ellipse", (0.14, 0.3, 0.76, 0.6)),
        *_legs((0.18, 0.28, 0.58, 0.68), 0.45, 0.07),
        ("body", "poly", (0.58, 0.42, 0.72, 0.06, 0.86, 0.08, 0.76, 0.46)),
        ("body", "poly", (0.72, 0.04, 0.86, 0.0, 1.0, 0.2, 0.96, 0.28, 0.8, 0.18)),
        ("dark", "poly", (0.66, 0.12, 0.74, 0.0, 0.7, 0.4, 0.62, 0.4)),
        ("dark", "poly", (0.16, 0.36, 0.04, 0.52, 0.08, 0.76, 0.2, 0.44)),
        ("dark", "ellipse", (0.86, 0.07, 0.91, 0.12)),
    )),
    "car": Shape(1.8, (
        ("body", "rect", (0.0, 0.42, 1.0, 0.8)),
        ("body", "poly", (0.18, 0.44, 0.3, 0.08, 0.7, 0.08, 0.84, 0.44)),
        ("light", "poly", (0.3, 0.42, 0.37, 0.16, 0.63, 0.16, 0.72, 0.42)),
        ("dark", "ellipse", (0.1, 0.62, 0.32, 1.0)),
        ("dark", "ellipse", (0.66, 0.62, 0.88, 1.0)),
        ("accent", "rect", (0.94, 0.48, 1.0, 0.58)),
    )),
    "truck": Shape(2.0, (
        ("body", "rect", (0.0, 0.0, 0.66, 0.78)),
        ("body", "poly", (0.68, 0.78, 0.68, 0.26, 0.9, 0.26, 1.0, 0.5, 1.0, 0.78)),
        ("light", "poly", (0.74, 0.32, 0.88, 0.32, 0.95, 0.5, 0.74, 0.5)),
        ("dark", "ellipse", (0.05, 0.66, 0.2, 1.0)),
        ("dark", "ellipse", (0.3, 0.66, 0.45, 1.0)),
        ("dark", "ellipse", (0.76, 0.66, 0.91, 1.0)),
    )),
    "ship": Shape(1.8, (
        ("body", "poly", (0.0, 0.5, 1.0, 0.5, 0.84, 0.95, 0.12, 0.95)),
        ("body", "rect", (0.28, 0.26, 0.7, 0.5)),
        ("accent", "rect", (0.44, 0.0, 0.56, 0.26)),
        ("light", "ellipse", (0.33, 0.32, 0.41, 0.44)),
        ("light", "ellipse", (0.45, 0.32, 0.53, 0.44)),
        ("light", "ellipse", (0.57, 0.32, 0.65, 0.44)),
        ("dark", "rect", (0.0, 0.48, 1.0, 0.56)),
    )),
    "airplane": Shape(1.8, (
        ("body", "ellipse", (0.0, 0.38, 1.0, 0.64)),
        ("body", "poly", (0.02, 0.46, 0.06, 0.0, 0.18, 0.0, 0.26, 0.42)),
        ("shade", "poly", (0.38, 0.52, 0.62, 0.52, 0.44, 1.0, 0.32, 1.0)),
        ("light", "rect", (0.3, 0.44, 0.8, 0.5)),
        ("dark", "poly", (0.86, 0.42, 0.96, 0.46, 0.86, 0.5)),
    )),
    "apple": Shape(1.0, (
        ("body", "ellipse", (0.04, 0.2, 0.6, 0.96)),
        ("body", "ellipse", (0.4, 0.2, 0.96, 0.96)),
        ("body", "ellipse", (0.2, 0.4, 0.8, 1.0)),
        ("wood", "line", (0.5, 0.28, 0.46, 0.0, 0.07)),
        ("leaf", "ellipse", (0.52, 0.02, 0.86, 0.18)),
    )),
    "flower": Shape(0.75, (
        *(
            ("body", "ellipse", (0.5 + 0.3 * dx - 0.19, 0.3 + 0.22 * dy - 0.15,
                                 0.5 + 0.3 * dx + 0.19, 0.3 + 0.22 * dy + 0.15))
            for dx, dy in ((0, -1), (0.87, -0.5), (0.87, 0.5), (0, 1), (-0.87, 0.5), (-0.87, -0.5))
        ),
        ("leaf", "line", (0.5, 0.5, 0.5, 1.0, 0.09)),
        ("leaf", "ellipse", (0.52, 0.7, 0.92, 0.84)),
        ("wood", "ellipse", (0.36, 0.19, 0.64, 0.41)),
    )),
}

SUN: RGB = (250, 205, 40)
MOON: RGB = (240, 235, 190)
CLOUD: RGB = (246, 246, 250)
CANOPY: RGB = (40, 115, 45)
WALL: RGB = (225, 205, 160)
ROOF: RGB = (165, 55, 45)
BOARD: RGB = (248, 246, 228)
RAIN: RGB = (170, 200, 240)
BALL: tuple[RGB, ...] = ((220, 40, 40), (40, 90, 220), (250, 215, 40))


Box = tuple[float, float, float, float]
Mask = np.ndarray  # bool [size, size], True where the item is visible in the final image


@dataclass(frozen=True, eq=False)
class DrawnObject:
    """One drawn copy of a scene object (an object with ``count`` 3 gives three of these).

    ``box`` is the pixel box (x0, y0, x1, y1), ends exclusive, of everything the copy painted,
    occluded or not; ``mask`` the pixels of the final image this copy covers, outline included,
    after anything drawn later (the ball) is taken out; ``size`` is ``mask.sum()``, the measure
    of recognisability (:func:`neuronattack.toy.world.min_training_size`). ``scene_index`` is
    the index of the object in ``scene.objects`` (0 is the main object).
    """

    cls: str
    colour: str
    pattern: str
    box: tuple[int, int, int, int]
    mask: Mask
    size: int
    scene_index: int
    visibility: float = 1.0

    def _key(self) -> tuple:
        return (self.cls, self.colour, self.pattern, self.box, self.size, self.scene_index,
                self.visibility)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DrawnObject):
            return NotImplemented
        return self._key() == other._key() and np.array_equal(self.mask, other.mask)

    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True, eq=False)
class Layout:
    """What an image shows, pixel-exact: the ground truth of the toy world's judges.

    ``objects`` holds one :class:`DrawnObject` per drawn copy, in drawing order; ``sign_mask``
    is the visible board and post (None without a sign); ``prop_masks`` maps each drawn prop to
    its visible pixels; ``weather`` is drawn over the background only, behind everything;
    ``ignored_words`` are the words of the sentence the renderer could not draw (empty when
    drawn from a scene).
    """

    objects: tuple[DrawnObject, ...]
    sign_mask: Mask | None
    prop_masks: Mapping[str, Mask]
    background: str
    weather: str | None = None
    ignored_words: tuple[str, ...] = field(default=())

    def sizes(self, cls: str) -> list[int]:
        """Visible pixel counts of every drawn copy of ``cls``."""
        return [obj.size for obj in self.objects if obj.cls == cls]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Layout):
            return NotImplemented
        return (
            self.objects == other.objects
            and _same_mask(self.sign_mask, other.sign_mask)
            and self.prop_masks.keys() == other.prop_masks.keys()
            and all(np.array_equal(self.prop_masks[k], other.prop_masks[k])
                    for k in self.prop_masks)
            and (self.background, self.weather, self.ignored_words)
            == (other.background, other.weather, other.ignored_words)
        )

    __hash__ = None  # type: ignore[assignment]


def _same_mask(first: Mask | None, second: Mask | None) -> bool:
    if first is None or second is None:
        return first is second
    return np.array_equal(first, second)


class _Ink:
    """Paints on the canvas and, in 255, on the coverage mask of the item being drawn.

    ``begin`` starts an item; ``end`` returns its coverage. An owner map keeps, per pixel, the
    last item that painted it, which is what the visible masks are read from.
    """

    def __init__(self, canvas: Image.Image) -> None:
        self.canvas = canvas
        self.pen = ImageDraw.Draw(canvas)
        self.owner = np.full(canvas.size[::-1], -1, dtype=np.int16)
        self.items = 0

    def begin(self) -> None:
        self.coverage = Image.new("L", self.canvas.size)
        self.cover = ImageDraw.Draw(self.coverage)

    def end(self) -> int:
        """Close the item; returns its index in the owner map."""
        self.owner[np.asarray(self.coverage) > 0] = self.items
        self.items += 1
        return self.items - 1

    def extent(self) -> tuple[int, int, int, int]:
        """The pixel box (x0, y0, x1, y1), ends exclusive, of the current item's coverage."""
        x0, y0, x1, y1 = self.coverage.getbbox() or (0, 0, 0, 0)
        return x0, y0, x1, y1

    def visible(self, item: int) -> Mask:
        mask = self.owner == item
        mask.flags.writeable = False
        return mask

    def ellipse(self, xy, fill) -> None:
        self.pen.ellipse(xy, fill=fill)
        self.cover.ellipse(xy, fill=255)

    def rectangle(self, xy, fill, outline=None) -> None:
        self.pen.rectangle(xy, fill=fill, outline=outline)
        self.cover.rectangle(xy, fill=255, outline=255 if outline is not None else None)

    def polygon(self, xy, fill) -> None:
        self.pen.polygon(xy, fill=fill)
        self.cover.polygon(xy, fill=255)

    def line(self, xy, fill, width: int) -> None:
        self.pen.line(xy, fill=fill, width=width)
        self.cover.line(xy, fill=255, width=width)

    def pieslice(self, xy, start: float, end: float, fill) -> None:
        self.pen.pieslice(xy, start, end, fill=fill)
        self.cover.pieslice(xy, start, end, fill=255)

    def text(self, xy, text: str, fill, font, anchor: str) -> None:
        self.pen.text(xy, text, fill=fill, font=font, anchor=anchor)
        self.cover.text(xy, text, fill=255, font=font, anchor=anchor)

    def paste(self, colour, mask: Image.Image) -> None:
        self.canvas.paste(colour, mask=mask)
        self.coverage.paste(255, mask=mask)


def draw(scene: Scene, seed: int, size: int = 64) -> Image.Image:
    """Draw ``scene`` as an RGB image; the same scene and seed always give the same pixels.

    The seed moves, sizes and mirrors things and picks background and pattern phases; what is
    drawn is entirely the scene's.
    """
    return draw_with_layout(scene, seed, size)[0]


def fade_of(seed: int) -> float:
    """The opacity the objects of an image drawn with ``seed`` get: 1, or in a share
    :data:`~neuronattack.toy.world.FADED_RATE` of images a value in ``FADE_RANGE``.

    Drawn from its own stream, so that what a sentence names never changes whether it is faded.
    """
    rng = random.Random(f"{seed}:fade")
    return rng.uniform(*FADE_RANGE) if rng.random() < FADED_RATE else 1.0


def draw_with_layout(scene: Scene, seed: int, size: int = 64) -> tuple[Image.Image, Layout]:
    """The image :func:`draw` makes, and the :class:`Layout` of what it shows."""
    visibility = fade_of(seed)
    rng = random.Random(seed)
    noise = np.random.default_rng(rng.getrandbits(64))
    backdrop = _background(scene.background, size, noise)
    if scene.weather == "rain":
        _rain(backdrop, noise)
    canvas = Image.fromarray(backdrop, "RGB")
    ink = _Ink(canvas)
    props: dict[str, int] = {}
    sign: int | None = None
    top_items = [prop for prop in scene.props if prop in ("sun", "moon", "cloud")]
    if scene.sign is not None:
        top_items.append("sign")
    top_slots = rng.sample(range(4), len(top_items))
    side_slots = rng.sample(range(2), 2)
    for item, slot in zip(top_items, top_slots, strict=True):
        cx = (slot + 0.5) * size / 4 + rng.uniform(-2, 2) * size / 64
        cy = rng.uniform(0.1, 0.17) * size
        ink.begin()
        if item == "sign":
            _sign(ink, cx, cy, scene.sign, size)
            sign = ink.end()
        else:
            _TOP_PROPS[item](ink, cx, cy, size, rng)
            props[item] = ink.end()
    side_items = [prop for prop in scene.props if prop in ("tree", "house")]
    for item, side in zip(side_items, side_slots[: len(side_items)], strict=True):
        cx = (0.14 + 0.72 * side) * size + rng.uniform(-3, 3) * size / 64
        ink.begin()
        _SIDE_PROPS[item](ink, cx, rng.uniform(0.55, 0.72) * size, size, rng)
        props[item] = ink.end()
    drawn = []
    for index, obj, box, flip in _layout(scene, size, rng):
        ink.begin()
        under = np.asarray(canvas, dtype=np.float32) if visibility < 1 else None
        _draw_object(ink, obj, box, flip, size, rng, noise)
        if under is not None:
            _fade(canvas, under, np.asarray(ink.coverage) > 0, visibility)
        drawn.append((index, obj, ink.extent(), ink.end()))
    if "ball" in scene.props:
        ink.begin()
        _ball(ink, rng.uniform(0.12, 0.88) * size, rng.uniform(0.84, 0.9) * size, size)
        props["ball"] = ink.end()
    objects = []
    for index, obj, box, item in drawn:
        mask = ink.visible(item)
        objects.append(DrawnObject(obj.cls, obj.colour, obj.pattern, box, mask, int(mask.sum()),
                                   index, round(visibility, 4)))
    layout = Layout(
        objects=tuple(objects),
        sign_mask=None if sign is None else ink.visible(sign),
        prop_masks={prop: ink.visible(props[prop]) for prop in scene.props},
        background=scene.background,
        weather=scene.weather,
    )
    return canvas, layout


def _fade(canvas: Image.Image, under: np.ndarray, covered: np.ndarray, opacity: float) -> None:
    """Blend what was just drawn over ``covered`` back towards what lay under it [H, W, 3]."""
    drawn = np.asarray(canvas, dtype=np.float32)
    mixed = np.where(covered[..., None], under + opacity * (drawn - under), drawn)
    canvas.paste(Image.fromarray(np.rint(mixed).astype(np.uint8), "RGB"))


def _layout(
    scene: Scene, size: int, rng: random.Random
) -> list[tuple[int, SceneObject, Box, bool]]:
    """Boxes for every copy of every object: side by side in the lower two thirds, in random order.

    Boxes keep the class's aspect ratio and shrink with the number of copies; tops stay below
    0.3 of the frame, where the sign and sky props are. Each comes with its object's index in
    ``scene.objects`` and whether it is mirrored.
    """
    copies = [(index, obj) for index, obj in enumerate(scene.objects) for _ in range(obj.count)]
    if not copies:
        return []  # a sentence may name only context
    rng.shuffle(copies)
    low, high = {1: (0.42, 0.56), 2: (0.32, 0.42), 3: (0.26, 0.34)}.get(len(copies), (0.2, 0.27))
    margin = 0.03 * size
    slot = (size - 2 * margin) / len(copies)
    boxes = []
    for position, (index, obj) in enumerate(copies):
        aspect = SHAPES[obj.cls].aspect
        height = rng.uniform(low, high) * size
        width = min(aspect * height, 0.95 * slot)
        height = width / aspect
        centre = margin + (position + 0.5) * slot + rng.uniform(-0.4, 0.4) * (slot - width)
        bottom = rng.uniform(max(0.72 * size, height + 0.3 * size), 0.97 * size)
        box = (centre - width / 2, bottom - height, centre + width / 2, bottom)
        boxes.append((index, obj, box, rng.random() < 0.5))
    return boxes


def _draw_object(
    ink: _Ink,
    obj: SceneObject,
    box: Box,
    flip: bool,
    size: int,
    rng: random.Random,
    noise: np.random.Generator,
) -> None:
    """Outline, body in the object's colour and pattern, then the fixed-colour details."""
    parts = [(role, kind, _to_pixels(kind, coords, box, flip)) for role, kind, coords in
             SHAPES[obj.cls].parts]
    box_width = box[2] - box[0]
    silhouette = Image.new("L", ink.canvas.size)
    body = Image.new("L", ink.canvas.size)
    for role, kind, coords in parts:
        _primitive(ImageDraw.Draw(silhouette), kind, coords, 255, box_width)
        if role == "body":
            _primitive(ImageDraw.Draw(body), kind, coords, 255, box_width)
    if obj.colour is None:
        raise ValueError(f"The {obj.cls} has no colour; ToyRenderer.render_scenes picks one.")
    fill = COLOURS[obj.colour]
    light = _luminance(fill) > 110
    ink.paste((20, 20, 20) if light else (225, 225, 225), mask=silhouette.filter(_DILATE))
    ink.paste(fill, mask=silhouette)
    if obj.pattern != PLAIN:
        pattern = Image.fromarray(_pattern(obj.pattern, size, rng, noise), "L")
        pattern_ink = (30, 30, 30) if light else (235, 235, 235)
        ink.paste(pattern_ink, mask=ImageChops.multiply(body, pattern))
    shade = tuple(int(SHADE * channel) for channel in fill)
    for role, kind, coords in parts:
        if role != "body":
            colour = shade if role == "shade" else ROLE_COLOURS[role]
            _primitive(ink, kind, coords, colour, box_width)


_DILATE = ImageFilter.MaxFilter(3)


def _to_pixels(kind: str, coords: tuple[float, ...], box: Box, flip: bool) -> tuple[float, ...]:
    x0, y0, x1, y1 = box
    width, height = x1 - x0, y1 - y0
    points = coords[:-1] if kind == "line" else coords
    mapped: list[float] = []
    for i in range(0, len(points), 2):
        u, v = points[i], points[i + 1]
        mapped += [x0 + (1 - u if flip else u) * width, y0 + v * height]
    if kind in ("ellipse", "rect"):
        xa, ya, xb, yb = mapped
        mapped = [min(xa, xb), min(ya, yb), max(xa, xb), max(ya, yb)]
    return tuple(mapped) + ((coords[-1],) if kind == "line" else ())


def _primitive(
    pen: ImageDraw.ImageDraw | _Ink, kind: str, coords: tuple[float, ...], colour,
    box_width: float,
) -> None:
    if kind == "ellipse":
        pen.ellipse(coords, fill=colour)
    elif kind == "rect":
        pen.rectangle(coords, fill=colour)
    elif kind == "poly":
        pen.polygon(coords, fill=colour)
    else:
        pen.line(coords[:4], fill=colour, width=max(1, round(coords[4] * box_width)))


def _luminance(colour: RGB) -> float:
    red, green, blue = colour
    return 0.299 * red + 0.587 * green + 0.114 * blue


def _pattern(name: str, size: int, rng: random.Random, noise: np.random.Generator) -> np.ndarray:
    """A full-frame 0/255 texture with a random phase; the body mask clips it to the object."""
    y, x = np.mgrid[0:size, 0:size]
    scale = size / 64
    phase = noise.integers(0, 16)
    if name == "striped":
        direction = rng.choice(((1, 0), (0, 1), (1, 1), (1, -1)))
        period = max(3, round(4 * scale))
        on = ((direction[0] * x + direction[1] * y + phase) % period) < period / 2
    elif name == "dotted":
        period = max(4, round(5 * scale))
        dx = (x + phase) % period - period / 2
        dy = (y + phase) % period - period / 2
        on = dx * dx + dy * dy <= (0.3 * period) ** 2
    else:
        cell = max(2, round(3 * scale))
        on = ((x + phase) // cell + (y + phase) // cell) % 2 == 0
    return on.astype(np.uint8) * 255


def _background(name: str, size: int, noise: np.random.Generator) -> np.ndarray:
    """A full-frame background as uint8 [size, size, 3]; each kind has its own texture."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    scale = size / 64
    ramp = (y / size)[..., None]  # 0 at the top, 1 at the bottom

    def blend(top: RGB, bottom: RGB) -> np.ndarray:
        return np.asarray(top, np.float32) * (1 - ramp) + np.asarray(bottom, np.float32) * ramp

    if name == "water":
        image = blend((35, 85, 170), (25, 70, 150))
        spacing = 7 * scale
        wave = (y + 1.5 * scale * np.sin(2 * np.pi * x / (14 * scale) + noise.uniform(0, 6.3)))
        image[(wave + noise.uniform(0, spacing)) % spacing < 1.3 * scale] = (125, 175, 235)
    elif name == "grass":
        image = blend((80, 160, 60), (60, 140, 45))
        streaks = np.repeat(noise.random((size // 3 + 1, size)), 3, axis=0)[:size]
        image[streaks > 0.75] = (40, 105, 35)
        image[streaks < 0.12] = (120, 190, 85)
    elif name == "sky":
        image = blend((85, 145, 230), (175, 210, 248))
    elif name == "snow":
        image = blend((225, 232, 245), (245, 248, 252))
        image[noise.random((size, size)) < 0.04] = (190, 205, 230)
    elif name == "sand":
        image = blend((226, 200, 145), (214, 186, 130))
        image += noise.normal(0, 7, (size, size, 1)).astype(np.float32)
        image[noise.random((size, size)) < 0.02] = (160, 130, 90)
    elif name == "road":
        image = np.full((size, size, 3), 85, np.float32) + noise.normal(0, 5, (size, size, 1))
        dash = (x + noise.uniform(0, 12 * scale)) % (12 * scale) < 6 * scale
        for row in (0.24, 0.93):
            band = np.abs(y - row * size) < scale
            image[band & dash] = (235, 235, 230)
    elif name == "night":
        image = blend((10, 14, 40), (28, 32, 70))
        image[noise.random((size, size)) < 0.008] = (235, 235, 205)
    else:
        tint = noise.uniform(-8, 8)
        image = blend((205 + tint, 200 + tint, 190 + tint), (185 + tint, 180 + tint, 172 + tint))
    return np.clip(image, 0, 255).astype(np.uint8)


def _rain(backdrop: np.ndarray, noise: np.random.Generator) -> None:
    """Slanted pale-blue streaks over a background [H, W, 3], in place."""
    size = backdrop.shape[0]
    y, x = np.mgrid[0:size, 0:size]
    period = max(5, round(6 * size / 64))
    column = (x + y // 3 + noise.integers(0, period)) % period == 0
    dashes = (y + noise.integers(0, 8) + 4 * (x // period)) % 8 < 4
    backdrop[column & dashes] = RAIN


def _sun(ink: _Ink, cx, cy, size, rng) -> None:
    r = rng.uniform(4, 5.5) * size / 64
    for k in range(8):
        angle = k * np.pi / 4
        dx, dy = np.cos(angle), np.sin(angle)
        ink.line((cx + dx * (r + 1), cy + dy * (r + 1), cx + dx * (r + 3.5), cy + dy * (r + 3.5)),
                 fill=SUN, width=1)
    ink.ellipse((cx - r, cy - r, cx + r, cy + r), fill=SUN)


def _moon(ink: _Ink, cx, cy, size, rng) -> None:
    r = rng.uniform(4.5, 6) * size / 64
    crescent = Image.new("L", ink.canvas.size)
    cut = ImageDraw.Draw(crescent)
    cut.ellipse((cx - r, cy - r, cx + r, cy + r), fill=255)
    sx, sy = cx + 0.55 * r, cy - 0.3 * r
    cut.ellipse((sx - r, sy - r, sx + r, sy + r), fill=0)
    ink.paste(MOON, mask=crescent)


def _cloud(ink: _Ink, cx, cy, size, rng) -> None:
    k = rng.uniform(0.8, 1.1) * size / 64
    for dx, dy, rx, ry in ((-4, 1, 4, 3), (0, -1, 5, 4), (4, 1, 4, 3)):
        x, y = cx + dx * k, cy + dy * k
        ink.ellipse((x - rx * k, y - ry * k, x + rx * k, y + ry * k), fill=CLOUD)


def _tree(ink: _Ink, cx, bottom, size, rng) -> None:
    k = rng.uniform(0.9, 1.2) * size / 64
    ink.rectangle((cx - 1.5 * k, bottom - 9 * k, cx + 1.5 * k, bottom), fill=ROLE_COLOURS["wood"])
    ink.ellipse((cx - 6 * k, bottom - 21 * k, cx + 6 * k, bottom - 7 * k), fill=CANOPY)


def _house(ink: _Ink, cx, bottom, size, rng) -> None:
    k = rng.uniform(0.9, 1.2) * size / 64
    ink.rectangle((cx - 6 * k, bottom - 10 * k, cx + 6 * k, bottom), fill=WALL)
    ink.polygon((cx - 8 * k, bottom - 10 * k, cx, bottom - 17 * k, cx + 8 * k, bottom - 10 * k),
                fill=ROOF)
    ink.rectangle((cx - 1.5 * k, bottom - 5 * k, cx + 1.5 * k, bottom), fill=ROLE_COLOURS["wood"])


def _ball(ink: _Ink, cx: float, cy: float, size: int) -> None:
    r = 4 * size / 64
    for k, colour in enumerate(BALL):
        ink.pieslice((cx - r, cy - r, cx + r, cy + r), 120 * k, 120 * (k + 1), fill=colour)


def _sign(ink: _Ink, cx: float, cy: float, glyph: str, size: int) -> None:
    """A board on a post showing one upper-case glyph, large enough to read at 64 pixels."""
    k = size / 64
    ink.line((cx, cy, cx, cy + 13 * k), fill=ROLE_COLOURS["wood"], width=max(1, round(2 * k)))
    ink.rectangle((cx - 7 * k, cy - 7 * k, cx + 7 * k, cy + 6 * k), fill=BOARD,
                  outline=ROLE_COLOURS["dark"])
    if glyph:
        ink.text((cx, cy), glyph.upper(), fill=ROLE_COLOURS["dark"], font=_font(round(12 * k)),
                 anchor="mm")


@lru_cache(maxsize=8)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


_TOP_PROPS = {"sun": _sun, "moon": _moon, "cloud": _cloud}
_SIDE_PROPS = {"tree": _tree, "house": _house}


def smallest_training_sizes(count: int, seed: int = 0) -> dict[str, int]:
    """The smallest visible size (pixels) of every class over ``count`` sampled training scenes.

    Every drawn copy counts, main object or not. This is how
    :data:`neuronattack.toy.world.MIN_TRAINING_SIZE` was measured.
    """
    rng = random.Random(f"training-sizes:{seed}")
    smallest: dict[str, int] = {}
    for _ in range(count):
        scene = sample_scene(rng)
        for obj in draw_with_layout(scene, rng.getrandbits(32))[1].objects:
            smallest[obj.cls] = min(obj.size, smallest.get(obj.cls, obj.size))
    return smallest
