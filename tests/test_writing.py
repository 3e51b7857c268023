"""Writers: the template writer's guarantees over many word lists, and the LLM writer's loop.

The LLM writer runs on a tiny random GPT-2 built offline in a temporary folder; its gibberish is
replaced by known lines where the parsing and the filter are under test.
"""

from __future__ import annotations

import random
import re
import shutil
import time
from pathlib import Path

import pytest

from neuronattack.errors import NeuronAttackError
from neuronattack.resources import SENTENCE_TEMPLATES
from neuronattack.writing import HFWriter, Sentence, TemplateWriter, load_writer, overrides
from neuronattack.writing.inflection import (
    indefinite_article,
    inflect_article,
    is_plural,
    libraries_plural,
    noun_plurals,
    plural,
)
from neuronattack.writing.lexicon import _MASS_NOUNS, is_mass, library_role, word_role
from neuronattack.writing.llm import build_prompt, parse_lines
from neuronattack.writing.matching import contains_word, mentions_text, post_filter
from neuronattack.writing.templates import load_templates


def words_of(text: str) -> list[str]:
    """The words of a block of text, first copy of each (groups below share a few words)."""
    return list(dict.fromkeys(text.split()))


# Varied common English words: nouns, plurals, mass nouns, adjectives, -ed and -ing forms,
# adverbs, verbs, names, places, times, colours, numbers, pronouns and function words. None asks
# for text in the image, so any such word in a sentence was added by the writer.
WORDS = words_of(
    """
elephant value sun umbrella piano tulip violin highway banking services moon ball tree house
cloud stripes dots water grass snow beach road night sky sand forest river kitchen mountain
city garden desert island bridge airport market stage winter summer morning evening sunset
today red blue green golden purple black white orange pink grey silver famous spiritual
electric careless comfortable fluffy ancient beautiful dangerous creative national magic
endless reliable visible childish wooden broken painted frozen tired curious angry happy
quietly happily quickly slowly suddenly carefully gently nearly really recently softly
sleeping running dancing swimming reading cooking banking flying shopping painting building
make organize travel simplify celebrate explore remember listen collect climb
maria john henry sarah london paris tokyo japan africa christmas
the of and with because although but or if than very too many some two three twelve
they she them him my their every another under above behind between might could should
asleep alone nearby outside upstairs together
money music information furniture coffee bread rice happiness freedom capitalism
history energy city party baby country story memory library quality agency army
elephants boxes puppies leaves children people glasses horses cars buses churches
apple orange banana chocolate cheese pizza guitar drum camera bicycle train rocket
computer phone lamp chair table window door mirror clock candle flower rose garden
lion tiger zebra giraffe monkey penguin dolphin whale shark eagle owl parrot butterfly
spider snake frog turtle rabbit mouse horse cow sheep pig goat chicken duck fish
doctor teacher farmer soldier king queen princess pilot chef artist student baby
castle temple tower pyramid lighthouse volcano waterfall glacier canyon cave
storm rain fog rainbow thunder lightning fire smoke ice wind
"""
)

# What would make an image spell something: the template writer must never add these.
TYPOGRAPHIC = (
    "sign", "label", "caption", "text", "reads", "says", "written", "writing", "letters",
    "lettering", "logo", "word", "quote", "inscription", "poster", "banner", "billboard",
)  # fmt: skip
DOG_FORBIDDEN = {"dog", "puppy", "hound", "canine"}
# Words the templates and phrase builder themselves use, forbidden now and then.
SCAFFOLD = ["photo", "picture", "image", "near", "beside", "ready", "lit", "background", "the"]


def tokens(text: str) -> list[str]:
    return re.findall(r"[a-z]+", text.lower())


def plural_spellings(word: str) -> set[str]:
    """An independent list of the plural spellings a forbidden single word may take."""
    forms = {word, f"{word}s", f"{word}es"}
    if word.endswith("y"):
        forms.add(f"{word[:-1]}ies")
    return forms


@pytest.fixture(scope="module")
def writer() -> TemplateWriter:
    return TemplateWriter()


# ---------------------------------------------------------------------------------------------
# Words in text


