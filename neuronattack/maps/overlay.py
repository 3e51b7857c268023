"""Maps drawn over the image the model saw: red where a patch pushes the score up, blue down."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from PIL.PngImagePlugin import PngInfo
from torch import Tensor

from neuronattack.maps.patches import upsample

POSITIVE = np.array((214, 39, 40), np.float32)
NEGATIVE = np.array((31, 100, 200), np.float32)
MAX_ALPHA = 0.7  # the strongest patch still lets the picture show through
MIN_DISPLAY = 256  # small model inputs (the toy world's 64 px) are enlarged to be readable


def model_view(image: Image.Image, size: int, resample=Image.BICUBIC) -> Image.Image:
    """The square crop the model sees: shortest side resized to ``size``, centre-cropped, as
    open_clip's eval transform does, so the map lines up with the pixels it describes."""
    scale = size / min(image.size)
    resized = image.resize((max(size, round(image.width * scale)),
                            max(size, round(image.height * scale))), resample)
    left, top = (resized.width - size) // 2, (resized.height - size) // 2
    return resized.crop((left, top, left + size, top + size))


def overlay(image: Image.Image, values: Tensor, display: int | None = None) -> Image.Image:
    """``image`` (already the model's view) with the patch map ``values [grid_h, grid_w]`` blended
    in, coloured by sign, opacity by |value| relative to the map's largest |value|."""
    display = display or max(MIN_DISPLAY, image.width)
    base = np.asarray(image.convert("RGB").resize((display, display), Image.NEAREST), np.float32)
    smooth = upsample(values[None].double(), (display, display))[0].numpy()
    peak = float(np.abs(smooth).max())
    strength = np.abs(smooth) / peak if peak > 0 else np.zeros_like(smooth)
    colour = np.where((smooth >= 0)[..., None], POSITIVE, NEGATIVE)
    alpha = (MAX_ALPHA * strength)[..., None]
    blended = base * (1 - alpha) + colour * alpha
    return Image.fromarray(np.clip(blended, 0, 255).astype(np.uint8), "RGB")


def with_caption(picture: Image.Image, lines: list[str]) -> Image.Image:
    """The picture with a white strip of text lines underneath (PIL's default font)."""
    line_height = 14
    font = ImageFont.load_default(size=11)
    strip = Image.new("RGB", (picture.width, line_height * len(lines) + 6), "white")
    pen = ImageDraw.Draw(strip)
    for index, line in enumerate(lines):
        pen.text((4, 3 + index * line_height), line, fill=(30, 30, 30), font=font)
    canvas = Image.new("RGB", (picture.width, picture.height + strip.height), "white")
    canvas.paste(picture, (0, 0))
    canvas.paste(strip, (0, picture.height))
    return canvas


def save_map_png(picture: Image.Image, path, info: dict) -> None:
    """Write the PNG with ``info`` as JSON in a ``neuronattack`` text chunk (what it shows)."""
    chunk = PngInfo()
    chunk.add_text("neuronattack", json.dumps(info))
    path = Path(path)
    temporary = path.with_name(f".{path.name}.tmp")  # a kill never leaves half a PNG
    picture.save(temporary, format="PNG", pnginfo=chunk)
    os.replace(temporary, path)

