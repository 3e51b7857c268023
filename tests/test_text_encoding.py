"""The one text-encoding path: short context where exact, full context elsewhere, chunked caches.

Towers are random open_clip text towers of several shapes, built in milliseconds. "Exact" is
checked in float64 (the short pass against ``encode_text`` to 1e-12) and in float32 through the
public ``encode_texts`` (to 1e-5, rounding of sums over fewer positions).
"""

from __future__ import annotations

import open_clip
import pytest
import torch
from conftest import perturb
from open_clip.hf_model import HFTextEncoder
from open_clip.tokenizer import SimpleTokenizer
from transformers import BertConfig

from neuronattack.models import text_encoding
from neuronattack.models.clip import LoadedClip
from neuronattack.models.text_encoding import (
    encode_short,
    encode_texts,
    pooled_positions,
    short_context_plan,
)
from neuronattack.models.zeroshot import class_cache_path, class_embeddings
from neuronattack.neurons.text_dictionary import cache_path, cached_encodings
from neuronattack.neurons.vocabulary import Vocabulary, word_list_hash

VISION = {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16}
EOT = 49407
TEXTS = [
    "a", "dog", "great white shark", "a photo of a very small red cat sitting on the mat",
    " ".join(["word"] * 90),  # longer than any context: the tokenizer cuts it, ending with EOT
    "car", "the quick brown fox", "x y", "an apple", "", "one two three four five six seven",
]

# name -> (class, text config); all are causal and pool at the end-of-text token.
EXACT = {
    "clip-77": (open_clip.CLIP, {"context_length": 77, "width": 32, "heads": 2, "layers": 2}),
    "clip-16-layerscale": (open_clip.CLIP, {"context_length": 16, "width": 48, "heads": 4,
                                            "layers": 3, "ls_init_value": 0.5}),
    "custom-eos-24": (open_clip.CustomTextCLIP, {"context_length": 24, "width": 32, "heads": 2,
                                                 "layers": 2, "pool_type": "eos", "eos_id": EOT,
                                                 "proj_type": "linear", "proj_bias": True}),
}
# name -> (class, text config, the reason's key words)
REFUSED = {
    "bidirectional": (open_clip.CLIP, {"context_length": 20, "width": 32, "heads": 2,
                                       "layers": 1, "no_causal_mask": True}, "both directions"),
    "last-token-pool": (open_clip.CustomTextCLIP, {"context_length": 20, "width": 32, "heads": 2,
                                                   "layers": 1, "pool_type": "last"}, "'last'"),
    "coca-class-token": (open_clip.CustomTextCLIP, {"context_length": 20, "width": 32,
                                                    "heads": 2, "layers": 1, "embed_cls": True},
                         "class token"),
}


def build(kind, text_cfg: dict, seed: int = 0) -> LoadedClip:
    torch.manual_seed(seed)
    model = perturb(kind(16, VISION, {"vocab_size": 49408, **text_cfg}), seed)
    model.eval().requires_grad_(False)
    tokenizer = SimpleTokenizer(context_length=text_cfg["context_length"])
    return LoadedClip(model, None, tokenizer, spec=f"test:{seed}", arch="test")


def hf_style_clip() -> LoadedClip:
    """A CustomTextCLIP whose text tower is a (tiny, random) Hugging Face BERT."""
    clip = build(open_clip.CustomTextCLIP, {"context_length": 20, "width": 32, "heads": 2,
                                            "layers": 1})
    config = BertConfig(vocab_size=49408, hidden_size=32, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=20)
    torch.manual_seed(0)
    clip.model.text = HFTextEncoder("bert", 16, config=config, pooler_type="mean_pooler",
                                    proj_type="linear").eval().requires_grad_(False)
    return clip


def recorded_lengths(monkeypatch, clip: LoadedClip) -> list[int]:
    """Wrap ``encode_text``; the list gets the token length of every call."""
    lengths: list[int] = []
    original = clip.model.encode_text

    def recording(tokens, *args, **kwargs):
        lengths.append(tokens.shape[1])
        return original(tokens, *args, **kwargs)

    monkeypatch.setattr(clip.model, "encode_text", recording)
    return lengths


