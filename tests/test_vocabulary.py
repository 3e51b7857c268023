"""Vocabularies: wordfreq's common words, user word lists, hashes and specs.

Expected word orders are read from wordfreq itself, not hard-coded, so these tests pin our cleaning
and ordering rules rather than one wordfreq release.
"""

from __future__ import annotations

import dataclasses
import re
from importlib.metadata import version

import pytest
import wordfreq

from neuronattack.errors import NeuronAttackError
from neuronattack.neurons.vocabulary import (
    PROFANITY_LIST,
    Vocabulary,
    clean_tokens,
    common_english_words,
    load_vocabulary,
    profanity_words,
    read_word_list,
    word_list_hash,
)

N = 30000
CLEAN = re.compile(r"[a-z]{2,}")


@pytest.fixture(scope="module")
def raw_tokens() -> list[str]:
    """Enough of wordfreq's own ranking to cover the top 30k clean words with room to spare."""
    return wordfreq.top_n_list("en", 2 * N, wordlist="large")


@pytest.fixture(scope="module")
def common() -> list[str]:
    return common_english_words(N)


def test_common_words_are_exactly_n_clean_unique_words(common):
    assert len(common) == N
    assert all(CLEAN.fullmatch(word) for word in common)
    assert len(set(common)) == N


def test_common_words_follow_wordfreq_order_without_skipping_clean_words(common, raw_tokens):
    rank = {}
    for i, token in enumerate(raw_tokens):
        rank.setdefault(token, i)
    positions = [rank[word] for word in common]
    assert positions == sorted(positions), "words are out of wordfreq's frequency order"
    last = positions[-1]
    skipped = {t for t in raw_tokens[:last] if CLEAN.fullmatch(t)} - set(common)
    assert not skipped, f"clean words dropped: {sorted(skipped)[:10]}"
    assert common[0] == raw_tokens[0]


def test_common_words_drop_wordfreq_tokens_that_are_not_plain_words(common, raw_tokens):
    # Pick the rejects from wordfreq's data so the test is about real tokens, not imagined ones.
    head = raw_tokens[:500]
    single_letters = [t for t in head if len(t) == 1 and t.isalpha()]
    contractions = [t for t in head if "'" in t]
    with_digits = [t for t in raw_tokens[:5000] if any(c.isdigit() for c in t)]
    assert single_letters and contractions and with_digits, "wordfreq no longer has such tokens"
    assert not set(single_letters + contractions + with_digits) & set(common)


def test_clean_tokens_drops_duplicates_rejects_and_blocked_words_keeping_order():
    # wordfreq's list has no duplicate clean tokens today, so the dedup rule is checked here.
    tokens = ["the", "a", "it's", "dog", "the", "café", "u.s", "Cat", "2nd", "cat", "dog", "ox"]
    assert clean_tokens(tokens) == ["the", "dog", "cat", "ox"]
    assert clean_tokens(tokens, blocked=frozenset({"dog"})) == ["the", "cat", "ox"]


def test_common_words_are_deterministic_and_prefix_consistent(common):
    assert common_english_words(N) == common
    assert common_english_words(5000) == common[:5000]


def test_profanity_filter_replaces_blocked_words_and_keeps_n(common):
    blocked = profanity_words()
    present = blocked & set(common)
    assert present, "no block-listed word is in the top 30k, so the filter is untested"
    clean = common_english_words(N, profanity_filter=True)
    assert len(clean) == N
    assert not blocked & set(clean)
    longer = common_english_words(N + len(blocked))
    assert clean == [w for w in longer if w not in blocked][:N]


def test_profanity_list_entries_can_match_vocabulary_words():
    entries = read_word_list(PROFANITY_LIST)
    assert 30 <= len(entries) <= 60
    assert [e for e in entries if not CLEAN.fullmatch(e)] == []


def test_asking_for_more_words_than_wordfreq_has_is_a_clear_error():
    with pytest.raises(NeuronAttackError, match=r"has only \d+ clean English words.*at most"):
        common_english_words(10_000_000)


def test_asking_for_no_words_is_an_error():
    with pytest.raises(NeuronAttackError, match="at least 1"):
        common_english_words(0)


