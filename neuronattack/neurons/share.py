"""Atlases shared like models: one tar file with a card, from a path or the Hugging Face hub.

An atlas is small next to the GPU hours that build it (directions, word codes, top-image ids), so
it travels: ``pack_atlas`` writes ``OUT.tar`` holding the atlas files byte for byte, ``card.json``
(schema ``neuronattack.atlas-card/1``: model spec, vision-weights fingerprint, image set, vocabulary
source and licence, solver, versions, a hash of every file) and ``README.md`` (the same as a hub
model card). ``resolve_atlas`` turns ``--atlas`` into a folder: a folder as is, a packed file or
``hf-hub:ORG/NAME`` (whose repo holds ``atlas.tar``) unpacked once into the neuronattack cache.

The image set does not travel: ``images.json`` keeps the images' relative paths with an empty root,
so top images show as names (or as thumbnails with ``explore --images DIR`` on a local copy).
Whether an atlas fits the weights it is used with is the vision fingerprint's job
(``Atlas.require_model``), not the spec's: the same weights under another spec are welcome.

Publishing is a plain upload with ``huggingface_hub`` (see the README): the packed file as
``atlas.tar`` and its ``README.md`` card at the repo root.
"""

from __future__ import annotations

import hashlib
import html
import io
import json
import os
import shutil
import tarfile
import tempfile
from pathlib import Path

from neuronattack.artifacts import _atomic_path, damaged, versions
from neuronattack.errors import NeuronAttackError
from neuronattack.neurons.analysis import DIRECTIONS, IMAGES, META
from neuronattack.neurons.atlas import ATLAS_META, ATLAS_TENSORS, Atlas
from neuronattack.neurons.text_dictionary import default_cache_dir

CARD_SCHEMA = "neuronattack.atlas-card/1"
CARD_JSON, CARD_README = "card.json", "README.md"
PACKED_NAME = "atlas.tar"  # the file name in a hub repo
HUB_PREFIX = "hf-hub:"
ATLAS_FILES = (META, DIRECTIONS, ATLAS_TENSORS, ATLAS_META, IMAGES)
_MEMBERS = (CARD_JSON, CARD_README, *ATLAS_FILES)
REPACK = "pack it again with `neuronattack atlas pack`"


def atlas_card(atlas: Atlas, file_hashes: dict[str, str], description: str | None = None) -> dict:
    """The provenance a shared atlas carries; ``file_hashes`` are SHA-256s of the packed files."""
    meta, atlas_meta = atlas.meta, atlas.atlas_meta
    image_set = meta.get("image_set", {})
    default_description = (f"{image_set.get('images', '?')} images from a folder named "
                           f"'{atlas.image_root.name}'" if atlas.image_root else "not described")
    return {
        "schema": CARD_SCHEMA,
        "model": atlas.model,
        "vision_fingerprint": atlas.vision_fingerprint,
        "image_set": {"description": description or default_description,
                      "fingerprint": image_set.get("fingerprint"),
                      "images": image_set.get("images")},
        "vocabulary": {**atlas_meta.get("vocabulary", {}), "words": len(atlas.words)},
        "atlas": {"blocks": {str(layer): len(atlas.directions[layer].neurons)
                             for layer in atlas.layers},
                  "solver": atlas_meta.get("solver"), "nonzeros": atlas_meta.get("nonzeros"),
                  "convention": atlas_meta.get("convention"),
                  "settings": meta.get("settings", {})},
        "versions": {"analysis": meta.get("versions", {}),
                     "atlas": atlas_meta.get("versions", {}), "packed_with": versions()},
        "files": file_hashes,
    }


def card_markdown(card: dict) -> str:
    """The card as a Hugging Face model card (YAML header, then prose); user text escaped."""
    def text(value) -> str:
        return html.escape(str(value))

    vocabulary = card["vocabulary"]
    licence = vocabulary.get("licence") or vocabulary.get("license") or "not stated"
    blocks = ", ".join(f"{layer} ({count} neurons)"
                       for layer, count in card["atlas"]["blocks"].items())
    return "\n".join([
        "---", "library_name: neuronattack", "tags:", "- clip", "- interpretability",
        "- neuronattack-atlas", "---", "",
        f"# Neuron atlas of {text(card['model'])}", "",
        "Second-order neuron directions of a CLIP vision tower and their sparse decompositions "
        "over words, built with [neuronattack](https://github.com/) `analyze`.", "",
        "| | |", "|---|---|",
        f"| model | `{text(card['model'])}` |",
        f"| vision weights fingerprint | `{text(card['vision_fingerprint'])}` |",
        f"| image set | {text(card['image_set']['description'])} "
        f"(fingerprint `{text(card['image_set']['fingerprint'])}`) |",
        f"| vocabulary | {text(vocabulary.get('source'))}, {vocabulary['words']} words, "
        f"licence: {text(licence)} |",
        f"| blocks | {text(blocks)} |",
        f"| solver | {text(card['atlas']['solver'])}, {text(card['atlas']['nonzeros'])} words per "
        f"neuron, {text(card['atlas']['convention'])} convention |",
        f"| neuronattack | {text(card['versions']['packed_with'].get('neuronattack'))} |", "",
        "Use it with the same weights (checked by the fingerprint, whatever the spec):", "",
        "```bash",
        "neuronattack attack SOURCE TARGET --atlas hf-hub:ORG/NAME "
        f"--clip {text(card['model'])}",
        "neuronattack explore hf-hub:ORG/NAME --out site/",
        "```", "",
    ])


