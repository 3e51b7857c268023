"""The atlas as a static site: open ``index.html`` from disk, no server, fast on a full atlas.

Layout of a site folder:

- ``index.html``: the shell, with the overview (strongest neurons per block) already in the HTML
  so the first paint needs no script and no data file;
- ``app.js``, ``style.css``: the explorer (hash routes ``#search/WORD``, ``#neuron/L.N``,
  ``#pair/SOURCE/TARGET``, ``#head/L.H``), copied from the package;
- ``data/words.js``: the vocabulary, loaded on the first search keystroke;
- ``data/search/S.js``: postings ``word index -> [[layer, neuron, coefficient, rank], ...]`` for the
  words with ``index % shards == S``, strongest coefficient first, as ``Atlas.search`` orders them;
- ``data/neurons/L/C.js``: every neuron of block L in chunk C (``CHUNK`` neurons by position):
  its words and coefficients (by |coefficient|, as ``Atlas.card``), variance explained,
  threshold, word-reconstruction cosine, top images;
- ``thumbs/I.jpg``: thumbnails of the images some neuron shows, where the image set is at hand.

Pages read from disk cannot ``fetch`` JSON (browsers refuse file:// requests), so data files are
scripts that hand their payload to ``NA.receive(kind, key, payload)``. Every text reaches the page
either through Jinja's autoescape (the shell) or through ``textContent`` / attributes set from
script (never ``innerHTML``), so a word such as ``<script>`` is shown, not run.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from jinja2 import Environment, PackageLoader, select_autoescape
from PIL import Image, UnidentifiedImageError
from rich.progress import track

from neuronattack.errors import NeuronAttackError
from neuronattack.neurons.atlas import Atlas

SCHEMA = "neuronattack.explorer/1"
CHUNK = 64  # neurons per data file: a neuron view loads ~70 kB, not the whole block
SHARDS = 64  # search postings files: one search loads ~1/64 of all postings
OVERVIEW = 15  # strongest neurons per block listed on the first page
THUMB_SIZE = 96  # px, longest side
ASSETS = ("app.js", "style.css")
_ASSET_DIR = Path(__file__).parent / "assets"


@dataclass(frozen=True)
class SiteOptions:
    thumbnails: int = 8  # top images per neuron shown (and thumbnailed)
    images_root: Path | None = None  # where the analysed image set lives now, if moved
    pairs: list[dict] = field(default_factory=list)  # from explore.pairs.pair_views
    heads: list[dict] = field(default_factory=list)  # from explore.heads.load_head_roles
    show_progress: bool = False


def build_site(atlas: Atlas, out_dir: Path, options: SiteOptions | None = None) -> Path:
    """Write the explorer for ``atlas`` into ``out_dir``; returns the path of ``index.html``."""
    options = options or SiteOptions()
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / "index.html").exists():
        raise NeuronAttackError(
            f"{out_dir} exists and is not an explorer site; choose an empty or new --out folder."
        )
    # A rebuild replaces the data: chunks or thumbnails of another atlas must not survive.
    shutil.rmtree(out_dir / "data", ignore_errors=True)
    shutil.rmtree(out_dir / "thumbs", ignore_errors=True)
    (out_dir / "data").mkdir(parents=True, exist_ok=True)
    for name in ASSETS:
        shutil.copyfile(_ASSET_DIR / name, out_dir / name)

    words = atlas.words
    _write_data(out_dir / "data" / "words.js", "words", "", words)
    for shard, postings in search_shards(atlas, SHARDS).items():
        _write_data(out_dir / "data" / "search" / f"{shard}.js", "search", str(shard), postings)
    thumbs = _thumbnail_source(atlas, options.images_root)
    used_images: set[int] = set()
    layers = atlas.layers
    steps = track(layers, description="explorer: neurons") if options.show_progress else layers
    for layer in steps:
        records = neuron_records(atlas, layer, options.thumbnails)
        for start in range(0, len(records), CHUNK):
            chunk = records[start:start + CHUNK]
            _write_data(out_dir / "data" / "neurons" / str(layer) / f"{start // CHUNK}.js",
                        "neurons", f"{layer}/{start // CHUNK}", chunk)
        used_images.update(i for record in records for i in record["images"])
    thumbnailed = write_thumbnails(thumbs, atlas.image_paths, sorted(used_images),
                                   out_dir / "thumbs", options.show_progress)

    site = site_summary(atlas, options, thumbnailed)
    html = _environment().get_template("index.html.j2").render(
        site=site, site_json=script_json(site))
    index = out_dir / "index.html"
    index.write_text(html, encoding="utf-8")
    return index


def site_summary(atlas: Atlas, options: SiteOptions, thumbnailed: list[int]) -> dict:
    """What the shell shows and the script needs before any data file: small by design."""
    meta, vocabulary = atlas.meta, atlas.atlas_meta.get("vocabulary", {})
    blocks = []
    for layer in atlas.layers:
        positions = {int(n): row for row, n in enumerate(atlas.directions[layer].neurons)}
        top = []
        for neuron in atlas.top(layer, "threshold", OVERVIEW):
            card = atlas_row(atlas, layer, positions[neuron], 5)
            top.append({"neuron": f"{layer}.{neuron}", "words": card["words"],
                        "variance": card["variance"], "threshold": card["threshold"]})
        blocks.append({"layer": layer, "neurons": len(positions), "top": top,
                       "chunk": CHUNK, "first": int(atlas.directions[layer].neurons.min()),
                       "positions": _positions_if_sparse(atlas, layer)})
    return {
        "schema": SCHEMA,
        "model": meta.get("model", "?"),
        "vision_fingerprint": meta.get("vision_fingerprint", "?"),
        "images": meta.get("image_set", {}).get("images", 0),
        "convention": atlas.atlas_meta.get("convention", "?"),
        "vocabulary": {"source": vocabulary.get("source", "?"),
                       "licence": (vocabulary.get("licence") or vocabulary.get("license")
                                   or "not stated"),
                       "words": len(atlas.words)},
        "nonzeros": atlas.atlas_meta.get("nonzeros"),
        "blocks": blocks,
        "shards": SHARDS,
        "thumbnails": thumbnailed,
        "image_names": _image_names(atlas, options.thumbnails),
        "pairs": options.pairs,
        "heads": options.heads,
    }


def neuron_records(atlas: Atlas, layer: int, n_images: int) -> list[dict]:
    """Every neuron of a block, in the block's row order, as the explorer shows it."""
    return [atlas_row(atlas, layer, row, None, n_images)
            for row in range(len(atlas.directions[layer].neurons))]


