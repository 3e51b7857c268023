"""Did the image fool CLIP, and is it a fair attack?

- ``Judge``: the paper's binary test (success when the image embedding is closer to the target's
  class embedding than to the source's) plus zero-shot over a whole class set (1000 ImageNet
  classes by default, 80 OpenAI templates): top-1, top-5, probabilities and the margin.
- ``ClipChecker``: the automatic validity filter. The paper removed images that show the target
  or lack the source by hand and never said how many; we ask a *different* CLIP: the source must be
  among its top-5 classes, the target must not win the binary test on it, and it must not see
  rendered text (so a success is not a typographic attack). The checker is itself a CLIP, so an
  attack that transfers to it counts as invalid: the filter is conservative.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
from PIL import Image
from torch import Tensor

from neuronattack.models.clip import LoadedClip
from neuronattack.models.zeroshot import DEFAULT_LOGIT_SCALE

TEXT_PROMPTS = ("a photo with written text, letters or a sign with words",
                "a photo with no text or writing")


@dataclass(frozen=True)
class Judgement:
    success: bool  # binary test: cos(image, target) > cos(image, source)
    source_similarity: float
    target_similarity: float
    margin: float  # target − source similarity
    top1: str
    top5: list[str]
    p_source: float  # zero-shot probability over the class set
    p_target: float

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Verdict:
    valid: bool
    source_present: bool
    target_absent: bool
    no_text: bool
    checker: str

    def as_dict(self) -> dict:
        return asdict(self)


def image_embeddings(clip: LoadedClip, images: Sequence[Image.Image], batch_size: int = 32
                     ) -> Tensor:
    """Unit image embeddings ``[images, out_dim]`` through the model's own preprocessing."""
    device = next(clip.model.parameters()).device
    rows = []
    for start in range(0, len(images), batch_size):
        pixels = torch.stack([clip.preprocess(image.convert("RGB"))
                              for image in images[start:start + batch_size]]).to(device)
        with torch.no_grad():
            rows.append(clip.model.encode_image(pixels).float())
    embeddings = torch.cat(rows)
    return embeddings / embeddings.norm(dim=-1, keepdim=True)


class Judge:
    """Zero-shot judgements of one CLIP over a class set that contains source and target."""

    def __init__(self, clip: LoadedClip, class_names: Sequence[str], class_embeddings: Tensor):
        self.clip = clip
        self.class_names = list(class_names)
        self.class_embeddings = class_embeddings.float()  # [classes, out_dim] unit rows

    @property
    def name(self) -> str:
        return self.clip.spec

    def judge(self, images: Sequence[Image.Image], source: int, target: int) -> list[Judgement]:
        """``source`` and ``target`` are indices into ``class_names``."""
        embeddings = image_embeddings(self.clip, images)
        return judge_embeddings(embeddings, self.class_embeddings.to(embeddings.device),
                                self.class_names, source, target)


def judge_embeddings(embeddings: Tensor, class_embeddings: Tensor, class_names: Sequence[str],
                     source: int, target: int) -> list[Judgement]:
    """The arithmetic of ``Judge``: embeddings ``[images, out_dim]`` unit rows."""
    similarities = embeddings @ class_embeddings.T  # [images, classes]
    probabilities = (DEFAULT_LOGIT_SCALE * similarities).softmax(dim=-1)
    top = similarities.topk(min(5, similarities.shape[1]), dim=-1).indices
    results = []
    for row, ranked in zip(similarities, top, strict=True):
        s, t = float(row[source]), float(row[target])
        i = len(results)
        results.append(Judgement(
            success=t > s, source_similarity=s, target_similarity=t, margin=t - s,
            top1=class_names[int(ranked[0])], top5=[class_names[int(k)] for k in ranked],
            p_source=float(probabilities[i, source]), p_target=float(probabilities[i, target]),
        ))
    return results


class ClipChecker:
    """Validity by a second CLIP (see the module docstring for the rule)."""

    def __init__(self, judge: Judge, text_embeddings: Tensor):
        self.judge = judge
        self.text_embeddings = text_embeddings.float()  # [2, out_dim]: text / no text

    @property
    def name(self) -> str:
        return f"clip:{self.judge.name}"

    def check(self, images: Sequence[Image.Image], prompts: Sequence[str], source: int,
              target: int) -> list[Verdict]:
        embeddings = image_embeddings(self.judge.clip, images)
        judgements = judge_embeddings(embeddings, self.judge.class_embeddings.to(embeddings.device),
                                      self.judge.class_names, source, target)
        text_probability = (DEFAULT_LOGIT_SCALE * embeddings @ self.text_embeddings.T.to(
            embeddings.device)).softmax(dim=-1)[:, 0]
        source_name = self.judge.class_names[source]
        verdicts = []
        for judgement, p_text in zip(judgements, text_probability.tolist(), strict=True):
            present, absent, no_text = (source_name in judgement.top5, not judgement.success,
                                        p_text < 0.5)
            verdicts.append(Verdict(present and absent and no_text, present, absent, no_text,
                                    self.name))
        return verdicts


class NoChecker:
    """Every image counts as valid (``--checker none``); results say so."""

    name = "none"

    def check(self, images, prompts, source, target) -> list[Verdict]:
        return [Verdict(True, True, True, True, self.name) for _ in images]