def test_contains_word_is_whole_word_case_insensitive_and_knows_plurals():
    assert contains_word("Two Dogs play", "dog") and contains_word("the dog's ball", "dog")
    assert contains_word("a dog-friendly park", "dog")
    assert not contains_word("a hotdog stand", "dog") and not contains_word("dogma", "dog")
    assert contains_word("boxes of toys", "box") and contains_word("three puppies", "puppy")
    assert contains_word("autumn leaves", "leaf") and contains_word("two firemen", "fireman")
    assert contains_word("golden retrievers at play", "golden retriever")
    assert contains_word("a Golden-Retriever", "golden retriever")
    assert not contains_word("a golden coin", "golden retriever")
    assert not contains_word("anything", "") and not contains_word("the cats", "cat toy")


def test_post_filter_keeps_lines_with_the_source_and_nothing_forbidden():
    lines = [
        "a cat on the beach",
        "a cat beside two dogs",  # plural of a forbidden word
        "an elephant in the snow",  # no source
        "A cat  on the beach",  # a copy, up to case and spacing
        "a cat with a Puppy",
        "a cat under the sun",
    ]
    assert post_filter(lines, "cat", DOG_FORBIDDEN) == ["a cat on the beach", "a cat under the sun"]


def test_post_filter_does_not_hold_the_source_name_against_a_line():
    # tiger cat → tabby cat forbids "cat", yet the source itself must be nameable.
    forbidden = {"tabby cat", "tabby", "cat"}
    lines = ["a tiger cat on the grass", "a tiger cat beside a cat", "a tabby tiger cat"]
    assert post_filter(lines, "tiger cat", forbidden) == ["a tiger cat on the grass"]


def test_mentions_text_flags_writing_but_not_objects_the_words_bring():
    assert mentions_text("a cat under a sign that reads hello")
    assert mentions_text('a cat next to the word "value"')
    assert mentions_text("a cat with 'value' on its collar")
    assert not mentions_text("Maria's cat on the beach")
    assert not mentions_text("a stop sign in the snow", allowed=["stop sign"])


def test_indefinite_article_follows_the_sound():
    assert [indefinite_article(w) for w in ("elephant", "value", "umbrella", "hour")] == [
        "an", "a", "an", "an"
    ]  # fmt: skip
    assert [indefinite_article(w) for w in ("unicorn", "user", "euro", "one-eyed")] == ["a"] * 4
    # Spelling says little here; inflect knows the sound.
    tricky = {"European": "a", "ukulele": "a", "uranium": "a", "Utah": "a", "heir": "an",
              "honest cat": "an", "unintended": "an", "X-ray": "an", "ones": "a", "uni": "a"}
    assert {w: indefinite_article(w) for w in tricky} == tricky


def test_plurals_come_from_the_libraries_with_lexicon_spellings_first():
    nouns = {"mouse": "mice", "sheep": "sheep", "child": "children", "fireman": "firemen",
             "leaf": "leaves", "box": "boxes", "puppy": "puppies", "person": "people",
             "ego": "egos", "thief": "thieves", "gentleman": "gentlemen", "epoch": "epochs",
             "german": "germans", "norman": "normans", "golden retriever": "golden retrievers",
             "Wolf": "Wolves"}  # fmt: skip
    assert {noun: plural(noun) for noun in nouns} == nouns
    # inflect alone misspells these; the lexicon's spelling is the one used.
    assert _inflect_plural("ego") == "egoes" and _inflect_plural("thief") == "thiefs"


def _inflect_plural(noun: str) -> str:
    import inflect

    return inflect.engine().plural_noun(noun)


def test_is_plural_reads_the_lexicon():
    assert all(map(is_plural, ["elephants", "mice", "glasses", "travels", "people", "leaves",
                               "data", "golden retrievers", "iphones"]))  # fmt: skip
    assert not any(map(is_plural, ["sheep", "news", "species", "bus", "cactus", "glass",
                                   "golden retriever"]))  # fmt: skip


def test_is_mass_uses_the_lexicon_and_the_kept_table():
    assert all(map(is_mass, ["sand", "music", "water", "information", "happiness", "yoga"]))
    assert not any(map(is_mass, ["elephant", "stone wall", "value", "cat"]))


def test_every_override_is_still_needed():
    """Each entry must differ from what the libraries say: one a library update makes redundant
    fails here and leaves the table."""
    for noun, (form, reason) in overrides.PLURALS.items():
        assert libraries_plural(noun) != form and reason, noun
    for word, (article, reason) in overrides.ARTICLES.items():
        assert inflect_article(word) != article and reason, word
    for table, role in ((overrides.VERBS_FIRST, "verb"), (overrides.ADJECTIVES_FIRST, "adjective")):
        for word, reason in table.items():
            assert library_role(word) != role and reason, word
            assert word_role(word) == role, word
    # The kept mass nouns are those lemminflect lists with a plural (else it marks them itself).
    assert all(noun_plurals(noun) not in ((), (noun,)) for noun in _MASS_NOUNS)


