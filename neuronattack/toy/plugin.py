"""The toy world as a plug-in (entry point ``toy`` of ``neuronattack.plugins``, see
``models.plugins``): ``toy`` is then a CLIP spec (``toy`` or ``toy:/path/weights.safetensors``), a
class set, a generator and a checker, and the attack finds them as it finds real models.

Importing this module is cheap: each part imports its own module when first used.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from neuronattack.models.plugins import Plugin

NAME = "toy"


def load_clip(weights: str | None, device: str = "cpu"):
    """``toy``: the CLIP shipped in the package; ``toy:PATH``: other toy weights."""
    from neuronattack.toy.model import load_toy_clip

    return load_toy_clip(weights, device=device)


def class_names() -> list[str]:
    from neuronattack.toy.world import CLASSES

    return list(CLASSES)


def make_generator(device: str):
    """The renderer draws exactly what a sentence names, on the CPU: ``device`` is not used."""
    from neuronattack.toy.checker import ToyGenerator

    return ToyGenerator()


def make_checker(class_names: Sequence[str]):
    from neuronattack.toy.checker import ToyChecker

    return ToyChecker(class_names)


def drawable_words() -> list[str]:
    from neuronattack.toy.vocabulary import drawable_words as words

    return words()


def build_atlas(clip, atlas_dir: Path, show_progress: bool = True):
    """The toy CLIP's atlas in ``atlas_dir``, built as the demo builds it (its scenes are drawn
    into a sibling folder, ``<atlas_dir>-scenes``)."""
    from neuronattack.toy.atlas import build_toy_atlas

    atlas_dir = Path(atlas_dir)
    return build_toy_atlas(clip, atlas_dir, atlas_dir.with_name(f"{atlas_dir.name}-scenes"),
                           show_progress=show_progress)


TOY = Plugin(NAME, load_clip=load_clip, class_names=class_names, make_generator=make_generator,
             make_checker=make_checker, drawable_words=drawable_words, build_atlas=build_atlas)
