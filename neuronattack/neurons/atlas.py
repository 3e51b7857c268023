"""The neuron atlas: each analysed neuron's direction written as a sparse sum of words.

Built in an analysis folder (next to ``directions.safetensors``):
- ``atlas.safetensors``: per block ``{layer}.word_indices [neurons, m]`` (selection order),
  ``{layer}.word_coefficients [neurons, m]``, ``{layer}.reconstruction_cosine [neurons]``;
- ``atlas.json``: schema, the word list, its source and licence, solver settings, versions.
Together with ``meta.json``, ``directions.safetensors`` and ``images.json`` this is the atlas that
``neurons show/search/top`` browse and ``attack`` reads.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
from torch import Tensor

from neuronattack.artifacts import (
    damaged,
    file_hash,
    load_tensors,
    read_json,
    require_fields,
    require_tensors,
    save_tensors,
    versions,
    write_json,
)
from neuronattack.errors import NeuronAttackError
from neuronattack.neurons.analysis import DIRECTIONS, IMAGES, META, load_directions
from neuronattack.neurons.directions import RankOneDirections
from neuronattack.neurons.omp import SparseCodes, nonnegative_lasso, omp, reconstruct
from neuronattack.neurons.settings import DEFAULT_NONZEROS, DEFAULT_VOCABULARY, SOLVERS
from neuronattack.neurons.text_dictionary import TextDictionary
from neuronattack.progress import duration, progress_bar, warn

SCHEMA = "neuronattack.atlas/1"
ATLAS_TENSORS, ATLAS_META = "atlas.safetensors", "atlas.json"
# announce_encoding: words timed, and the estimate above which it is said.
ESTIMATE_SAMPLE = 64
ESTIMATE_ABOVE_SECONDS = 60.0
REBUILD = "rerun `neuronattack analyze` on this folder (it rebuilds the atlas)"


@dataclass(frozen=True)
class WordCodes:
    """One block's word decompositions, indexed like its ``RankOneDirections``."""

    word_indices: Tensor  # [neurons, m]  into Atlas.words, in selection order
    word_coefficients: Tensor  # [neurons, m]
    reconstruction_cosine: Tensor  # [neurons]  cos(direction, its word reconstruction)
    word_direction: Tensor  # [neurons, out_dim]  the unit word reconstruction (for `verify`)


@dataclass(frozen=True)
class NeuronCard:
    """Everything the atlas knows about one neuron, ready to print or serialise."""

    layer: int
    neuron: int
    words: list[tuple[str, float]]  # by |coefficient|, descending
    variance_explained: float
    threshold: float
    reconstruction_cosine: float
    top_images: list[str]  # paths (if the image set is still there) or indices

    @property
    def name(self) -> str:
        return f"{self.layer}.{self.neuron}"

    def as_dict(self) -> dict:
        return {
            "neuron": self.name, "layer": self.layer, "index": self.neuron,
            "words": [{"word": word, "coefficient": coef} for word, coef in self.words],
            "variance_explained": self.variance_explained, "threshold": self.threshold,
            "reconstruction_cosine": self.reconstruction_cosine, "top_images": self.top_images,
        }