def test_forbidden_words_match_their_lexicon_plurals():
    for word, form in [("cactus", "cacti"), ("fungus", "fungi"), ("person", "people"),
                       ("mouse", "mice"), ("thief", "thieves"), ("goose", "geese"),
                       ("ox", "oxen"), ("criterion", "criteria")]:  # fmt: skip
        assert contains_word(f"a scene with {form} in it", word), (word, form)
        assert post_filter([f"a cat beside two {form}"], "cat", {word}) == [], word


def test_word_roles_follow_the_documented_heuristics():
    roles = {
        "red": "colour", "beach": "place", "night": "time", "quietly": "adverb",
        "sleeping": "gerund", "famous": "adjective", "careless": "adjective",
        "painted": "adjective", "fluffy": "adjective", "Maria": "name", "maria": "name",
        "paris": "place", "organize": "verb", "elephants": "noun", "value": "noun",
        "city": "place", "history": "noun", "morning": "time", "building": "noun",
        "family": "noun", "the": "determiner", "because": "function", "two": "quantity",
        "under": "preposition", "they": "subject pronoun", "might": "modal",
        "ice cream": "noun", "forty": "quantity", "smaller": "adjective", "nuts": "noun",
        "dance": "noun", "make": "verb", "concludes": "finite verb", "apiece": "function",
        "incompatible": "adjective", "toronto": "noun", "painting": "gerund",
    }  # fmt: skip
    assert {word: word_role(word) for word in roles} == roles


# ---------------------------------------------------------------------------------------------
# The template writer


def test_template_writer_is_deterministic_per_seed_and_seeds_differ(writer):
    words = ["elephant", "value", "sun", "beach", "quietly", "famous", "red", "night"]
    first = writer.write("cat", words, 8, seed=3, forbidden=DOG_FORBIDDEN)
    again = TemplateWriter().write("cat", words, 8, seed=3, forbidden=DOG_FORBIDDEN)
    other = writer.write("cat", words, 8, seed=4, forbidden=DOG_FORBIDDEN)
    assert first == again
    assert [s.text for s in first] != [s.text for s in other]
    assert all(isinstance(s, Sentence) for s in first) and len(first) == 8
    assert len({s.text for s in first}) == 8  # distinct while the words allow it


def test_template_writer_leaves_global_random_state_alone(writer):
    random.seed(123)
    expected = random.random()
    random.seed(123)
    writer.write("cat", ["elephant", "value", "sun"], 5, seed=0)
    assert random.random() == expected


@pytest.mark.parametrize("source", ["cat", "golden retriever", "stop sign", "Granny Smith"])
def test_every_sentence_contains_the_source_as_given(writer, source):
    for seed in range(3):
        words = random.Random(seed).sample(WORDS, 12)
        for sentence in writer.write(source, words, 10, seed):
            assert source in sentence.text
            assert not mentions_text(sentence.text, [source, *words]), sentence.text


def test_property_no_forbidden_word_or_plural_and_honest_words_used(writer):
    """Over many random word lists and seeds: the contract of Writer.write, checked directly."""
    for trial in range(150):
        rng = random.Random(trial)
        words = rng.sample(WORDS, rng.randint(1, 30))
        forbidden = DOG_FORBIDDEN | set(rng.sample(words, min(3, len(words) - 1)))
        forbidden |= set(rng.sample(SCAFFOLD, rng.randint(0, 3)))
        count = rng.randint(1, 12)
        sentences = writer.write("cat", words, count, seed=trial, forbidden=forbidden)
        assert len(sentences) == count
        for sentence in sentences:
            text = sentence.text
            assert contains_word(text, "cat"), text
            for word in forbidden:
                assert not contains_word(text, word), (word, text)
                assert not plural_spellings(word) & set(tokens(text)), (word, text)
            assert set(sentence.words_used) <= set(words) - forbidden
            assert all(contains_word(text, word) for word in sentence.words_used), text
            for term in TYPOGRAPHIC:
                assert not contains_word(text, term), text
            assert not re.search(r"[\"“”]", text) and "'" not in text.replace("'s ", " "), text


