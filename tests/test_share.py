"""Shared atlases: pack with a card, load from a file or the (offline) hub, refuse other weights."""

from __future__ import annotations

import io
import json
import tarfile
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from safetensors.torch import save_file
from synthetic_atlas import write_synthetic_atlas
from test_hf_clip import random_hf_clip, tiny_config
from test_load_clip import put_in_hub_cache

from neuronattack.cli import main
from neuronattack.errors import NeuronAttackError
from neuronattack.models import load_clip
from neuronattack.models.clip import weights_fingerprint
from neuronattack.neurons.atlas import Atlas
from neuronattack.neurons.share import pack_atlas, read_card, resolve_atlas, unpack_atlas


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("NEURONATTACK_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_pack_writes_the_card_and_the_atlas_byte_for_byte(tmp_path, cache):
    atlas_dir = write_synthetic_atlas(tmp_path / "atlas")
    result = CliRunner().invoke(main, ["atlas", "pack", str(atlas_dir), str(tmp_path / "a.tar"),
                                       "--description", "12 <noise> images", "--json"])
    assert result.exit_code == 0, result.output
    card = json.loads(result.stdout)
    assert card["schema"] == "neuronattack.atlas-card/1"
    assert card["model"] == "random:synthetic@0"
    assert card["vision_fingerprint"] == "0123456789abcdef"
    assert card["image_set"] == {"description": "12 <noise> images",
                                 "fingerprint": "fedcba9876543210", "images": 12}
    assert card["vocabulary"]["source"] == "synthetic test words"
    assert card["vocabulary"]["licence"] == "CC0 (test data)" and card["vocabulary"]["words"] == 40
    assert card["atlas"]["blocks"] == {"1": 16, "2": 16}
    assert {"analysis", "atlas", "packed_with"} <= card["versions"].keys()
    with tarfile.open(tmp_path / "a.tar") as tar:
        names = tar.getnames()
        readme = tar.extractfile("README.md").read().decode()
        images = json.loads(tar.extractfile("images.json").read())
        tensors = tar.extractfile("atlas.safetensors").read()
    assert names[:2] == ["card.json", "README.md"] and "directions.safetensors" in names
    assert tensors == (atlas_dir / "atlas.safetensors").read_bytes()
    assert images["root"] == "" and len(images["paths"]) == 12  # no local path travels
    assert "12 &lt;noise&gt; images" in readme and "library_name: neuronattack" in readme
    # Same atlas, same bytes.
    pack_atlas(atlas_dir, tmp_path / "b.tar", "12 <noise> images")
    assert (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()


def test_packed_file_works_as_atlas_everywhere(tmp_path, cache):
    atlas_dir = write_synthetic_atlas(tmp_path / "atlas")
    packed = pack_atlas(atlas_dir, tmp_path / "a.tar")
    folder = resolve_atlas(packed)
    assert folder.parent == cache / "atlases"
    assert resolve_atlas(str(packed)) == folder  # unpacked once
    original, shared = Atlas.load(atlas_dir), Atlas.load(folder)
    assert shared.search("word3") == original.search("word3")
    assert shared.card(2, 5).top_images[0].startswith("#")  # names only: no images travel
    result = CliRunner().invoke(main, ["neurons", "show", "2.5", "--atlas", str(packed),
                                       "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["words"] == original.card(2, 5).as_dict()["words"]


def test_hub_atlas_loads_from_the_local_hub_cache(tmp_path, cache, offline_hub):
    packed = pack_atlas(write_synthetic_atlas(tmp_path / "atlas"), tmp_path / "a.tar")
    put_in_hub_cache(offline_hub, "neuronattack-test/tiny-atlas", {"atlas.tar": packed})
    result = CliRunner().invoke(main, ["neurons", "search", "word7", "--atlas",
                                       "hf-hub:neuronattack-test/tiny-atlas", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) and read_card(packed)["model"] == "random:synthetic@0"


def test_missing_hub_atlas_fails_fast_in_one_line(cache, offline_hub):
    start = time.monotonic()
    result = CliRunner().invoke(main, ["neurons", "top", "--layer", "2", "--atlas",
                                       "hf-hub:nobody/no-atlas"])
    assert time.monotonic() - start < 5
    assert result.exit_code == 2
    assert len(result.output.strip().splitlines()) == 1
    assert "could not be downloaded or found in the local Hugging Face cache" in result.output


def rewrite_pack(source: Path, target: Path, change) -> Path:
    """A copy of a packed atlas with ``change(name, data) -> data | None`` applied per member."""
    with tarfile.open(source) as tar, tarfile.open(target, "w") as out:
        for member in tar.getmembers():
            data = change(member.name, tar.extractfile(member).read())
            if data is not None:
                info = tarfile.TarInfo(member.name)
                info.size = len(data)
                out.addfile(info, io.BytesIO(data))
        extra = change("", b"")
        if extra:
            info = tarfile.TarInfo("../evil.sh")
            info.size = len(extra)
            out.addfile(info, io.BytesIO(extra))
    return target


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda name, data: data[:-1] + bytes([data[-1] ^ 1]) if name == "atlas.safetensors"
         else data, "atlas.safetensors does not match the hash in its card"),
        (lambda name, data: b"echo hi" if name == "" else data, "'../evil.sh'"),
        (lambda name, data: None if name == "card.json" else data, "it has no card.json"),
    ],
)
def test_damaged_or_foreign_packs_are_refused(tmp_path, cache, change, message):
    packed = pack_atlas(write_synthetic_atlas(tmp_path / "atlas"), tmp_path / "a.tar")
    bad = rewrite_pack(packed, tmp_path / "bad.tar", change)
    with pytest.raises(NeuronAttackError, match=message) as caught:
        unpack_atlas(bad)
    assert "\n" not in str(caught.value)
    assert not (tmp_path.parent / "evil.sh").exists()
    assert not any((cache / "atlases").glob("*/*"))  # nothing half-unpacked stays


def test_a_file_that_is_not_a_pack_is_refused(tmp_path, cache):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(NeuronAttackError, match="is a file but not a packed atlas"):
        resolve_atlas(tmp_path / "notes.txt")


def test_vision_fingerprint_decides_not_the_spec(tmp_path, cache):
    """A transformers CLIPModel and the same weights saved as an open_clip checkpoint have
    different specs but one fingerprint: the atlas of one serves the other; other weights are
    refused with a one-line error naming both fingerprints."""
    random_hf_clip(tiny_config()).save_pretrained(tmp_path / "hf")
    from_transformers = load_clip(f"hf:{tmp_path / 'hf'}")
    (tmp_path / "oc").mkdir()
    from neuronattack.models.hf_clip import open_clip_config

    config = open_clip_config(json.loads((tmp_path / "hf" / "config.json").read_text()), "x")
    (tmp_path / "oc" / "open_clip_config.json").write_text(json.dumps(
        {"model_cfg": config, "preprocess_cfg": {}}))
    save_file(from_transformers.model.state_dict(), tmp_path / "oc" / "open_clip_model.safetensors")
    from_open_clip = load_clip(f"local-dir:{tmp_path / 'oc'}")
    assert from_open_clip.spec != from_transformers.spec

    fingerprint = weights_fingerprint(from_transformers.model.visual)
    atlas_dir = write_synthetic_atlas(tmp_path / "atlas", model=from_transformers.spec,
                                      vision_fingerprint=fingerprint)
    shared = Atlas.load(resolve_atlas(pack_atlas(atlas_dir, tmp_path / "a.tar")))
    shared.require_model(from_transformers)
    shared.require_model(from_open_clip)

    other = random_hf_clip(tiny_config(), seed=5)
    other.save_pretrained(tmp_path / "other")
    stranger = load_clip(f"hf:{tmp_path / 'other'}")
    with pytest.raises(NeuronAttackError) as caught:
        shared.require_model(stranger)
    message = str(caught.value)
    assert fingerprint in message and weights_fingerprint(stranger.model.visual) in message
    assert from_transformers.spec in message and stranger.spec in message and "\n" not in message