def atlas_row(atlas: Atlas, layer: int, row: int, n_words: int | None,
              n_images: int = 0) -> dict:
    """One neuron by row: what ``Atlas.card`` says, without its per-image disk checks."""
    fit, code = atlas.directions[layer], atlas.codes[layer]
    coefficients = code.word_coefficients[row]
    order = coefficients.abs().argsort(descending=True, stable=True)[:n_words].tolist()
    indices, values = code.word_indices[row].tolist(), coefficients.tolist()
    return {
        "neuron": int(fit.neurons[row]),
        "words": [[atlas.words[indices[i]], round(values[i], 5)] for i in order if values[i] != 0],
        "variance": round(float(fit.variance_explained[row]), 5),
        "threshold": round(float(fit.threshold[row]), 5),
        "cosine": round(float(code.reconstruction_cosine[row]), 5),
        "images": fit.top_images[row, :n_images].tolist(),
    }


def search_shards(atlas: Atlas, shards: int) -> dict[int, dict[str, list]]:
    """``{shard: {word index: [[layer, neuron, coefficient, rank], ...]}}`` for every used word.

    The same hits, order and ranks as ``Atlas.search`` gives word by word, for all words at once:
    rank is the word's place in its neuron by |coefficient| (0 = strongest).
    """
    columns = []
    for layer in atlas.layers:
        code, neurons = atlas.codes[layer], atlas.directions[layer].neurons
        coefficients = code.word_coefficients  # [neurons, m]
        magnitude = coefficients.abs()
        # rank = how many of the neuron's words have a strictly larger |coefficient|
        rank = (magnitude[:, None, :] > magnitude[:, :, None]).sum(-1)  # [neurons, m]
        keep = coefficients != 0  # padding after an early stop
        rows = torch.arange(len(neurons))[:, None].expand_as(coefficients)
        columns.append(torch.stack([
            code.word_indices[keep].double(), torch.full_like(rows[keep], layer).double(),
            neurons[rows[keep]].double(), coefficients[keep].double(), rank[keep].double(),
        ], dim=1))
    table = torch.cat(columns).numpy()  # [hits, (word, layer, neuron, coefficient, rank)]
    # Grouped by word; within a word Atlas.search's order: coefficient descending, then layer,
    # then neuron (np.lexsort's last key is the primary one).
    order = np.lexsort((table[:, 2], table[:, 1], -table[:, 3], table[:, 0]))
    out: dict[int, dict[str, list]] = {}
    for word, layer, neuron, coefficient, rank in table[order].tolist():
        word = int(word)
        out.setdefault(word % shards, {}).setdefault(str(word), []).append(
            [int(layer), int(neuron), round(coefficient, 5), int(rank)])
    return out


