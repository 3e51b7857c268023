"""The word dictionary: bare-word encodings, centring, the reference rescale, the on-disk cache.

The model is the parity fixture's tiny CLIP, whose text tower is real-sized in vocabulary (49408
tokens) but 32 wide and one layer deep, so a few hundred words encode in well under a second.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import PARITY_DIR

from neuronattack.artifacts import load_tensors, save_tensors
from neuronattack.errors import NeuronAttackError
from neuronattack.models.clip import LoadedClip, load_clip
from neuronattack.neurons.text_dictionary import (
    CACHE_SCHEMA,
    build_dictionary,
    cache_path,
    default_cache_dir,
    dictionary_from_embeddings,
    encode_texts,
    text_tower_fingerprint,
)
from neuronattack.neurons.vocabulary import Vocabulary, load_vocabulary, word_list_hash


@pytest.fixture(scope="module")
def clip() -> LoadedClip:
    return load_clip(f"local-dir:{PARITY_DIR}")


@pytest.fixture(scope="module")
def vocabulary() -> Vocabulary:
    return load_vocabulary("common:120")


@pytest.fixture(scope="module")
def unit(clip, vocabulary) -> torch.Tensor:
    """The vocabulary's normalised encodings, computed once as the expected value."""
    return torch.nn.functional.normalize(encode_texts(clip, vocabulary.words), dim=-1)


@pytest.fixture(autouse=True)
def _no_home_cache(monkeypatch, tmp_path):
    """A test that forgets cache_dir must not write into the real ~/.cache."""
    monkeypatch.setenv("NEURONATTACK_CACHE", str(tmp_path / "default-cache"))


def words_vocabulary(words: list[str]) -> Vocabulary:
    return Vocabulary(tuple(words), "test", word_list_hash(words), info={})


def count_text_tower_calls(monkeypatch, clip: LoadedClip) -> list[int]:
    """Wrap the model's encode_text; the returned list grows by one entry per call."""
    calls: list[int] = []
    original = clip.model.encode_text

    def counted(tokens, *args, **kwargs):
        calls.append(len(tokens))
        return original(tokens, *args, **kwargs)

    monkeypatch.setattr(clip.model, "encode_text", counted)
    return calls


def test_encode_texts_is_the_text_tower_on_bare_words(clip, vocabulary):
    words = list(vocabulary.words[:20])
    with torch.no_grad():
        expected = clip.model.encode_text(clip.tokenizer(words))
    encoded = encode_texts(clip, words)
    assert encoded.dtype == torch.float32 and encoded.shape == (20, 32)
    # Short-context encoding: the same sums over fewer positions, so equal to float32 rounding.
    torch.testing.assert_close(encoded, expected, rtol=0, atol=1e-5)
    assert not torch.allclose(encoded.norm(dim=-1), torch.ones(20))  # not normalised here


def test_batch_size_does_not_change_encodings(clip, vocabulary, monkeypatch):
    words = list(vocabulary.words[:20])
    calls = count_text_tower_calls(monkeypatch, clip)
    small = encode_texts(clip, words, batch_size=3)
    assert calls == [3] * 6 + [2]
    torch.testing.assert_close(small, encode_texts(clip, words, batch_size=1000), atol=1e-6,
                               rtol=1e-5)


def test_encode_texts_rejects_empty_input_and_bad_batch_size(clip):
    with pytest.raises(NeuronAttackError, match="no texts"):
        encode_texts(clip, [])
    with pytest.raises(NeuronAttackError, match="batch size is 0"):
        encode_texts(clip, ["dog"], batch_size=0)


def test_progress_bar_leaves_stdout_alone(clip, capsys):
    encoded = encode_texts(clip, ["dog", "cat"], show_progress=True)
    assert encoded.shape == (2, 32)
    assert capsys.readouterr().out == ""