def pack_atlas(atlas_dir: Path, out: Path, description: str | None = None) -> Path:
    """Write ``out`` (a tar: the atlas files, ``card.json``, ``README.md``); returns ``out``.

    Members are written in a fixed order with fixed metadata, so the same atlas packs to the same
    bytes. ``images.json`` goes in with an empty root: a local path means nothing elsewhere.
    """
    atlas = Atlas.load(atlas_dir)  # refuses damaged or stale atlases before anything is written
    out = Path(out)
    if out.suffix != ".tar":
        raise NeuronAttackError(f"Name the packed atlas with a .tar suffix, e.g. {out.stem}.tar.")
    contents = {name: (atlas.root / name).read_bytes() for name in ATLAS_FILES
                if (atlas.root / name).exists()}
    if IMAGES in contents:
        images = json.loads(contents[IMAGES])
        contents[IMAGES] = _json_bytes({"root": "", "paths": images.get("paths", [])})
    card = atlas_card(atlas, {name: _sha256(data) for name, data in contents.items()},
                      description)
    members = {CARD_JSON: _json_bytes(card), CARD_README: card_markdown(card).encode(),
               **contents}
    with _atomic_path(out) as temporary, tarfile.open(temporary, "w", format=tarfile.PAX_FORMAT) \
            as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    return out


def read_card(packed: Path) -> dict:
    """The ``card.json`` of a packed atlas."""
    with _open_pack(packed) as tar:
        return json.loads(_member(tar, packed, CARD_JSON))


def unpack_atlas(packed: Path, cache_dir: Path | None = None) -> Path:
    """The folder a packed atlas unpacks to, under the cache, keyed by the file's hash.

    Unpacked once: into a temporary folder, every file checked against the card's hash, then
    renamed into place, so a killed unpack leaves nothing half-written. Only the known regular
    files are read; anything else in the tar (links, other paths) makes it refused.
    """
    packed = Path(packed)
    folder = (cache_dir or default_cache_dir().parent / "atlases") / _file_sha256(packed)[:16]
    if (folder / ATLAS_META).exists():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".unpack-"))
    try:
        with _open_pack(packed) as tar:
            for member in tar.getmembers():
                if member.name not in _MEMBERS or not member.isfile():
                    raise damaged(packed, f"it holds {member.name!r}, which is not part of an "
                                          "atlas", REPACK)
            card = json.loads(_member(tar, packed, CARD_JSON))
            if card.get("schema") != CARD_SCHEMA:
                raise damaged(packed, f"its card has schema {card.get('schema')!r}, not "
                                      f"{CARD_SCHEMA}", REPACK)
            for name, expected in card.get("files", {}).items():
                if name not in ATLAS_FILES:
                    raise damaged(packed, f"its card lists {name!r}", REPACK)
                data = _member(tar, packed, name)
                if _sha256(data) != expected:
                    raise damaged(packed, f"{name} does not match the hash in its card", REPACK)
                (staging / name).write_bytes(data)
            (staging / CARD_JSON).write_text(json.dumps(card, indent=2) + "\n")
        try:
            os.replace(staging, folder)
        except OSError:  # another process unpacked the same file first
            if not (folder / ATLAS_META).exists():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def resolve_atlas(spec: str | Path, cache_dir: Path | None = None) -> Path:
    """The atlas folder ``--atlas`` names: a folder, a packed ``.tar`` or ``hf-hub:ORG/NAME``."""
    text = str(spec)
    if text.startswith(HUB_PREFIX):
        return unpack_atlas(hub_atlas_file(text[len(HUB_PREFIX):]), cache_dir)
    path = Path(text).expanduser()
    if path.is_file():
        if not tarfile.is_tarfile(path):
            raise NeuronAttackError(f"{path} is a file but not a packed atlas; give an atlas "
                                    "folder, a file from `neuronattack atlas pack`, or "
                                    "hf-hub:ORG/NAME.")
        return unpack_atlas(path, cache_dir)
    return path


def hub_atlas_file(repo_id: str) -> Path:
    """``atlas.tar`` of a hub repo: from the local cache if there, else one download."""
    from huggingface_hub import hf_hub_download

    if not repo_id.strip("/"):
        raise NeuronAttackError("The atlas spec 'hf-hub:' names no repo; write hf-hub:ORG/NAME.")
    try:
        return Path(hf_hub_download(repo_id, PACKED_NAME, local_files_only=True))
    except Exception:  # not cached (the client raises several types): try the network once
        pass
    try:
        return Path(hf_hub_download(repo_id, PACKED_NAME))
    # Offline mode, DNS, HTTP, auth, a missing file: the user's remedy is the same.
    except Exception as error:
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
    raise NeuronAttackError(
        f"The atlas hf-hub:{repo_id} could not be downloaded or found in the local Hugging Face "
        f"cache ({reason}); download its {PACKED_NAME} and pass --atlas /path/to/{PACKED_NAME}."
    )


def _open_pack(packed: Path) -> tarfile.TarFile:
    try:
        return tarfile.open(packed, "r:")
    except (OSError, tarfile.TarError) as error:
        raise damaged(packed, f"not a readable tar file: {error}", REPACK) from None


def _member(tar: tarfile.TarFile, packed: Path, name: str) -> bytes:
    try:
        handle = tar.extractfile(name)
    except KeyError:
        handle = None
    if handle is None:
        raise damaged(packed, f"it has no {name}", REPACK)
    return handle.read()


def _json_bytes(data) -> bytes:
    return (json.dumps(data, indent=2) + "\n").encode()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def describe(packed: Path) -> dict:
    """The card of a packed file, for ``atlas pack --json`` and the CLI's summary line."""
    return read_card(packed) | {"file": str(packed), "bytes": Path(packed).stat().st_size}