@pytest.mark.parametrize("name", sorted(EXACT))
def test_short_context_equals_encode_text_in_float64(name):
    kind, cfg = EXACT[name]
    clip = build(kind, cfg)
    plan, reason = short_context_plan(clip.model)
    assert plan is not None and reason == ""
    clip.model.double()
    tokens = clip.tokenizer(TEXTS)
    with torch.no_grad():
        expected = clip.model.encode_text(tokens)  # [texts, out_dim] float64
        for size in (1, 3, len(TEXTS)):
            rows = [encode_short(clip.model, batch, plan) for batch in tokens.split(size)]
            torch.testing.assert_close(torch.cat(rows), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", sorted(EXACT))
def test_encode_texts_is_encode_text_in_its_own_order_at_short_lengths(name, monkeypatch):
    kind, cfg = EXACT[name]
    clip = build(kind, cfg, seed=1)
    with torch.no_grad():
        expected = clip.model.encode_text(clip.tokenizer(TEXTS))
    lengths = recorded_lengths(monkeypatch, clip)
    encoded = encode_texts(clip, TEXTS, batch_size=3)
    assert encoded.dtype == torch.float32 and encoded.shape == expected.shape
    torch.testing.assert_close(encoded, expected, rtol=0, atol=1e-5)
    # Sorted by pooled position: the short texts' batches are cut far below the context.
    positions = pooled_positions(clip.tokenizer(TEXTS), short_context_plan(clip.model)[0])
    expected_lengths = [int(batch.max()) + 1 for batch in positions.sort().values.split(3)]
    assert lengths == expected_lengths
    assert lengths[0] < 5 and lengths[-1] == cfg["context_length"]  # the over-long text


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_towers_where_truncation_is_not_exact_keep_the_full_context(name, monkeypatch):
    kind, cfg, why = REFUSED[name]
    clip = build(kind, cfg)
    plan, reason = short_context_plan(clip.model)
    assert plan is None and why in reason
    with torch.no_grad():
        expected = clip.model.encode_text(clip.tokenizer(TEXTS))
    lengths = recorded_lengths(monkeypatch, clip)
    encoded = encode_texts(clip, TEXTS, batch_size=4)
    torch.testing.assert_close(encoded, expected, rtol=0, atol=0)
    assert lengths == [cfg["context_length"]] * 3


def padding_changes_output(clip: LoadedClip) -> float:
    """Largest change in ``encode_text`` when the padding after each end-of-text is rewritten."""
    tokens = clip.tokenizer(TEXTS)
    after_end = torch.arange(tokens.shape[1]) > tokens.argmax(dim=-1, keepdim=True)
    other_padding = tokens.masked_fill(after_end, 1000)
    with torch.no_grad():
        return float((clip.model.encode_text(tokens)
                      - clip.model.encode_text(other_padding)).abs().max())


def test_the_refusals_are_needed_and_the_accepted_towers_ignore_padding():
    """What truncation relies on, shown on the towers themselves: positions after the pooled
    token change nothing in the accepted towers and a lot in the refused ones."""
    for kind, cfg in EXACT.values():
        assert padding_changes_output(build(kind, cfg)) == 0.0
    for kind, cfg, _ in REFUSED.values():
        assert padding_changes_output(build(kind, cfg)) > 1e-3


def test_a_hugging_face_text_tower_is_refused_and_encoded_at_full_context(monkeypatch):
    clip = hf_style_clip()
    plan, reason = short_context_plan(clip.model)
    assert plan is None and "positional table" in reason
    with torch.no_grad():
        expected = clip.model.encode_text(clip.tokenizer(TEXTS))
    lengths = recorded_lengths(monkeypatch, clip)
    torch.testing.assert_close(encode_texts(clip, TEXTS, batch_size=100), expected, rtol=0,
                               atol=0)
    assert lengths == [20]


def test_a_mask_that_is_not_causal_is_refused():
    clip = build(*EXACT["clip-77"])
    clip.model.attn_mask = torch.zeros(77, 77)
    assert "not causal" in short_context_plan(clip.model)[1]


def test_the_model_is_left_as_it_was():
    clip = build(*EXACT["clip-16-layerscale"])
    before = {name: tensor.clone() for name, tensor in clip.model.state_dict().items()}
    mask = clip.model.attn_mask.clone()
    encode_texts(clip, TEXTS)
    after = clip.model.state_dict()
    assert all(torch.equal(before[name], after[name]) for name in before)
    assert torch.equal(clip.model.attn_mask, mask)


# -- caches ----------------------------------------------------------------------------------

TEMPLATES = ("a photo of a {}.", lambda name: f"a drawing of a {name}.", "{}")
NAMES = ["dog", "cat", "great white shark", "car", "apple"]


def count_encode_calls(monkeypatch) -> list[int]:
    calls: list[int] = []
    original = text_encoding.encode_tokens

    def counted(model, tokens, *args, **kwargs):
        calls.append(len(tokens))
        return original(model, tokens, *args, **kwargs)

    monkeypatch.setattr(text_encoding, "encode_tokens", counted)
    return calls


def test_class_embeddings_cache_hits_and_misses_by_weights_classes_and_templates(
        tmp_path, monkeypatch):
    clip = build(*EXACT["clip-77"])
    uncached = class_embeddings(clip, NAMES, TEMPLATES)
    calls = count_encode_calls(monkeypatch)
    first = class_embeddings(clip, NAMES, TEMPLATES, cache_dir=tmp_path)
    torch.testing.assert_close(first, uncached, rtol=0, atol=1e-6)
    assert sum(calls) == 15 and len(list(tmp_path.glob("*.safetensors"))) == 1
    assert torch.equal(class_embeddings(clip, NAMES, TEMPLATES, cache_dir=tmp_path), first)
    assert sum(calls) == 15  # hit

    class_embeddings(clip, NAMES[:4], TEMPLATES, cache_dir=tmp_path)  # another class set
    assert sum(calls) == 15 + 12
    class_embeddings(clip, NAMES, TEMPLATES[:2], cache_dir=tmp_path)  # other templates
    assert sum(calls) == 27 + 10
    with torch.no_grad():
        clip.model.ln_final.bias.add_(0.5)  # same spec, other text weights
    changed = class_embeddings(clip, NAMES, TEMPLATES, cache_dir=tmp_path)
    assert sum(calls) == 37 + 15 and not torch.allclose(changed, first)
    assert len(list(tmp_path.glob("*.safetensors"))) == 3  # the stale file was replaced


def interrupt_after(monkeypatch, chunks: int, run) -> None:
    """Run ``run()`` with encoding killed (KeyboardInterrupt) when chunk ``chunks + 1`` starts."""
    started: list[int] = []
    original = text_encoding.encode_tokens

    def dies(*args, **kwargs):
        started.append(1)
        if len(started) > chunks:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(text_encoding, "encode_tokens", dies)
        with pytest.raises(KeyboardInterrupt):
            run()


def test_an_interrupted_class_encoding_resumes_at_its_last_chunk(tmp_path, monkeypatch):
    clip = build(*EXACT["clip-16-layerscale"])
    monkeypatch.setattr(text_encoding, "CHUNK_TEXTS", 4)  # 3 templates: one class per chunk
    expected = class_embeddings(clip, NAMES, TEMPLATES)
    interrupt_after(monkeypatch, 2, lambda: class_embeddings(clip, NAMES, TEMPLATES,
                                                             cache_dir=tmp_path))
    calls = count_encode_calls(monkeypatch)
    resumed = class_embeddings(clip, NAMES, TEMPLATES, cache_dir=tmp_path)
    assert calls == [3, 3, 3]  # classes 3, 4 and 5 only
    torch.testing.assert_close(resumed, expected, rtol=0, atol=1e-6)
    prompts = [t.format(n) if isinstance(t, str) else t(n) for n in NAMES for t in TEMPLATES]
    assert [path.name for path in tmp_path.iterdir()] == [
        class_cache_path(tmp_path, clip.spec, word_list_hash(prompts)).name]  # parts removed


def test_an_interrupted_word_encoding_resumes_and_foreign_parts_are_redone(tmp_path, monkeypatch):
    clip = build(*EXACT["clip-77"])
    words = [f"word{i}" for i in range(10)]
    vocabulary = Vocabulary(tuple(words), "test", word_list_hash(words), info={})
    monkeypatch.setattr(text_encoding, "CHUNK_TEXTS", 4)
    expected = encode_texts(clip, words)
    path = cache_path(tmp_path, clip.spec, vocabulary.hash)
    parts = path.with_name(path.name + ".parts")
    interrupt_after(monkeypatch, 1, lambda: cached_encodings(clip, vocabulary, tmp_path))
    assert len(list(parts.iterdir())) == 1 and not path.exists()
    calls = count_encode_calls(monkeypatch)
    resumed = cached_encodings(clip, vocabulary, tmp_path)
    assert calls == [4, 2]
    torch.testing.assert_close(resumed, expected, rtol=0, atol=1e-6)
    assert path.exists() and not parts.exists()

    # A part left by other weights under the same spec is not used.
    path.unlink()
    interrupt_after(monkeypatch, 1, lambda: cached_encodings(clip, vocabulary, tmp_path))
    with torch.no_grad():
        clip.model.ln_final.bias.add_(0.5)
    calls.clear()
    cached_encodings(clip, vocabulary, tmp_path)
    assert calls == [4, 4, 2]