def test_centred_atoms_are_unit_embeddings_minus_their_mean(clip, vocabulary, unit, tmp_path):
    dictionary = build_dictionary(clip, vocabulary, cache_dir=tmp_path)
    assert dictionary.words == vocabulary.words
    assert dictionary.convention == "centred"
    assert dictionary.model_spec == clip.spec
    assert dictionary.vocabulary_hash == vocabulary.hash
    torch.testing.assert_close(dictionary.unit_embeddings, unit)
    torch.testing.assert_close(dictionary.unit_embeddings.norm(dim=-1), torch.ones(120))
    torch.testing.assert_close(dictionary.mean, unit.mean(dim=0))
    torch.testing.assert_close(dictionary.atoms, unit - unit.mean(dim=0))
    assert dictionary.atoms.mean(dim=0).abs().max() < 1e-6


def test_reference_convention_matches_the_papers_numpy_rule(clip, vocabulary, unit, tmp_path):
    dictionary = build_dictionary(clip, vocabulary, convention="reference", cache_dir=tmp_path)
    # second_order_lens: features saved as 100 * normalised embeddings, then centred and each
    # column scaled to norm 100 (compute_text_set_projection.py, compute_sparse_decomposition.py).
    saved = 100 * unit.double().numpy()
    centred = saved - saved.mean(axis=0)
    expected = 100 * centred / np.linalg.norm(centred, axis=0, keepdims=True)
    torch.testing.assert_close(dictionary.atoms.double(), torch.from_numpy(expected), rtol=1e-4,
                               atol=1e-4)
    torch.testing.assert_close(dictionary.atoms.norm(dim=0), torch.full((32,), 100.0))
    assert dictionary.atoms.mean(dim=0).abs().max() < 1e-3
    centred_dictionary = build_dictionary(clip, vocabulary, cache_dir=tmp_path)
    torch.testing.assert_close(dictionary.unit_embeddings, centred_dictionary.unit_embeddings)
    torch.testing.assert_close(dictionary.mean, centred_dictionary.mean)


def test_unknown_convention_is_refused(clip, vocabulary, tmp_path):
    with pytest.raises(ValueError, match="convention"):
        build_dictionary(clip, vocabulary, convention="centered", cache_dir=tmp_path)


def test_one_word_cannot_be_centred():
    with pytest.raises(NeuronAttackError, match="at least 2 words"):
        dictionary_from_embeddings(torch.ones(1, 4), ["dog"], "centred", "spec", "hash")


def test_cache_hit_skips_the_text_tower(clip, vocabulary, tmp_path, monkeypatch):
    first = build_dictionary(clip, vocabulary, cache_dir=tmp_path)
    path = cache_path(tmp_path, clip.spec, vocabulary.hash)
    tensors, metadata = load_tensors(path, with_metadata=True)
    assert metadata["schema"] == CACHE_SCHEMA
    assert metadata["model_spec"] == clip.spec
    assert metadata["vocabulary_hash"] == vocabulary.hash
    assert tensors["embeddings"].shape == (120, 32)

    calls = count_text_tower_calls(monkeypatch, clip)
    for convention in ("centred", "reference"):
        again = build_dictionary(clip, vocabulary, convention=convention, cache_dir=tmp_path)
        assert torch.equal(again.unit_embeddings, first.unit_embeddings)
        assert torch.equal(again.mean, first.mean)
    assert torch.equal(build_dictionary(clip, vocabulary, cache_dir=tmp_path).atoms, first.atoms)
    assert calls == []


@pytest.mark.parametrize(
    "bad_metadata",
    [{"model_spec": "random:ViT-B-32@0"}, {"vocabulary_hash": "0" * 16}, {"schema": "other/1"},
     {"n_words": "119"}, {"text_fingerprint": "0" * 16}],
)
def test_cache_with_mismatched_metadata_is_not_used(
    clip, vocabulary, unit, tmp_path, monkeypatch, bad_metadata
):
    path = cache_path(tmp_path, clip.spec, vocabulary.hash)
    metadata = {"schema": CACHE_SCHEMA, "model_spec": clip.spec,
                "text_fingerprint": text_tower_fingerprint(clip.model),
                "vocabulary_hash": vocabulary.hash, "n_words": "120"} | bad_metadata
    save_tensors(path, {"embeddings": torch.ones(120, 32)}, metadata)
    calls = count_text_tower_calls(monkeypatch, clip)
    dictionary = build_dictionary(clip, vocabulary, cache_dir=tmp_path)
    assert calls  # re-encoded
    torch.testing.assert_close(dictionary.unit_embeddings, unit)
    # The stale file was replaced, so the next run hits.
    assert load_tensors(path, with_metadata=True)[1]["model_spec"] == clip.spec