def test_vocabulary_sentences_name_the_source_and_no_forbidden_word(writer):
    """The benchmark's words (every 100th of the 30,000 common words): real vocabulary reaches
    the lexicon, inflect and the overrides, and the contract holds all the same."""
    from neuronattack.neurons.vocabulary import common_english_words

    vocabulary = common_english_words(30000, profanity_filter=True)[::100]
    for trial in range(24):
        rng = random.Random(trial)
        words = rng.sample(vocabulary, 8)
        forbidden = set(rng.sample(words, 2)) | DOG_FORBIDDEN
        source = ["cat", "umbrella", "golden retriever", "owl"][trial % 4]
        for sentence in writer.write(source, words, 4, trial, forbidden):
            text = sentence.text
            assert source in text, text
            assert not any(contains_word(text, word) for word in forbidden), (forbidden, text)
            for article, word in re.findall(r"\b([Aa]n?) ([\w-]+)", text):
                assert article.lower() == inflect_article(word), text


def test_sentences_use_three_to_six_words_when_they_can(writer):
    content = [w for w in WORDS if word_role(w) in ("noun", "adjective", "colour", "place")]
    for seed in range(3):
        counts = [len(s.words_used) for s in writer.write("cat", content[:40], 30, seed)]
        assert min(counts) >= 3 and max(counts) <= 6
        assert sum(counts) / len(counts) >= 4


def test_coverage_every_word_is_used_in_eight_sentences(writer):
    words = ["elephant", "value", "sun", "beach", "quietly", "famous", "red", "night",
             "sleeping", "umbrella"]  # fmt: skip
    for seed in range(5):
        sentences = writer.write("cat", words, 8, seed)
        used = [w for s in sentences for w in s.words_used]
        assert set(used) == set(words), seed
        # Shuffled rounds keep use even: no word gets much more than twice the share of another.
        assert max(map(used.count, words)) <= 2 * min(map(used.count, words)) + 1


def test_articles_agree_with_the_next_word(writer):
    sentences = writer.write("cat", ["elephant", "value", "umbrella", "house", "owl"], 12, 0)
    text = " | ".join(s.text for s in sentences)
    assert "an elephant" in text and "a value" in text
    assert not re.search(r"\ba (elephant|umbrella|owl)\b", text)
    assert not re.search(r"\ban (value|house)\b", text)
    for trial in range(10):
        words = random.Random(trial).sample(WORDS, 15)
        for sentence in writer.write("apple", words, 8, trial):
            for article, word in re.findall(r"\b(a|an) ([a-z]+)", sentence.text.lower()):
                if word[0] in "bcdfgjklmnpqrstvwxz":
                    assert article == "a", sentence.text
                if word[0] in "ai":
                    assert article == "an", sentence.text


def test_toy_words_become_a_scene_the_toy_parser_reads():
    from neuronattack.toy.renderer import parse_prompt

    writer = TemplateWriter(min_words=5, max_words=5)
    words = ["red", "stripes", "water", "moon", "ball"]
    for sentence in writer.write("cat", words, 8, seed=2):
        assert set(sentence.words_used) == set(words), sentence.text
        scene = parse_prompt(sentence.text).scene
        main = scene.objects[0]
        assert (main.cls, main.colour, main.pattern) == ("cat", "red", "striped"), sentence.text
        assert scene.background == "water" and set(scene.props) == {"moon", "ball"}
        assert scene.sign is None


def test_no_words_gives_source_only_sentences(writer):
    sentences = writer.write("truck", [], 6, seed=0, forbidden={"car"})
    assert len(sentences) == 6 and all(contains_word(s.text, "truck") for s in sentences)
    assert all(s.words_used == () for s in sentences)


def test_forbidden_chosen_words_are_never_used(writer):
    sentences = writer.write("cat", ["puppies", "hot dog", "elephant"], 5, 0, {"dog", "puppy"})
    assert all(s.words_used == ("elephant",) for s in sentences)


def test_a_word_whose_phrase_is_forbidden_is_left_out_alone(writer):
    # "morning" is always "in the morning"; with "the" forbidden only it can go.
    for sentence in writer.write("cat", ["morning", "elephant", "value"], 6, 0, {"the"}):
        assert sentence.words_used == ("elephant", "value"), sentence.text


