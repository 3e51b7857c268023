"""Builds an ``AttackContext`` from specs: the place that decides which models judge and check."""

from __future__ import annotations

from pathlib import Path

import torch

from neuronattack.attack.judge import TEXT_PROMPTS, ClipChecker, Judge, NoChecker
from neuronattack.attack.run import AttackContext
from neuronattack.errors import NeuronAttackError
from neuronattack.models.clip import LoadedClip, load_clip
from neuronattack.models.zeroshot import (
    IMAGENET_NAMES,
    class_embeddings,
    judge_templates,
    text_embedding,
)
from neuronattack.neurons.text_dictionary import cached_encodings, default_cache_dir
from neuronattack.neurons.vocabulary import Vocabulary, read_word_list

CIFAR10 = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
           "truck")


def load_class_names(spec: str) -> list[str]:
    """``imagenet`` (1000 OpenAI names), ``cifar10``, ``toy``, or a file with one name per line."""
    if spec == "imagenet":
        return list(IMAGENET_NAMES)
    if spec == "cifar10":
        return list(CIFAR10)
    if spec == "toy":
        from neuronattack.toy.world import CLASSES

        return list(CLASSES)
    if Path(spec).is_file():
        return read_word_list(Path(spec))
    raise NeuronAttackError(
        f"--classes {spec!r} is neither imagenet, cifar10, toy nor a file of class names."
    )


def default_checker(clip_spec: str) -> str:
    """A different CLIP than the attacked one, so validity is not judged by the attacker."""
    if clip_spec.startswith("random:"):
        arch, _, seed = clip_spec.removeprefix("random:").partition("@")
        return f"clip:random:{arch}@{int(seed or 0) + 1}"
    if clip_spec == "toy":
        return "toy"
    return "clip:ViT-B-16:openai" if clip_spec.startswith("ViT-L-14") else "clip:ViT-L-14:openai"


def make_generator(spec: str, device: str = "auto", **overrides):
    """``toy`` is the toy world's renderer (it draws exactly what a sentence names); every other
    spec goes to ``models.generators.load_generator`` with the overrides (steps, guidance, size,
    batch_size)."""
    if spec == "toy":
        from neuronattack.toy.checker import ToyGenerator

        return ToyGenerator()
    from neuronattack.models.generators import load_generator

    return load_generator(spec, device=device, **overrides)


def is_toy_clip(spec: str) -> bool:
    return spec == "toy" or spec.startswith("toy:")


def ensure_toy_atlas(clip: LoadedClip, atlas_dir: Path, show_progress: bool = True):
    """The toy CLIP's atlas in ``atlas_dir``, built as the demo builds it when missing (its
    scenes are drawn into a sibling folder, ``<atlas_dir>-scenes``)."""
    from neuronattack.toy.atlas import build_toy_atlas

    atlas_dir = Path(atlas_dir)
    return build_toy_atlas(clip, atlas_dir, atlas_dir.with_name(f"{atlas_dir.name}-scenes"),
                           show_progress=show_progress)


def make_judge(clip: LoadedClip, class_names: list[str], show_progress: bool) -> Judge:
    embeddings = class_embeddings(clip, class_names, judge_templates(clip),
                                  show_progress=show_progress, cache_dir=default_cache_dir())
    return Judge(clip, class_names, embeddings.to(next(clip.model.parameters()).device))


def make_checker(spec: str, attacked: LoadedClip, class_names: list[str], device,
                 show_progress: bool):
    if spec == "auto":
        spec = default_checker(attacked.spec)
    if spec == "none":
        return NoChecker()
    if spec == "toy":
        from neuronattack.toy.checker import ToyChecker

        return ToyChecker(class_names)
    if spec.startswith("clip:"):
        clip = load_clip(spec.removeprefix("clip:"), device=device)
        texts = torch.stack([text_embedding(clip, prompt) for prompt in TEXT_PROMPTS])
        return ClipChecker(make_judge(clip, class_names, show_progress), texts)
    raise NeuronAttackError(f"--checker {spec!r}: use auto, none, toy or clip:SPEC.")


def build_context(
    clip: LoadedClip, atlas, generator, writer, class_names: list[str], *,
    judge_specs: tuple[str, ...] = (), checker: str = "auto", device="cpu",
    render_batch: int, show_progress: bool = True,
) -> AttackContext:
    """Everything ``run_attack`` needs, with the attacked model as the first judge.

    ``pipeline.attack_context`` builds it from specs; ``render_batch`` has its default there.
    """
    judges = [make_judge(clip, class_names, show_progress)]
    judges += [make_judge(load_clip(spec, device=device), class_names, show_progress)
               for spec in judge_specs]
    words = Vocabulary(words=tuple(atlas.words), source=atlas.atlas_meta["vocabulary"].get(
        "source", "atlas"), hash=atlas.atlas_meta["vocabulary"]["hash"], info={})
    encoded = cached_encodings(clip, words, show_progress=show_progress)
    return AttackContext(
        atlas=atlas, clip=clip, generator=generator, writer=writer, judges=judges,
        checker=make_checker(checker, clip, class_names, device, show_progress),
        word_embeddings=encoded / encoded.norm(dim=-1, keepdim=True),
        target_embedding_of=lambda name: text_embedding(clip, name),
        render_batch=render_batch, drawable_words=drawable_words(generator),
    )


def drawable_words(generator) -> list[str] | None:
    """What the random-words arm draws from: the toy renderer's drawable words; None (every atlas
    word) for diffusion models, which draw anything."""
    if getattr(generator, "name", None) != "toy":
        return None
    from neuronattack.toy.vocabulary import drawable_words as toy_drawable_words

    return toy_drawable_words()