def test_unreadable_or_misshapen_cache_is_re_encoded(clip, tmp_path, monkeypatch):
    vocabulary = words_vocabulary(["dog", "cat", "car"])
    path = cache_path(tmp_path, clip.spec, vocabulary.hash)
    path.write_bytes(b"not a safetensors file")
    calls = count_text_tower_calls(monkeypatch, clip)
    build_dictionary(clip, vocabulary, cache_dir=tmp_path)
    assert len(calls) == 1
    metadata = {"schema": CACHE_SCHEMA, "model_spec": clip.spec,
                "text_fingerprint": text_tower_fingerprint(clip.model),
                "vocabulary_hash": vocabulary.hash, "n_words": "3"}
    save_tensors(path, {"embeddings": torch.ones(2, 32)}, metadata)
    build_dictionary(clip, vocabulary, cache_dir=tmp_path)
    assert len(calls) == 2


def test_a_changed_text_tower_under_the_same_spec_is_re_encoded(tmp_path, monkeypatch):
    """A checkpoint replaced under the same spec (e.g. retrained toy weights) must not be served
    the old encodings; the vision tower does not matter."""
    own = load_clip(f"local-dir:{PARITY_DIR}")  # mutated below: not the shared fixture
    vocabulary = words_vocabulary(["dog", "cat", "car"])
    first = build_dictionary(own, vocabulary, cache_dir=tmp_path)
    before = text_tower_fingerprint(own.model)
    calls = count_text_tower_calls(monkeypatch, own)
    with torch.no_grad():
        own.model.visual.ln_post.bias.add_(1.0)
    assert text_tower_fingerprint(own.model) == before
    build_dictionary(own, vocabulary, cache_dir=tmp_path)
    assert calls == []
    with torch.no_grad():
        own.model.ln_final.bias.add_(0.5)
    assert text_tower_fingerprint(own.model) != before
    changed = build_dictionary(own, vocabulary, cache_dir=tmp_path)
    assert len(calls) == 1 and not torch.equal(changed.unit_embeddings, first.unit_embeddings)


def test_each_vocabulary_and_model_has_its_own_cache_file(clip, tmp_path):
    first = words_vocabulary(["dog", "cat", "car"])
    second = words_vocabulary(["dog", "cat", "boat"])
    build_dictionary(clip, first, cache_dir=tmp_path)
    build_dictionary(clip, second, cache_dir=tmp_path)
    files = sorted(path.name for path in tmp_path.glob("*.safetensors"))
    assert len(files) == 2
    assert {cache_path(tmp_path, clip.spec, v.hash).name for v in (first, second)} == set(files)
    # Random models are deterministic given their seed, which the normalised spec carries.
    assert cache_path(tmp_path, "random:ViT-B-32@0", first.hash) != cache_path(
        tmp_path, "random:ViT-B-32@1", first.hash
    )
    assert cache_path(tmp_path, "random:ViT-B-32@3", first.hash).name == (
        f"random_ViT-B-32_3-{first.hash}.safetensors"
    )
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temporaries


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("NEURONATTACK_CACHE", str(tmp_path / "root"))
    assert default_cache_dir() == tmp_path / "root" / "text"
    monkeypatch.delenv("NEURONATTACK_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "neuronattack" / "text"


def test_default_cache_dir_is_used_when_none_is_given(clip, tmp_path):
    vocabulary = words_vocabulary(["dog", "cat"])
    build_dictionary(clip, vocabulary)
    assert cache_path(default_cache_dir(), clip.spec, vocabulary.hash).is_file()
    assert default_cache_dir().is_relative_to(tmp_path)
