"""What an attack is asked to do, with its defaults: the one source the CLI options, the campaign
config's keys and ``pipeline.attack_context`` read them from.

Importing this module loads no torch: the CLI builds its options from it at import time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

ARMS = ("method", "random-neurons", "random-neurons-own", "random-words", "similar-words",
        "source-only")
DEFAULT_NEGATIVE = "text, letters, words, writing, caption, watermark, signature, logo, sign"

# The models an attack loads unless told otherwise (specs as `neuronattack attack` takes them).
DEFAULT_GENERATOR = "sd-turbo"
DEFAULT_WRITER = "template"
DEFAULT_CHECKER = "auto"  # a different CLIP than the attacked one (attack.setup.default_checker)
DEFAULT_CLASSES = "imagenet"
# Images rendered at once when no generator batch is asked for (`attack --batch-size`).
RENDER_BATCH = 8


@dataclass(frozen=True)
class AttackSettings:
    """Everything that changes an attack's images; a run resumes only under identical ones."""

    source: str
    target: str
    n: int = 32  # images per arm
    arms: tuple[str, ...] = ARMS
    n_neurons: int = 100
    n_words: int = 50
    seed: int = 0
    negative_prompt: str | None = DEFAULT_NEGATIVE
    similarity_percentile: float = 99.0
    block_list: tuple[str, ...] = ()
    class_filter: bool = True  # drop words naming another class of the judging set


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_").lower() or "x"


def pair_name(source: str, target: str) -> str:
    """A pair's folder name, as record ids spell the pair: ``cat-dog``, ``sea_lion-dog``."""
    return f"{slug(source)}-{slug(target)}"
