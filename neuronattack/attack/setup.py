"""Builds an ``AttackContext`` from specs: the place that decides which models judge and check."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch

from neuronattack.attack.judge import TEXT_PROMPTS, ClipChecker, Judge, NoChecker
from neuronattack.attack.run import AttackContext
from neuronattack.attack.settings import DEFAULT_CHECKER
from neuronattack.errors import NeuronAttackError
from neuronattack.models.clip import LoadedClip, clip_spec_problem, load_clip
from neuronattack.models.plugins import clip_plugin, find_plugin, plugins_with
from neuronattack.models.zeroshot import (
    IMAGENET_NAMES,
    class_embeddings,
    judge_templates,
    text_embedding,
)
from neuronattack.neurons.text_dictionary import cached_encodings, default_cache_dir
from neuronattack.neurons.vocabulary import Vocabulary, read_word_list
from neuronattack.validation import parser_refusal

if TYPE_CHECKING:
    from neuronattack.models.checking import Checker
    from neuronattack.models.generators import Generator
    from neuronattack.neurons.atlas import Atlas
    from neuronattack.writing import Writer

CIFAR10 = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
           "truck")


def class_set_names() -> list[str]:
    """The class sets a word names: the built-in ones, then each plug-in's (``models.plugins``)."""
    return ["imagenet", "cifar10", *(plugin.name for plugin in plugins_with("class_names"))]


def load_class_names(spec: str) -> list[str]:
    """``imagenet`` (1000 OpenAI names), ``cifar10``, a plug-in's class set (``toy``), or a file
    with one name per line."""
    if spec == "imagenet":
        return list(IMAGENET_NAMES)
    if spec == "cifar10":
        return list(CIFAR10)
    plugin = find_plugin(spec)
    if plugin is not None and plugin.class_names is not None:
        return plugin.class_names()
    if Path(spec).expanduser().is_file():
        return read_word_list(Path(spec).expanduser())
    raise NeuronAttackError(
        f"Class set {spec!r} is neither {', '.join(class_set_names())} nor a file of class names."
    )


def class_set_problem(value: object) -> str | None:
    """What is wrong with a class-set spec (``--classes``, a campaign's ``[judges] classes``), by
    :func:`load_class_names` itself; None when nothing is."""
    return parser_refusal(load_class_names, value)


def default_checker(clip_spec: str) -> str:
    """A different CLIP than the attacked one, so validity is not judged by the attacker; a
    plug-in's CLIP (``NAME``, or ``NAME:WEIGHTS`` for other weights) is checked by the plug-in's
    own checker when it has one: it reads what the plug-in's renderer drew, whatever the weights."""
    if clip_spec.startswith("random:"):
        arch, _, seed = clip_spec.removeprefix("random:").partition("@")
        return f"clip:random:{arch}@{int(seed or 0) + 1}"
    plugin = clip_plugin(clip_spec)
    if plugin is not None and plugin.make_checker is not None:
        return plugin.name
    return "clip:ViT-B-16:openai" if clip_spec.startswith("ViT-L-14") else "clip:ViT-L-14:openai"


def checker_choices() -> str:
    """The ``--checker`` forms, in words: ``auto, none, toy or clip:SPEC``."""
    return ", ".join(["auto", "none", *(plugin.name for plugin in plugins_with("make_checker"))]
                     ) + " or clip:SPEC"


def checker_spec_problem(value: object) -> str | None:
    """What is wrong with a ``--checker`` spec (a ``clip:SPEC`` by the CLIP loader's own
    parser, nothing loaded); None when nothing is."""
    if not isinstance(value, str):
        return f"must be {checker_choices()}"
    plugin = find_plugin(value)
    if value in ("auto", "none") or (plugin is not None and plugin.make_checker is not None):
        return None
    if value.startswith("clip:") and value.removeprefix("clip:").strip():
        return clip_spec_problem(value.removeprefix("clip:"))
    return f"must be {checker_choices()}"


def make_judge(clip: LoadedClip, class_names: list[str], show_progress: bool) -> Judge:
    embeddings = class_embeddings(clip, class_names, judge_templates(clip),
                                  show_progress=show_progress, cache_dir=default_cache_dir())
    return Judge(clip, class_names, embeddings.to(next(clip.model.parameters()).device))


def make_checker(spec: str, attacked: LoadedClip, class_names: list[str], device,
                 show_progress: bool) -> Checker:
    if spec == "auto":
        spec = default_checker(attacked.spec)
    if spec == "none":
        return NoChecker()
    plugin = find_plugin(spec)
    if plugin is not None and plugin.make_checker is not None:
        return plugin.make_checker(class_names)
    if spec.startswith("clip:"):
        clip = load_clip(spec.removeprefix("clip:"), device=device)
        texts = torch.stack([text_embedding(clip, prompt) for prompt in TEXT_PROMPTS])
        return ClipChecker(make_judge(clip, class_names, show_progress), texts)
    raise NeuronAttackError(f"--checker {spec!r}: use {checker_choices()}.")


def build_context(
    clip: LoadedClip, atlas: Atlas, generator: Generator, writer: Writer, class_names: list[str],
    *, judge_specs: tuple[str, ...] = (), checker: str = DEFAULT_CHECKER, device="cpu",
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


def drawable_words(generator: Generator) -> list[str] | None:
    """What the random-words arm draws from: what a plug-in's generator can draw (the toy
    renderer: the world's words); None (every atlas word) for diffusion models, which draw
    anything."""
    plugin = find_plugin(generator.name)
    if plugin is None or plugin.drawable_words is None:
        return None
    return plugin.drawable_words()