def sparse_codes(
    dictionary: Tensor, directions: Tensor, nonzeros: int = DEFAULT_NONZEROS, solver: str = "omp",
    alpha: float = 1e-3, show_progress: bool = False,
) -> SparseCodes:
    """Decompose ``directions [neurons, out_dim]`` over ``dictionary [words, out_dim]``."""
    if solver == "omp":
        columns = (TextColumn("words per neuron (OMP)"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("neurons"), TimeRemainingColumn())
        with progress_bar(*columns, disable=not show_progress) as bar:
            task = bar.add_task("words per neuron (OMP)", total=len(directions))
            return omp(dictionary, directions, n_nonzero=nonzeros,
                       on_chunk=lambda done: bar.advance(task, done))
    if solver == "nn-lasso":
        return nonnegative_lasso(dictionary, directions, alpha=alpha, n_nonzero=nonzeros)
    raise NeuronAttackError(f"Unknown solver {solver!r}; choose one of {', '.join(SOLVERS)}.")


def build_atlas(
    analysis_dir: Path, dictionary: TextDictionary, nonzeros: int = DEFAULT_NONZEROS,
    solver: str = "omp", vocabulary_info: dict | None = None, show_progress: bool = False,
) -> Atlas:
    """Word decompositions for every analysed neuron of every block at once."""
    analysis_dir = Path(analysis_dir)
    directions = load_directions(analysis_dir)
    conventions = {fit.convention for fit in directions.values()}
    if conventions != {dictionary.convention}:
        raise NeuronAttackError(
            f"The analysis uses the {'/'.join(conventions)} convention but the word dictionary "
            f"was built for {dictionary.convention}; rebuild it with the same convention."
        )
    layers = sorted(directions)
    stacked = torch.cat([directions[layer].direction for layer in layers])
    # More atoms than dimensions (or words) cannot be independent: small models get fewer.
    codes = sparse_codes(dictionary.atoms, stacked, min(nonzeros, *dictionary.atoms.shape), solver,
                         show_progress=show_progress)
    reconstruction = reconstruct(dictionary.atoms, codes).float()
    reconstruction = reconstruction / reconstruction.norm(dim=1, keepdim=True).clamp_min(1e-30)
    tensors, start = {}, 0
    for layer in layers:
        rows = slice(start, start + len(directions[layer].neurons))
        tensors |= {f"{layer}.word_indices": codes.indices[rows],
                    f"{layer}.word_coefficients": codes.coefficients[rows].float(),
                    f"{layer}.reconstruction_cosine": codes.reconstruction_cosine[rows].float(),
                    f"{layer}.word_direction": reconstruction[rows]}
        start = rows.stop
    save_tensors(analysis_dir / ATLAS_TENSORS, tensors, {"schema": SCHEMA})
    settings = atlas_settings(dictionary.convention, dictionary.vocabulary_hash, nonzeros, solver,
                              vocabulary_info, file_hash(analysis_dir / DIRECTIONS))
    write_json(analysis_dir / ATLAS_META,
               settings | {"words": list(dictionary.words), "versions": versions()})
    return Atlas.load(analysis_dir)


def ensure_atlas(
    analysis_dir: Path, clip, words: str = DEFAULT_VOCABULARY, nonzeros: int = DEFAULT_NONZEROS,
    solver: str = "omp", cache_dir: Path | None = None, show_progress: bool = True,
) -> Atlas:
    """Build the atlas of a finished analysis unless one with the same settings is there."""
    from neuronattack.neurons.text_dictionary import build_dictionary
    from neuronattack.neurons.vocabulary import load_vocabulary

    if solver not in SOLVERS:
        raise NeuronAttackError(f"Unknown solver {solver!r}; choose one of {', '.join(SOLVERS)}.")
    vocabulary = load_vocabulary(words)
    meta_path = Path(analysis_dir) / META
    if not meta_path.exists() or not (Path(analysis_dir) / DIRECTIONS).exists():
        raise NeuronAttackError(f"{analysis_dir} holds no finished analysis; run `neuronattack "
                                f"analyze --out {analysis_dir}` first.")
    convention = require_fields(meta_path, read_json(meta_path, REBUILD, expect=dict),
                                {"settings": dict}, REBUILD)["settings"].get("convention")
    info = {"source": vocabulary.source, **vocabulary.info}
    directions = file_hash(Path(analysis_dir) / DIRECTIONS)
    if atlas_is_current(analysis_dir, atlas_settings(convention, vocabulary.hash, nonzeros,
                                                     solver, info, directions)):
        return Atlas.load(analysis_dir)
    if show_progress:
        announce_encoding(clip, vocabulary, cache_dir)
    dictionary = build_dictionary(clip, vocabulary, convention, cache_dir=cache_dir,
                                  show_progress=show_progress)
    return build_atlas(analysis_dir, dictionary, nonzeros, solver, info, show_progress)


def announce_encoding(clip, vocabulary, cache_dir: Path | None = None) -> None:
    """One line before a long word encoding on the CPU: about how long, and how to shorten it.

    Timed on :data:`ESTIMATE_SAMPLE` words spread over the list, on this machine; said only
    when the words are not cached yet and the estimate passes :data:`ESTIMATE_ABOVE_SECONDS`.
    """
    from neuronattack.neurons.text_dictionary import cache_path, default_cache_dir, encode_texts

    device = next(clip.model.parameters()).device
    cached = cache_path(default_cache_dir() if cache_dir is None else cache_dir, clip.spec,
                        vocabulary.hash)
    if device.type != "cpu" or cached.is_file():
        return
    # Spread over the list, since frequent words are shorter than rare ones; the first call pays
    # one-off costs (allocations, kernel selection) that would inflate the estimate several-fold.
    step = max(1, len(vocabulary.words) // ESTIMATE_SAMPLE)
    sample = list(vocabulary.words[::step][:ESTIMATE_SAMPLE])
    encode_texts(clip, sample[:2], batch_size=2)
    start = time.perf_counter()
    encode_texts(clip, sample, batch_size=len(sample))
    seconds = (time.perf_counter() - start) / len(sample) * len(vocabulary.words)
    if seconds >= ESTIMATE_ABOVE_SECONDS:
        faster = " (--words common:5000 is faster)" if len(vocabulary.words) > 5000 else ""
        warn(f"encoding {len(vocabulary.words):,} words on CPU: ~{duration(seconds)}{faster}; "
             "an interrupted encoding resumes, and the result is cached for every later run.")


def json_ready(value):
    """As it reads back from JSON (tuples become lists), for comparisons with stored settings."""
    return json.loads(json.dumps(value))


def atlas_settings(convention: str, vocabulary_hash: str, nonzeros: int, solver: str,
                   vocabulary_info: dict | None, directions_hash: str) -> dict:
    """What identifies an atlas build; an existing atlas with the same settings is reused.

    ``directions_hash`` (of ``directions.safetensors``) ties the words to the directions they
    decompose: an analysis redone with other images or blocks makes its old atlas stale.
    """
    return {
        "schema": SCHEMA,
        "directions": directions_hash,
        "solver": solver,
        "nonzeros": nonzeros,
        "convention": convention,
        "vocabulary": {"hash": vocabulary_hash, **(vocabulary_info or {})},
    }


def atlas_is_current(analysis_dir: Path, settings: dict) -> bool:
    path = Path(analysis_dir) / ATLAS_META
    if not path.exists() or not (Path(analysis_dir) / ATLAS_TENSORS).exists():
        return False
    stored = read_json(path, REBUILD, expect=dict)
    return {key: stored.get(key) for key in settings} == json_ready(settings)


@dataclass(frozen=True)
class Atlas:
    root: Path
    meta: dict  # the analysis' meta.json
    atlas_meta: dict  # atlas.json
    directions: dict[int, RankOneDirections]
    codes: dict[int, WordCodes]
    image_root: Path | None
    image_paths: tuple[str, ...]

    @classmethod
    def load(cls, root: Path) -> Atlas:
        root = Path(root)
        for name in (META, DIRECTIONS, ATLAS_TENSORS, ATLAS_META):
            if not (root / name).exists():
                raise NeuronAttackError(
                    f"{root} is not an atlas (no {name}); build one with `neuronattack analyze "
                    f"--out {root}` (it writes the directions and their words)."
                )
        directions = load_directions(root)
        atlas_meta = require_fields(root / ATLAS_META,
                                    read_json(root / ATLAS_META, REBUILD, expect=dict),
                                    {"words": list}, REBUILD)
        if not all(isinstance(word, str) for word in atlas_meta["words"]):
            raise damaged(root / ATLAS_META, "'words' holds something other than strings",
                          REBUILD)
        stored = atlas_meta.get("directions")
        if stored is not None and stored != file_hash(root / DIRECTIONS):
            raise NeuronAttackError(
                f"The atlas in {root} decomposes other directions than the ones there now (the "
                f"analysis was redone); {REBUILD}."
            )
        tensors = load_tensors(root / ATLAS_TENSORS, remedy=REBUILD)
        parts = ("word_indices", "word_coefficients", "reconstruction_cosine", "word_direction")
        require_tensors(root / ATLAS_TENSORS, tensors,
                        [f"{layer}.{part}" for layer in directions for part in parts], REBUILD)
        codes = {layer: WordCodes(*(tensors[f"{layer}.{part}"] for part in parts))
                 for layer in directions}
        for layer, code in codes.items():
            if len(code.word_indices) != len(directions[layer].neurons) or (
                    code.word_indices.numel() and int(code.word_indices.max())
                    >= len(atlas_meta["words"])):
                raise damaged(root / ATLAS_TENSORS,
                              f"block {layer}'s words do not fit its directions or word list",
                              REBUILD)
        images = read_json(root / IMAGES, expect=dict) if (root / IMAGES).exists() else {}
        return cls(root, read_json(root / META, expect=dict), atlas_meta, directions, codes,
                   Path(images["root"]) if images.get("root") else None,
                   tuple(images.get("paths", ())))

    @property
    def words(self) -> list[str]:
        return self.atlas_meta["words"]

    @property
    def model(self) -> str | None:
        """The spec of the CLIP the neurons were analysed in."""
        return self.meta.get("model")

    @property
    def vision_fingerprint(self) -> str | None:
        """The vision weights the atlas was built on; None for atlases from before
        fingerprints."""
        return self.meta.get("vision_fingerprint")

    @property
    def convention(self) -> str | None:
        """The analysis' convention: ``centred`` (mean effects in embedding units) or
        ``reference``."""
        return self.meta.get("settings", {}).get("convention")

    @property
    def images_used(self) -> int | None:
        """How many images the analysis averaged over (None for an unfinished one)."""
        return self.meta.get("images_used")

    @property
    def layers(self) -> list[int]:
        return sorted(self.directions)

    def require_model(self, clip) -> None:
        """Refuse to pair this atlas with other vision weights than the ones it was built on.

        The weights fingerprint decides, not the spec: a shared atlas works with the same weights
        loaded another way (``ViT-B-32:openai`` or ``hf:openai/clip-vit-base-patch32``). Atlases
        from before fingerprints fall back to comparing specs.
        """
        from neuronattack.models.clip import weights_fingerprint

        built_on, spec = self.vision_fingerprint, self.model
        if built_on is None:
            if spec != clip.spec:
                raise NeuronAttackError(f"The atlas in {self.root} was built for {spec}, not "
                                        f"{clip.spec}.")
            return
        fingerprint = weights_fingerprint(clip.model.visual)
        if fingerprint != built_on:
            raise NeuronAttackError(
                f"The atlas in {self.root} was built on vision weights {built_on} ({spec}), but "
                f"{clip.spec} has vision weights {fingerprint}; use an atlas of this model or "
                "build one with `neuronattack analyze`."
            )

    def check_layer(self, layer: int) -> None:
        if layer not in self.directions:
            raise NeuronAttackError(
                f"Block {layer} is not in this atlas; it has blocks "
                f"{', '.join(map(str, self.layers))}."
            )

    def position(self, layer: int, neuron: int) -> int:
        """Row of ``neuron`` (an MLP index) in the block's tensors."""
        self.check_layer(layer)
        matches = (self.directions[layer].neurons == neuron).nonzero()
        if len(matches) == 0:
            width = len(self.directions[layer].neurons)
            raise NeuronAttackError(f"Neuron {neuron} is not in block {layer} (0..{width - 1}).")
        return int(matches[0, 0])

    def card(self, layer: int, neuron: int, n_words: int | None = None) -> NeuronCard:
        row = self.position(layer, neuron)
        fit, code = self.directions[layer], self.codes[layer]
        coefficients = code.word_coefficients[row]
        order = coefficients.abs().argsort(descending=True, stable=True)[:n_words]
        words = [(self.words[int(code.word_indices[row, i])], float(coefficients[i]))
                 for i in order if coefficients[i] != 0]
        return NeuronCard(
            layer=layer, neuron=neuron, words=words,
            variance_explained=float(fit.variance_explained[row]),
            threshold=float(fit.threshold[row]),
            reconstruction_cosine=float(code.reconstruction_cosine[row]),
            top_images=self.image_names(fit.top_images[row].tolist()),
        )

    def image_names(self, indices: list[int]) -> list[str]:
        """Paths of the analysis' images where they still exist, else ``#index``."""
        if self.image_root is None or not self.image_paths:
            return [f"#{i}" for i in indices]
        return [str(self.image_root / self.image_paths[i])
                if (self.image_root / self.image_paths[i]).exists() else f"#{i}"
                for i in indices]

    def search(self, word: str) -> list[tuple[int, int, float, int]]:
        """Neurons whose decomposition uses ``word``: ``(layer, neuron, coefficient, rank)``.

        Ranked by coefficient, strongest positive first; rank is the word's place among that
        neuron's words by |coefficient| (0 = its strongest word).
        """
        try:
            index = self.words.index(word.lower())
        except ValueError:
            from difflib import get_close_matches

            close = get_close_matches(word.lower(), self.words, n=4)
            hint = f"; did you mean {', '.join(close)}?" if close else "."
            raise NeuronAttackError(f"'{word}' is not in the atlas' vocabulary{hint}") from None
        hits = []
        for layer, code in self.codes.items():
            rows, slots = (code.word_indices == index).nonzero(as_tuple=True)
            for row, slot in zip(rows.tolist(), slots.tolist(), strict=True):
                coefficients = code.word_coefficients[row]
                if coefficients[slot] == 0:  # padding after an early stop
                    continue
                rank = int((coefficients.abs() > coefficients[slot].abs()).sum())
                neuron = int(self.directions[layer].neurons[row])
                hits.append((layer, neuron, float(coefficients[slot]), rank))
        return sorted(hits, key=lambda hit: (-hit[2], hit[0], hit[1]))

    def top(self, layer: int, by: str = "threshold", count: int = 20) -> list[int]:
        """The ``count`` neurons of a block with the largest ``threshold`` (effect size),
        ``variance`` explained, or word ``reconstruction`` cosine; MLP indices."""
        self.check_layer(layer)
        fit, code = self.directions[layer], self.codes[layer]
        scores = {"threshold": fit.threshold, "variance": fit.variance_explained,
                  "reconstruction": code.reconstruction_cosine}[by]
        order = scores.argsort(descending=True, stable=True)[:count]
        return [int(fit.neurons[i]) for i in order]


def parse_neuron(name: str) -> tuple[int, int]:
    """``"9.1234"`` -> ``(9, 1234)``."""
    layer, _, neuron = name.partition(".")
    if not (layer.isdigit() and neuron.isdigit()):
        raise NeuronAttackError(f"Name a neuron as BLOCK.INDEX, e.g. 9.1234; got {name!r}.")
    return int(layer), int(neuron)