def test_read_word_list_handles_comments_blanks_duplicates_and_descriptions(tmp_path):
    path = tmp_path / "pool.txt"
    path.write_text(
        "\ufeff# a comment\n"
        "dog\n"
        "\n"
        "   \t\n"
        "  a photo of a dog   on grass  \n"
        "  # an indented comment\n"
        "cat\n"
        "dog\n"
        "a photo of a dog on grass\n"
        "Dog\n"
        "C# code on a screen\n"
        "café au lait\r\n",
        encoding="utf-8",
    )
    assert read_word_list(path) == [
        "dog",
        "a photo of a dog on grass",
        "cat",
        "Dog",
        "C# code on a screen",
        "café au lait",
    ]


def test_read_word_list_rejects_missing_file(tmp_path):
    missing = tmp_path / "nope.txt"
    with pytest.raises(NeuronAttackError, match=r"nope\.txt does not exist"):
        read_word_list(missing)


def test_read_word_list_rejects_directory(tmp_path):
    with pytest.raises(NeuronAttackError, match="is not a file"):
        read_word_list(tmp_path)


def test_read_word_list_rejects_file_without_entries(tmp_path):
    path = tmp_path / "empty.txt"
    path.write_text("# only a comment\n\n   \n", encoding="utf-8")
    with pytest.raises(NeuronAttackError, match="has no entries"):
        read_word_list(path)


def test_read_word_list_rejects_non_utf8(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("caf\u00e9\n".encode("latin-1"))
    with pytest.raises(NeuronAttackError, match="not valid UTF-8"):
        read_word_list(path)


def test_word_list_hash_is_stable_short_hex_and_order_sensitive():
    words = ["the", "to", "and"]
    # Golden value: if this changes, every cached embedding table is silently orphaned.
    assert word_list_hash(words) == "a6a3799533bba8af"
    assert word_list_hash(tuple(words)) == word_list_hash(words)
    assert word_list_hash(["to", "the", "and"]) != word_list_hash(words)
    assert word_list_hash(["ab", "c"]) != word_list_hash(["a", "bc"])
    assert word_list_hash(["a b"]) != word_list_hash(["a", "b"])


def test_load_vocabulary_common_default():
    vocab = load_vocabulary("common")
    assert vocab.source == "common:30000"
    assert len(vocab.words) == N
    assert vocab.hash == word_list_hash(vocab.words)
    assert vocab.info["wordfreq_version"] == version("wordfreq")
    assert vocab.info["profanity_filter"] is False
    assert version("wordfreq") in vocab.info["source"]
    assert "CC-BY-SA 4.0" in vocab.info["licence"]


@pytest.mark.parametrize(
    ("spec", "canonical", "n", "filtered"),
    [
        ("common:5000", "common:5000", 5000, False),
        ("common:05000:clean", "common:5000:clean", 5000, True),
        ("common:clean", "common:30000:clean", 30000, True),
    ],
)
def test_load_vocabulary_common_specs(spec, canonical, n, filtered):
    vocab = load_vocabulary(spec)
    assert vocab.source == canonical
    assert list(vocab.words) == common_english_words(n, profanity_filter=filtered)
    assert vocab.info["n"] == n
    assert vocab.info["profanity_filter"] is filtered


@pytest.mark.parametrize("spec", ["common:", "common:abc", "common:10:dirty", "common:clean:10"])
def test_load_vocabulary_rejects_malformed_common_specs(spec):
    with pytest.raises(NeuronAttackError, match="is not valid; use common"):
        load_vocabulary(spec)


def test_load_vocabulary_from_file(tmp_path):
    path = tmp_path / "words.txt"
    path.write_text("zebra\nstriped horse\nzebra\n", encoding="utf-8")
    vocab = load_vocabulary(str(path))
    assert vocab.words == ("zebra", "striped horse")
    assert vocab.source == str(path)
    assert vocab.hash == word_list_hash(["zebra", "striped horse"])
    assert vocab.info == {"kind": "file", "path": str(path), "n": 2}


def test_load_vocabulary_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(NeuronAttackError, match="does not exist"):
        load_vocabulary(str(tmp_path / "missing.txt"))


def test_vocabulary_is_frozen_and_hashable():
    vocab = Vocabulary(words=("a", "b"), source="x", hash=word_list_hash(["a", "b"]), info={})
    with pytest.raises(dataclasses.FrozenInstanceError):
        vocab.words = ()
    assert {vocab: 1}[vocab] == 1