def _positions_if_sparse(atlas: Atlas, layer: int) -> list[int] | None:
    """MLP indices by row when a block's neurons are not simply 0..n-1 (else the script
    computes the chunk from the index)."""
    neurons = atlas.directions[layer].neurons
    if torch.equal(neurons, torch.arange(len(neurons), dtype=neurons.dtype)):
        return None
    return neurons.tolist()


def _image_names(atlas: Atlas, n_images: int) -> dict[str, str]:
    """Relative image paths for every image a neuron view shows (alt texts and captions)."""
    if not atlas.image_paths:
        return {}
    used = {i for layer in atlas.layers
            for i in atlas.directions[layer].top_images[:, :n_images].flatten().tolist()}
    return {str(i): atlas.image_paths[i] for i in sorted(used) if i < len(atlas.image_paths)}


def _thumbnail_source(atlas: Atlas, images_root: Path | None) -> Path | None:
    root = Path(images_root) if images_root is not None else atlas.image_root
    if images_root is not None and not Path(images_root).is_dir():
        raise NeuronAttackError(f"--images {images_root} is not a folder.")
    return root if root is not None and root.is_dir() and atlas.image_paths else None


def write_thumbnails(root: Path | None, paths: tuple[str, ...], indices: list[int],
                     out_dir: Path, show_progress: bool = False) -> list[int]:
    """``out_dir/I.jpg`` for each image index whose file can be read; returns those indices.

    ``paths`` are the analysis' image paths relative to ``root`` (``images.json``).
    """
    if root is None or not indices:
        return []
    out_dir.mkdir(parents=True, exist_ok=True)
    done = []
    steps = track(indices, description="explorer: thumbnails") if show_progress else indices
    for index in steps:
        if index >= len(paths):
            continue
        try:
            with Image.open(root / paths[index]) as image:
                image = image.convert("RGB")
                image.thumbnail((THUMB_SIZE, THUMB_SIZE))
                image.save(out_dir / f"{index}.jpg", quality=85)
        except (OSError, UnidentifiedImageError):
            continue  # a moved or unreadable image shows as its name
        done.append(index)
    return done


def script_json(data) -> str:
    """JSON safe inside an HTML ``<script>`` element: no ``</script>``, no ``<!--``."""
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).replace("<", "\\u003c")


def _write_data(path: Path, kind: str, key: str, payload) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"NA.receive({json.dumps(kind)},{json.dumps(key)},{script_json(payload)});\n",
                    encoding="utf-8")


def _environment() -> Environment:
    return Environment(loader=PackageLoader("neuronattack.explore", "assets"),
                       autoescape=select_autoescape(["html", "j2"]), trim_blocks=True,
                       lstrip_blocks=True)


def explore(atlas_dir: Path, out_dir: Path, *, images_root: Path | None = None,
            thumbnails: int = 8, pairs: list[tuple[str, str]] = (), clip_spec: str | None = None,
            heads_file: Path | None = None, device: str = "cpu",
            show_progress: bool = False) -> Path:
    """``neuronattack explore``: the site of an atlas folder, with class pairs and head roles.

    Pairs need the CLIP (``clip_spec``, default the atlas' model), checked against the atlas'
    vision fingerprint; head roles come from ``heads_file`` or ``heads.json`` beside the atlas.
    """
    from neuronattack.explore.heads import HEADS_FILE, load_head_roles
    from neuronattack.explore.pairs import pair_views

    if thumbnails < 0:
        raise NeuronAttackError("--thumbnails takes a count of 0 or more.")
    atlas = Atlas.load(atlas_dir)
    views = []
    if pairs:
        from neuronattack.models import load_clip

        clip = load_clip(clip_spec or atlas.model, device=device)
        atlas.require_model(clip)
        views = pair_views(atlas, clip, list(pairs))
    heads_file = heads_file or (Path(atlas_dir) / HEADS_FILE)
    heads = load_head_roles(heads_file) if Path(heads_file).exists() else []
    return build_site(atlas, out_dir, SiteOptions(thumbnails, images_root, views, heads,
                                                  show_progress))
