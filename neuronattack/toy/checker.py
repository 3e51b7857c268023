"""The toy renderer as an attack generator, and validity by construction.

The renderer knows what it drew, so the checker needs no second model: an image is valid when the
scene parsed from its sentence holds the source object, not the target, and no sign (a sign shows a
glyph: rendered text, so a success through it would be a typographic attack).
"""

from __future__ import annotations

from collections.abc import Sequence

from neuronattack.attack.judge import Verdict
from neuronattack.models.generators import RenderResult
from neuronattack.toy.renderer import ToyRenderer


class ToyGenerator:
    """``ToyRenderer`` behind the ``Generator`` protocol of ``models.generators``."""

    name = "toy"

    def __init__(self, size: int = 64) -> None:
        self.renderer = ToyRenderer(size)

    @property
    def settings(self) -> dict:
        return {"model": "toy renderer", "revision": None, "steps": None, "guidance": None,
                "size": [self.renderer.size, self.renderer.size], "scheduler": None,
                "dtype": None, "meaningless": False}

    def describe(self) -> str:
        return f"toy renderer, {self.renderer.size}x{self.renderer.size}, draws what it parses"

    def render(self, prompts: Sequence[str], seeds: Sequence[int],
               negative_prompt: str | None = None) -> list[RenderResult]:
        images = self.renderer.render(prompts, seeds, negative_prompt)
        return [RenderResult(image, seed, seed, False, False, None)
                for image, seed in zip(images, seeds, strict=True)]


class ToyChecker:
    """Validity read off the scene each sentence describes."""

    name = "toy"

    def __init__(self, class_names: Sequence[str]) -> None:
        self.class_names = list(class_names)
        self.renderer = ToyRenderer()

    def check(self, images, prompts: Sequence[str], source: int, target: int) -> list[Verdict]:
        verdicts = []
        for prompt in prompts:
            scene = self.renderer.parse(prompt).scene
            present = self.class_names[source] in scene.classes
            absent = self.class_names[target] not in scene.classes
            no_text = scene.sign is None
            verdicts.append(Verdict(present and absent and no_text, present, absent, no_text,
                                    self.name))
        return verdicts