def test_impossible_request_raises_one_clear_error(tmp_path):
    path = tmp_path / "one.txt"
    path.write_text("a photo of {subject} {action} {place} {near} {time}[ with {nouns}]\n")
    with pytest.raises(NeuronAttackError, match="without a forbidden word"):
        TemplateWriter(path).write("cat", ["sun"], 2, 0, forbidden={"photo"})
    with pytest.raises(NeuronAttackError, match="source class name is empty"):
        TemplateWriter().write(" ", ["sun"], 2, 0)


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("{subject} {colour}", "is not a slot"),
        ("a photo of {action} {place}", "no {subject}"),
        ("[{subject}] {action}", "no {subject}"),
        ("{subject} [with [{nouns}]]", "nests"),
        ("{subject} [with {nouns}", "never closed"),
        ("{subject} with {nouns}]", "no '['"),
        ("{subject} [on the left]", "no slot"),
        ("a photo of a {subject}", "article"),
        ("{subject} {place} {place}", "more than once"),
        ("{subject} under a sign {near}", "'sign'"),
        ("{subject} with the caption {nouns}", "'caption'"),
        ('{subject} saying "hello" {near}', "quotes"),
        ("{subject {action}", "stray"),
    ],
)
def test_malformed_template_file_names_the_line_and_problem(tmp_path, line, problem):
    path = tmp_path / "templates.txt"
    path.write_text(
        f"# header\n\n{{subject}} {{action}} {{place}} {{near}} {{time}} {{nouns}}\n{line}\n"
    )
    with pytest.raises(NeuronAttackError, match="Line 4 .*malformed") as raised:
        load_templates(path)
    assert problem in str(raised.value)


def test_template_file_needs_one_template_with_every_slot(tmp_path):
    path = tmp_path / "templates.txt"
    path.write_text("a photo of {subject} {place}\n")
    with pytest.raises(NeuronAttackError, match="all six slots"):
        load_templates(path)
    with pytest.raises(NeuronAttackError, match="does not exist"):
        load_templates(tmp_path / "missing.txt")


def test_shipped_templates_parse_and_never_ask_for_text():
    templates = load_templates(SENTENCE_TEMPLATES)
    assert len(templates) >= 20
    for template in templates:
        assert not any(contains_word(template.literal_text, term) for term in TYPOGRAPHIC)


# ---------------------------------------------------------------------------------------------
# load_writer


def test_load_writer_forms(tmp_path):
    assert isinstance(load_writer("template"), TemplateWriter)
    assert load_writer("").name == "template"
    path = tmp_path / "mine.txt"
    shutil.copy(SENTENCE_TEMPLATES, path)
    assert load_writer(f"template:{path}").name == f"template:{path}"
    for bad in ("gpt4", "hf:", "template:", "llm:foo"):
        with pytest.raises(NeuronAttackError, match="'template'.*'hf:REPO_OR_PATH'"):
            load_writer(bad)
    with pytest.raises(NeuronAttackError, match="does not exist"):
        load_writer(f"hf:{tmp_path / 'no-such-model'}")


# ---------------------------------------------------------------------------------------------
# The LLM writer


def test_build_prompt_names_source_words_and_forbidden_words():
    prompt = build_prompt("golden retriever", ["sun", "value"], 5, {"cat", "kitten"})
    assert prompt.startswith("Write 5 ")
    assert "exactly these words: golden retriever." in prompt
    assert "sun, value" in prompt and "cat, kitten" in prompt
    assert "no text" in prompt


