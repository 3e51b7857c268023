"""Did the image fool CLIP, what kind of image is it, and is it a fair attack?

- ``Judge``: zero-shot over a whole class set (1000 ImageNet classes by default, 80 OpenAI
  templates). Success means **the top-1 class is the target** (``top1_success``, the headline);
  the paper's binary test (the image embedding closer to the target's class embedding than to the
  source's, ``success``) is kept beside it, and the margin (target − source similarity) is what
  margin shifts and cue discovery measure.
- ``Verdict`` (``models/checking.py``, shared by every checker): validity and kind. An image is
  *valid* when the source is present and still recognisable and the target is absent. Its *kind*
  says what else it shows: ``typographic`` (text or a sign), else ``distractor`` (an object of
  another class of the class set), else ``contextual`` (only the source object, with context).
  Text and distractors no longer make an image invalid: they are reported as their own kinds
  instead of silently discarded.
- ``ClipChecker``: the estimate of both with real models, by a *different* CLIP (rules and limits
  in docs/success.md): present and recognisable = the source among its top-5 classes; target
  absent = the target does not win the binary test on it; text = its text probe; distractor =
  another class the sentence names, or one the checker rates at least half as likely as the
  source. The toy world's checker (``neuronattack.toy.checker``) knows all of it exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
from PIL import Image
from torch import Tensor

# KINDS re-exported: callers read the judge's vocabulary of kinds from here.
from neuronattack.models.checking import KINDS as KINDS
from neuronattack.models.checking import Verdict, image_kind
from neuronattack.models.loaded import LoadedClip
from neuronattack.models.zeroshot import DEFAULT_LOGIT_SCALE

TEXT_PROMPTS = ("a photo with written text, letters or a sign with words",
                "a photo with no text or writing")
# A third class the checker rates at least this fraction as likely as the source counts as drawn.
DISTRACTOR_SHARE = 0.5


@dataclass(frozen=True)
class Judgement:
    success: bool  # binary test: cos(image, target) > cos(image, source)
    top1_success: bool  # the top-1 class over the whole class set is the target (the headline)
    source_similarity: float
    target_similarity: float
    margin: float  # target − source similarity
    top1: str
    top5: list[str]
    p_source: float  # zero-shot probability over the class set
    p_target: float

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
            success=t > s, top1_success=int(ranked[0]) == target, source_similarity=s,
            target_similarity=t, margin=t - s,
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
              target: int, seeds: Sequence[int] | None = None) -> list[Verdict]:
        embeddings = image_embeddings(self.judge.clip, images)
        judgements = judge_embeddings(embeddings, self.judge.class_embeddings.to(embeddings.device),
                                      self.judge.class_names, source, target)
        text_probability = (DEFAULT_LOGIT_SCALE * embeddings @ self.text_embeddings.T.to(
            embeddings.device)).softmax(dim=-1)[:, 0]
        probabilities = (DEFAULT_LOGIT_SCALE * embeddings @ self.judge.class_embeddings.T.to(
            embeddings.device)).softmax(dim=-1)  # [images, classes]
        names = self.judge.class_names
        verdicts = []
        for row, judgement, p_text, prompt in zip(probabilities, judgements,
                                                  text_probability.tolist(), prompts, strict=True):
            present, absent, no_text = (names[source] in judgement.top5, not judgement.success,
                                        p_text < 0.5)
            seen = {names[k] for k in row.topk(min(5, len(names))).indices.tolist()
                    if k not in (source, target)
                    and float(row[k]) >= DISTRACTOR_SHARE * float(row[source])}
            distractors = tuple(sorted(seen | set(named_classes(prompt, names, source, target))))
            verdicts.append(Verdict(present and absent, present, absent, no_text, self.name,
                                    recognisable=present, distractors=distractors,
                                    kind=image_kind(not no_text, distractors),
                                    details={"p_text": p_text}))
        return verdicts


def named_classes(prompt: str, class_names: Sequence[str], source: int, target: int
                  ) -> list[str]:
    """Classes other than source and target that a sentence names (any lexical form)."""
    from neuronattack.attack.filters import class_word_index

    index = class_word_index(class_names)
    words = prompt.lower().replace(",", " ").replace(".", " ").split()
    excluded = {class_names[source], class_names[target]}
    return sorted({name for word in words for name in index.classes_of(word)} - excluded)


class NoChecker:
    """Every image counts as valid (``--checker none``); results say so."""

    name = "none"

    def check(self, images, prompts, source, target, seeds=None) -> list[Verdict]:
        return [Verdict(True, True, True, True, self.name, kind=None) for _ in images]
