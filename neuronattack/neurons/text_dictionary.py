"""The dictionary of word embeddings that neuron directions are sparsely decomposed over.

Each word of a vocabulary is encoded bare (no "a photo of" template) by the CLIP text tower,
unit-normalised, and centred across the vocabulary: the mean word embedding is a direction every
word shares, so without centring the sparse coder would spend its first atom on "is text". The
``reference`` convention then also rescales each embedding *dimension* (column) to norm 100, as the
papers' code does (second_order_lens, ``compute_sparse_decomposition.py``); that changes which
atoms OMP picks, so it is reproduced only when asked for (method.md §5).

Encoding 30k words is the slow part (minutes on a CPU for ViT-B-32, even through the exact
short-context path of ``models.text_encoding``), so the raw encodings are cached on disk per
(model spec, vocabulary hash), and a cache file is used only if the text tower it was computed
with has the same fingerprint (a checkpoint replaced under the same spec, or a retrained toy CLIP,
must not be served stale encodings); the cheap normalising and centring are redone on every load
so a cache serves both conventions. Encoding saves its work in chunks, so an interrupted run
resumes where it stopped.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from neuronattack.artifacts import versions
from neuronattack.errors import NeuronAttackError
from neuronattack.lens.vit import check_convention
from neuronattack.models.clip import LoadedClip, spec_slug
from neuronattack.models.text_encoding import (  # noqa: F401  (encode_texts: this module's API too)
    cached_text_encodings,
    encode_texts,
    text_tower_fingerprint,
)
from neuronattack.neurons.vocabulary import Vocabulary

CACHE_SCHEMA = "neuronattack.text-embeddings/1"
CACHE_ENV = "NEURONATTACK_CACHE"
# The papers' per-dimension scale; see the module docstring.
REFERENCE_COLUMN_NORM = 100.0


@dataclass(frozen=True)
class TextDictionary:
    """Word atoms for the sparse coder, plus what is needed to interpret and reuse them.

    Row ``i`` of every tensor belongs to ``words[i]``. ``atoms`` is what the sparse coder
    decomposes over; ``unit_embeddings`` (normalised, not centred) is for "which words is this
    direction most like" lookups, where the shared mean must stay in; ``mean`` is the row that was
    subtracted, so ``atoms`` can be rebuilt from ``unit_embeddings`` in the centred convention.
    """

    words: tuple[str, ...]
    atoms: Tensor  # [words, out_dim] float32
    unit_embeddings: Tensor  # [words, out_dim] float32, unit rows
    mean: Tensor  # [out_dim] mean of unit_embeddings over words
    convention: str
    model_spec: str
    vocabulary_hash: str


def default_cache_dir() -> Path:
    """``$NEURONATTACK_CACHE/text``, else ``~/.cache/neuronattack/text``.

    The variable names the root of all neuronattack caches, so later caches can sit beside this.
    """
    root = os.environ.get(CACHE_ENV)
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "neuronattack"
    return base / "text"


def cache_path(cache_dir: str | Path, model_spec: str, vocabulary_hash: str) -> Path:
    """Where the raw encodings of a vocabulary under a model live; pass ``LoadedClip.spec``."""
    return Path(cache_dir) / f"{spec_slug(model_spec)}-{vocabulary_hash}.safetensors"


def dictionary_from_embeddings(
    embeddings: Tensor,
    words: Sequence[str],
    convention: str,
    model_spec: str,
    vocabulary_hash: str,
) -> TextDictionary:
    """Normalise, centre and (``reference`` only) rescale raw encodings ``[words, out_dim]``."""
    check_convention(convention)
    if embeddings.shape[0] != len(words):
        raise ValueError(f"{embeddings.shape[0]} embeddings for {len(words)} words")
    if len(words) < 2:
        # Centring a single word leaves the zero vector: nothing for the sparse coder to use.
        raise NeuronAttackError(
            f"The vocabulary has {len(words)} word; a dictionary needs at least 2 words."
        )
    unit = torch.nn.functional.normalize(embeddings.float(), dim=-1)  # [words, out_dim]
    mean = unit.mean(dim=0)  # [out_dim]
    atoms = unit - mean  # [words, out_dim]
    if convention == "reference":
        atoms = atoms * (REFERENCE_COLUMN_NORM / atoms.norm(dim=0))
    return TextDictionary(
        words=tuple(words),
        atoms=atoms,
        unit_embeddings=unit,
        mean=mean,
        convention=convention,
        model_spec=model_spec,
        vocabulary_hash=vocabulary_hash,
    )


def build_dictionary(
    clip: LoadedClip,
    vocabulary: Vocabulary,
    convention: str = "centred",
    cache_dir: str | Path | None = None,
    batch_size: int = 256,
    show_progress: bool = False,
) -> TextDictionary:
    """The dictionary for ``vocabulary`` under ``clip``, encoding the words only on a cache miss.

    ``cache_dir`` defaults to :func:`default_cache_dir`. A cached file is used only when its
    metadata names this model spec and vocabulary hash and its shape fits the word count; anything
    else (another model whose slug collides, a truncated file) is re-encoded and overwritten.
    """
    check_convention(convention)
    embeddings = cached_encodings(clip, vocabulary, cache_dir, batch_size, show_progress)
    return dictionary_from_embeddings(
        embeddings, vocabulary.words, convention, clip.spec, vocabulary.hash
    )


def cached_encodings(
    clip: LoadedClip,
    vocabulary: Vocabulary,
    cache_dir: str | Path | None = None,
    batch_size: int = 256,
    show_progress: bool = False,
) -> Tensor:
    """Raw encodings ``[words, out_dim]`` of any text list, from the cache or the text tower.

    An interrupted encoding resumes from its last saved chunk (``cached_text_encodings``).
    """
    folder = default_cache_dir() if cache_dir is None else Path(cache_dir)
    return cached_text_encodings(
        clip, vocabulary.words, cache_path(folder, clip.spec, vocabulary.hash),
        cache_identity(clip.spec, vocabulary, text_tower_fingerprint(clip.model)),
        extra_metadata={"vocabulary_source": vocabulary.source,
                        "versions": json.dumps(versions())},
        batch_size=batch_size, show_progress=show_progress,
    )


def cache_identity(model_spec: str, vocabulary: Vocabulary, fingerprint: str) -> dict[str, str]:
    """The metadata a cache file must hold to be served for this model and vocabulary."""
    return {
        "schema": CACHE_SCHEMA,
        "model_spec": model_spec,
        "text_fingerprint": fingerprint,
        "vocabulary_hash": vocabulary.hash,
        "n_words": str(len(vocabulary.words)),
    }
