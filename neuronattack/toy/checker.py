"""The toy renderer as an attack generator, and validity and kind by construction.

The renderer knows what it drew (``ToyRenderer.render_with_layouts``: every drawn copy's class and
visible pixels, the sign, the words it ignored), so the checker needs no second model and never
guesses:

- valid: the source is drawn, at least one copy as large as the smallest copy of its class in
  training scenes (``toy.world.min_training_size``: still recognisable, not a few pixels in a
  crowd), and the target is not drawn;
- kind: ``typographic`` when a sign is visible, else ``distractor`` when an object of another class
  of the judging set is drawn, else ``contextual``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from neuronattack.models.checking import Verdict, image_kind
from neuronattack.models.generators import RenderResult
from neuronattack.toy.renderer import ToyRenderer
from neuronattack.toy.world import min_training_size


@lru_cache(maxsize=512)
def _render(prompt: str, seed: int, size: int):
    """One image and its layout; the checker asks for the images the generator just drew, so
    they are drawn once. Callers must not modify the image."""
    return ToyRenderer(size).render_with_layouts([prompt], [seed])[0]


@dataclass(frozen=True)
class ToyRenderConfig:
    """The one render setting a campaign asks a generator for."""

    batch_size: int = 64


class ToyGenerator:
    """``ToyRenderer`` behind the ``Generator`` protocol of ``models.generators``."""

    name = "toy"

    def __init__(self, size: int = 64) -> None:
        self.renderer = ToyRenderer(size)
        self.config = ToyRenderConfig()

    @property
    def settings(self) -> dict:
        return {"model": "toy renderer", "revision": None, "steps": None, "guidance": None,
                "size": [self.renderer.size, self.renderer.size], "scheduler": None,
                "dtype": None, "meaningless": False}

    def describe(self) -> str:
        return f"toy renderer, {self.renderer.size}x{self.renderer.size}, draws what it parses"

    def render(self, prompts: Sequence[str], seeds: Sequence[int],
               negative_prompt: str | None = None) -> list[RenderResult]:
        size = self.renderer.size
        return [RenderResult(_render(prompt, seed, size)[0], seed, seed, False, False, None)
                for prompt, seed in zip(prompts, seeds, strict=True)]


class ToyChecker:
    """Validity and kind read off the layout of each image (see the module docstring)."""

    name = "toy"

    def __init__(self, class_names: Sequence[str], size: int = 64) -> None:
        self.class_names = list(class_names)
        self.renderer = ToyRenderer(size)

    def check(self, images, prompts: Sequence[str], source: int, target: int,
              seeds: Sequence[int] | None = None) -> list[Verdict]:
        """``seeds``: the seeds the images were rendered with (the layout depends on them)."""
        if seeds is None:
            raise ValueError("The toy checker needs each image's seed to know its layout.")
        source_name, target_name = self.class_names[source], self.class_names[target]
        verdicts = []
        size = self.renderer.size
        for prompt, seed in zip(prompts, seeds, strict=True):
            layout = _render(prompt, seed, size)[1]
            copies = [obj for obj in layout.objects if obj.cls == source_name]
            largest = max((obj.size for obj in copies), default=0)
            present = bool(copies)
            recognisable = largest >= min_training_size(source_name)
            absent = not layout.sizes(target_name)
            sign = layout.sign_mask is not None and bool(layout.sign_mask.any())
            distractors = tuple(sorted({obj.cls for obj in layout.objects
                                        if obj.cls in self.class_names
                                        and obj.cls not in (source_name, target_name)}))
            verdicts.append(Verdict(
                present and recognisable and absent, present, absent, not sign, self.name,
                recognisable=recognisable, distractors=distractors,
                kind=image_kind(sign, distractors),
                details={"source_size": largest,
                         "min_training_size": min_training_size(source_name),
                         # Faded copies occur in training as often as here: reported, not judged.
                         "source_visibility": max((obj.visibility for obj in copies), default=0.0),
                         "ignored_words": list(layout.ignored_words)}))
        return verdicts
