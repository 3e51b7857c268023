"""A segmentation set drawn by the toy renderer, whose masks are exact (``draw_with_layout``).

Scenes come from the held-out (cue-free) distribution with one kind of object, so the class is
unambiguous; props, signs and backgrounds stay in, as distractors the map should leave out. The
folder has the format ``neuronattack segment`` reads (see ``segment``'s docstring).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
from PIL import Image

from neuronattack.toy.draw import draw_with_layout
from neuronattack.toy.scenes import sample_scene


def write_toy_masks(folder: Path, count: int, seed: int = 0) -> Path:
    """``count`` toy scenes with the main class's pixel-exact mask; kept when already complete."""
    folder = Path(folder)
    images_dir, masks_dir = folder / "images", folder / "masks"
    labels_path = folder / "labels.json"
    if labels_path.exists() and len(json.loads(labels_path.read_text())) == count:
        return folder
    images_dir.mkdir(parents=True, exist_ok=True)
    masks_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(f"toy-masks:{seed}")
    labels = {}
    for index in range(count):
        scene = sample_scene(rng, with_cues=False, max_kinds=1)
        image, layout = draw_with_layout(scene, seed=seed * 1_000_003 + index)
        mask = np.zeros(image.size[::-1], dtype=bool)
        for drawn in layout.objects:
            if drawn.cls == scene.main_class:
                mask |= drawn.mask
        name = f"{index:05d}"
        image.save(images_dir / f"{name}.png")
        Image.fromarray(mask.astype(np.uint8) * 255).save(masks_dir / f"{name}.png")
        labels[name] = scene.main_class
    labels_path.write_text(json.dumps(labels, indent=1) + "\n")  # last: marks the set complete
    return folder