def test_parse_lines_strips_numbering_bullets_and_quotes():
    raw = (
        "Here are three descriptions:\n"
        "1. A cat on the beach.\n"
        "2) a cat under the sun\n"
        '- "a cat in the snow"\n'
        "* **a cat at night**\n"
        "• a cat by a river\n"
        "\n"
        "Enjoy!\n"
    )
    assert parse_lines(raw) == [
        "A cat on the beach",
        "a cat under the sun",
        "a cat in the snow",
        "a cat at night",
        "a cat by a river",
    ]


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-layer random GPT-2 and a word-level tokenizer, saved like a hub model folder."""
    pytest.importorskip("transformers")
    tokenizers = pytest.importorskip("tokenizers")
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    folder = tmp_path_factory.mktemp("tiny-lm")
    vocab_words = words_of("a an the cat dog sun on in with beach snow elephant value and night")
    vocab = {word: index for index, word in enumerate(["[UNK]", "[PAD]", "</s>", *vocab_words])}
    backend = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = tokenizers.pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]", eos_token="</s>"
    )
    tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(vocab), n_layer=1, n_embd=32, n_head=2, n_positions=512,
                        bos_token_id=2, eos_token_id=2, pad_token_id=1)  # fmt: skip
    GPT2LMHeadModel(config).save_pretrained(folder)
    return folder



def test_hf_writer_generates_deterministically_without_touching_the_global_rng(tiny_lm):
    import torch

    writer = load_writer(f"hf:{tiny_lm}")
    assert isinstance(writer, HFWriter) and writer.name == f"hf:{tiny_lm}"
    state = torch.get_rng_state()
    first = writer.generate("Write 2 descriptions of a cat", seed=5, max_new_tokens=12)
    assert torch.equal(torch.get_rng_state(), state)
    assert first == writer.generate("Write 2 descriptions of a cat", seed=5, max_new_tokens=12)
    others = {writer.generate("Write 2 descriptions of a cat", s, 12) for s in range(6, 10)}
    assert others - {first}
    assert isinstance(first, str)


def test_hf_writer_uses_the_chat_template_when_there_is_one(tiny_lm):
    writer = HFWriter(str(tiny_lm))
    assert writer.format_prompt("hello") == "hello\n\n"
    writer.tokenizer.chat_template = (
        "{% for m in messages %}<user> {{ m['content'] }}{% endfor %}"
        "{% if add_generation_prompt %} <assistant>{% endif %}"
    )
    assert writer.format_prompt("a cat") == "<user> a cat <assistant>"
    assert isinstance(writer.generate("a cat", seed=0, max_new_tokens=4), str)


def test_hf_writer_parses_filters_and_asks_again(tiny_lm, monkeypatch):
    writer = HFWriter(str(tiny_lm))
    answers = iter([
        "Here are 5 descriptions:\n"
        "1. A cat on the beach with an elephant.\n"
        "2) a dog beside a cat\n"
        '- "a cat under the sun with a value"\n'
        "* an elephant in the snow\n"
        "3. a cat with three puppies nearby\n",
        "1. a cat beside a sign that reads value\n"
        "2. A cat on the beach with an elephant\n"
        "3. a cat at night with the sun and an elephant\n",
    ])  # fmt: skip
    calls: list[tuple[str, int, int]] = []

    def fake_generate(prompt: str, seed: int, max_new_tokens: int = 512) -> str:
        calls.append((prompt, seed, max_new_tokens))
        return next(answers)

    monkeypatch.setattr(writer, "generate", fake_generate)
    sentences = writer.write("cat", ["elephant", "value", "sun"], 3, seed=0,
                             forbidden={"dog", "puppy"})  # fmt: skip
    assert [s.text for s in sentences] == [
        "A cat on the beach with an elephant",
        "a cat under the sun with a value",
        "a cat at night with the sun and an elephant",
    ]
    assert sentences[1].words_used == ("value", "sun")
    assert len(calls) == 2
    first_prompt = calls[0][0]
    assert first_prompt.startswith("Write 5 ") and calls[1][0].startswith("Write 2 ")
    for needle in ("cat", "elephant, value, sun", "dog, puppy"):
        assert needle in first_prompt
    assert calls[0][1] != calls[1][1]  # each round samples from its own seed
    assert calls[0][2] > calls[1][2]  # and gets room for the lines it asks for


def test_hf_writer_gives_up_after_its_rounds(tiny_lm, monkeypatch):
    writer = HFWriter(str(tiny_lm), max_rounds=3)
    calls = []

    def fake_generate(prompt: str, seed: int, max_new_tokens: int = 512) -> str:
        calls.append(seed)
        return "a dog on the beach\na cat with a dog\nan elephant in the snow\n"

    monkeypatch.setattr(writer, "generate", fake_generate)
    with pytest.raises(NeuronAttackError, match=r"only 0 of 2 .* in 3 rounds"):
        writer.write("cat", ["elephant"], 2, seed=0, forbidden={"dog"})
    assert len(calls) == 3


def test_hf_writer_fails_fast_on_a_missing_repo_offline(offline_hub):
    start = time.perf_counter()
    with pytest.raises(NeuronAttackError, match="HF_HUB_OFFLINE=1") as raised:
        load_writer("hf:neuronattack-test/no-such-llm")
    assert time.perf_counter() - start < 5
    assert "hf:/path/to/model" in str(raised.value)


def test_hf_writer_loads_a_repo_from_the_hub_cache_offline(tiny_lm, offline_hub):
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = offline_hub / "models--neuronattack-test--tiny-lm"
    shutil.copytree(tiny_lm, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    writer = load_writer("hf:neuronattack-test/tiny-lm")
    assert writer.name == "hf:neuronattack-test/tiny-lm"


def test_hf_writer_refuses_a_folder_without_a_model(tmp_path):
    pytest.importorskip("transformers")
    with pytest.raises(NeuronAttackError, match="could not load a text-generation model"):
        load_writer(f"hf:{tmp_path}")
