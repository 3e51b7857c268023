"""The atlas end to end on a tiny model: analyze -> words -> neurons show/search/top -> verify."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner
from conftest import PARITY_DIR, write_class_folders

from neuronattack.cli import main
from neuronattack.neurons.atlas import Atlas, parse_neuron
from neuronattack.neurons.omp import omp

SPEC = f"local-dir:{PARITY_DIR}"


@pytest.fixture(scope="module")
def word_file(tmp_path_factory):
    words = ["dog", "cat", "water", "sky", "grass", "tree", "house", "ball", "snow", "road",
             "car", "ship", "apple", "flower", "sun", "moon", "red", "blue", "green", "yellow",
             "stripes", "dots", "night", "sand", "cloud", "sign", "letter", "bird", "fish", "frog"]
    path = tmp_path_factory.mktemp("words") / "words.txt"
    path.write_text("\n".join(words) + "\n")
    return path


@pytest.fixture(scope="module")
def labelled_images(tmp_path_factory):
    return write_class_folders(tmp_path_factory.mktemp("labelled"), ("cat", "dog", "ship"), 6,
                               seed=1)


@pytest.fixture(scope="module")
def atlas_dir(tmp_path_factory, labelled_images, word_file, monkeypatch_module):
    monkeypatch_module.setenv("NEURONATTACK_CACHE", str(tmp_path_factory.mktemp("cache")))
    out = tmp_path_factory.mktemp("atlas")
    result = CliRunner().invoke(main, [
        "analyze", "--clip", SPEC, "--images", str(labelled_images), "--layers", "1", "2",
        "--out", str(out), "--top-k", "5", "--words", str(word_file), "--nonzeros", "6",
        "--device", "cpu", "--json",
    ])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert all(0 < row["mean_word_cosine"] <= 1 for row in summary)
    return out


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def test_atlas_codes_are_omp_of_the_directions(atlas_dir, word_file):
    from neuronattack.models import load_clip
    from neuronattack.neurons.text_dictionary import build_dictionary
    from neuronattack.neurons.vocabulary import load_vocabulary

    atlas = Atlas.load(atlas_dir)
    dictionary = build_dictionary(load_clip(SPEC), load_vocabulary(str(word_file)))
    assert atlas.words == list(dictionary.words)
    expected = omp(dictionary.atoms, atlas.directions[2].direction, n_nonzero=6)
    assert torch.equal(atlas.codes[2].word_indices, expected.indices)
    assert torch.allclose(atlas.codes[2].word_coefficients, expected.coefficients.float(),
                          atol=1e-5)
    reconstruction = atlas.codes[2].word_coefficients[:, :, None] * \
        dictionary.atoms[atlas.codes[2].word_indices]
    cosine = torch.nn.functional.cosine_similarity(reconstruction.sum(1),
                                                   atlas.directions[2].direction)
    assert torch.allclose(cosine, atlas.codes[2].reconstruction_cosine, atol=1e-5)
    assert torch.allclose(atlas.codes[2].word_direction,
                          torch.nn.functional.normalize(reconstruction.sum(1), dim=1), atol=1e-5)


def test_atlas_says_what_it_was_built_from(atlas_dir):
    from neuronattack.models import load_clip
    from neuronattack.models.clip import weights_fingerprint

    atlas = Atlas.load(atlas_dir)
    assert atlas.model == SPEC and atlas.convention == "centred"
    assert atlas.vision_fingerprint == weights_fingerprint(load_clip(SPEC).model.visual)
    assert atlas.images_used == 18  # 6 images of 3 classes


def test_neurons_show_json(atlas_dir):
    result = CliRunner().invoke(main, ["neurons", "show", "2.17", "--atlas", str(atlas_dir),
                                       "--json"])
    assert result.exit_code == 0, result.output
    card = json.loads(result.stdout)
    atlas = Atlas.load(atlas_dir)
    assert card["neuron"] == "2.17"
    assert len(card["words"]) == 6
    magnitudes = [abs(entry["coefficient"]) for entry in card["words"]]
    assert magnitudes == sorted(magnitudes, reverse=True)
    assert card["variance_explained"] == pytest.approx(
        float(atlas.directions[2].variance_explained[17]))
    assert len(card["top_images"]) == 5
    assert all(path.endswith(".png") for path in card["top_images"])


def test_neurons_search_finds_every_use_of_a_word(atlas_dir):
    atlas = Atlas.load(atlas_dir)
    word = atlas.words[int(atlas.codes[1].word_indices[0, 0])]
    result = CliRunner().invoke(main, ["neurons", "search", word, "--atlas", str(atlas_dir),
                                       "--json", "--n", "100000"])
    assert result.exit_code == 0, result.output
    hits = json.loads(result.stdout)
    index = atlas.words.index(word)
    expected = sum(int((code.word_indices == index).sum()) for code in atlas.codes.values())
    assert len(hits) == expected
    coefficients = [hit["coefficient"] for hit in hits]
    assert coefficients == sorted(coefficients, reverse=True)
    assert "1.0" in {hit["neuron"] for hit in hits}


def test_neurons_top_orders_by_threshold(atlas_dir):
    result = CliRunner().invoke(main, ["neurons", "top", "--layer", "1", "--atlas",
                                       str(atlas_dir), "--n", "7", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    thresholds = [row["threshold"] for row in rows]
    assert len(rows) == 7 and thresholds == sorted(thresholds, reverse=True)
    atlas = Atlas.load(atlas_dir)
    assert thresholds[0] == pytest.approx(float(atlas.directions[1].threshold.max()))


@pytest.mark.parametrize(("argv", "message"), [
    (["neurons", "show", "9.1"], "not in this atlas"),
    (["neurons", "show", "2.9999"], "not in block 2"),
    (["neurons", "show", "two"], "BLOCK.INDEX"),
    (["neurons", "search", "dgo"], "did you mean dog"),
])
def test_neurons_errors(atlas_dir, argv, message):
    result = CliRunner().invoke(main, [*argv, "--atlas", str(atlas_dir)])
    assert result.exit_code == 2
    assert message in result.output


def test_verify_reports_every_mode(atlas_dir, labelled_images):
    result = CliRunner().invoke(main, ["verify", "--atlas", str(atlas_dir), "--images",
                                       str(labelled_images), "--device", "cpu", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["images"] == 18 and report["classes"] == 3
    accuracy = report["accuracy"]
    assert set(accuracy) == {"baseline", "mean-ablated", "rank-one", "words"}
    assert set(accuracy["baseline"]) == {"1", "2", "all"}
    assert len(set(accuracy["baseline"].values())) == 1
    for mode in accuracy.values():
        for value in mode.values():
            assert 0 <= value <= 1 and (value * 18) == pytest.approx(round(value * 18))


def test_more_words_than_dimensions_are_capped(atlas_dir, word_file, tmp_path):
    import shutil

    from neuronattack.models import load_clip
    from neuronattack.neurons.atlas import ensure_atlas

    copy = tmp_path / "copy"
    shutil.copytree(atlas_dir, copy)
    atlas = ensure_atlas(copy, load_clip(SPEC), str(word_file), nonzeros=128, show_progress=False)
    assert atlas.codes[1].word_indices.shape == (256, 30)  # min(128, 32 dims, 30 words)
    assert atlas.atlas_meta["nonzeros"] == 128


def test_parse_neuron():
    assert parse_neuron("9.1234") == (9, 1234)
