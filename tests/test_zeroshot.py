"""Zero-shot heads: ImageNet tables, template averaging, class-name resolution, logits.

Expected ImageNet data is read from timm and open_clip themselves, not copied in, so these tests
pin how we join and use the two lists rather than one release of either.
"""

from __future__ import annotations

import open_clip
import pytest
import torch
from conftest import PARITY_DIR
from timm.data import ImageNetInfo

from neuronattack.errors import NeuronAttackError
from neuronattack.models.clip import LoadedClip, load_clip
from neuronattack.models.zeroshot import (
    IMAGENET_NAMES,
    OPENAI_TEMPLATES,
    ImageNetClass,
    accuracy,
    class_embeddings,
    find_class,
    imagenet_classes,
    resolve_class_names,
    text_embedding,
    zero_shot_logits,
)

THREE_TEMPLATES = ("a photo of a {}.", lambda name: f"a drawing of a {name}.", "{}")


@pytest.fixture(scope="module")
def clip() -> LoadedClip:
    return load_clip(f"local-dir:{PARITY_DIR}")


def encode(clip: LoadedClip, texts: list[str]) -> torch.Tensor:
    with torch.no_grad():
        return clip.model.encode_text(clip.tokenizer(texts))


def test_openai_templates_and_imagenet_names_are_complete():
    assert len(OPENAI_TEMPLATES) == 80
    assert OPENAI_TEMPLATES[0]("dog") == "a bad photo of a dog."
    assert len(IMAGENET_NAMES) == 1000
    assert tuple(open_clip.IMAGENET_CLASSNAMES) == IMAGENET_NAMES


def test_imagenet_classes_join_timm_wnids_to_openai_names_in_index_order():
    classes = imagenet_classes()
    assert len(classes) == 1000
    assert classes[0] == ImageNetClass(0, "n01440764", "tench")
    assert classes[1] == ImageNetClass(1, "n01443537", "goldfish")
    assert [entry.index for entry in classes] == list(range(1000))
    info = ImageNetInfo("imagenet-1k")
    assert [entry.wnid for entry in classes] == info.label_names()
    assert [entry.name for entry in classes] == list(IMAGENET_NAMES)
    # OpenAI reworded some names, but most are one of WordNet's lemmas for the same synset; a
    # shift of even one position between the lists would make almost none agree.
    agreeing = sum(
        entry.name.lower() in {lemma.strip().lower() for lemma in
                               info.label_name_to_description(entry.wnid).split(",")}
        for entry in classes
    )
    assert agreeing > 700


def test_class_embeddings_average_unit_prompt_embeddings(clip):
    names = ["dog", "great white shark"]
    embeddings = class_embeddings(clip, names, THREE_TEMPLATES, batch_size=4)
    assert embeddings.shape == (2, 32) and embeddings.dtype == torch.float32
    for row, name in zip(embeddings, names, strict=True):
        prompts = [f"a photo of a {name}.", f"a drawing of a {name}.", name]
        unit = torch.nn.functional.normalize(encode(clip, prompts), dim=-1)  # [3, out_dim]
        mean = unit.mean(dim=0)
        torch.testing.assert_close(row, mean / mean.norm())


def test_class_embeddings_match_open_clips_zero_shot_classifier(clip):
    names = ["tench", "goldfish", "toilet paper"]
    templates = OPENAI_TEMPLATES[:5]
    ours = class_embeddings(clip, names, templates)
    theirs = open_clip.build_zero_shot_classifier(clip.model, clip.tokenizer, names, templates)
    torch.testing.assert_close(ours, theirs.T, atol=1e-6, rtol=1e-5)


def test_class_embeddings_need_classes_and_templates(clip):
    with pytest.raises(NeuronAttackError, match="no class names"):
        class_embeddings(clip, [], THREE_TEMPLATES)
    with pytest.raises(NeuronAttackError, match="no prompt templates"):
        class_embeddings(clip, ["dog"], [])


def test_text_embedding_is_the_normalised_bare_prompt(clip):
    embedding = text_embedding(clip, "a dog on a skateboard")
    raw = encode(clip, ["a dog on a skateboard"])[0]
    assert embedding.shape == (32,)
    torch.testing.assert_close(embedding, raw / raw.norm())


def test_resolve_wnid_folders_to_imagenet_names():
    by_index = imagenet_classes()
    labels = [by_index[0].wnid, by_index[207].wnid, by_index[999].wnid]
    assert resolve_class_names(labels) == [by_index[0].name, by_index[207].name,
                                           by_index[999].name]
    assert resolve_class_names(["n01440764"]) == ["tench"]


def test_resolve_plain_folders_reads_underscores_as_spaces():
    assert resolve_class_names(["cat", "great_white_shark", "Golden Retriever"]) == [
        "cat", "great white shark", "Golden Retriever"]


def test_unknown_wnid_is_an_error_unless_a_names_file_names_it(tmp_path):
    with pytest.raises(NeuronAttackError, match="n99999999.*not one of the 1000"):
        resolve_class_names(["n01440764", "n99999999"])
    names_file = tmp_path / "names.txt"
    names_file.write_text("n99999999\tmystery fish\n")
    assert resolve_class_names(["n01440764", "n99999999"], names_file) == [
        "tench", "mystery fish"]


def test_names_file_overrides_and_skips_comments(tmp_path):
    names_file = tmp_path / "names.txt"
    names_file.write_text(
        "# label<TAB>name\n"
        "\n"
        "n01440764\tdoctor fish\n"
        "car_1   red   sports car\n"
        "unused_label\tnever asked for\n"
    )
    labels = ["n01440764", "n01443537", "car_1", "boat_2"]
    assert resolve_class_names(labels, names_file) == [
        "doctor fish", "goldfish", "red sports car", "boat 2"]


def test_names_file_errors(tmp_path):
    no_name = tmp_path / "no-name.txt"
    no_name.write_text("cat\tkitty\ndog\n")
    with pytest.raises(NeuronAttackError, match="'dog'.*no name"):
        resolve_class_names(["cat"], no_name)
    twice = tmp_path / "twice.txt"
    twice.write_text("cat\tkitty\ncat\tmoggy\n")
    with pytest.raises(NeuronAttackError, match="'cat' twice"):
        resolve_class_names(["cat"], twice)
    with pytest.raises(NeuronAttackError, match="Cannot read"):
        resolve_class_names(["cat"], tmp_path / "missing.txt")


def test_find_class_matches_up_to_case_spacing_and_underscores():
    choices = ["dog", "dogsled", "great white shark", "Golden Retriever"]
    assert find_class("dog", choices) == "dog"
    assert find_class("DOG", choices) == "dog"
    assert find_class("golden retriever", choices) == "Golden Retriever"
    assert find_class("great_white  shark", choices) == "great white shark"


def test_find_class_suggests_close_names():
    with pytest.raises(NeuronAttackError, match=r"Unknown class 'doggo'; did you mean dog\b"):
        find_class("doggo", ["dog", "dogsled", "cat"])
    with pytest.raises(NeuronAttackError, match="did you mean tench"):
        find_class("tenchh", list(IMAGENET_NAMES))
    with pytest.raises(NeuronAttackError, match="Unknown class 'xyzzy'; choose one of the 3"):
        find_class("xyzzy", ["dog", "dogsled", "cat"])


def test_find_class_refuses_case_ambiguity():
    assert find_class("Crane", ["crane", "Crane"]) == "Crane"
    with pytest.raises(NeuronAttackError, match="differ only in case"):
        find_class("CRANE", ["crane", "Crane"])


def test_zero_shot_logits_normalise_images_only():
    images = torch.tensor([[3.0, 4.0], [0.0, -2.0]])  # norms 5 and 2
    classes = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    logits = zero_shot_logits(images, classes)
    expected = torch.tensor([[60.0, 80.0, 100.0], [0.0, -100.0, -80.0]])
    torch.testing.assert_close(logits, expected)
    torch.testing.assert_close(zero_shot_logits(images, 2 * classes, logit_scale=1.0),
                               expected / 50)


def test_accuracy_is_the_top1_fraction():
    logits = torch.tensor([[0.0, 1.0, 0.5], [2.0, 1.0, 0.0], [0.0, 0.0, 3.0], [1.0, 0.0, 0.0]])
    assert accuracy(logits, torch.tensor([1, 0, 2, 0])) == 1.0
    assert accuracy(logits, torch.tensor([1, 1, 2, 2])) == 0.5
    assert accuracy(logits, torch.tensor([0, 1, 0, 1])) == 0.0
    with pytest.raises(ValueError):
        accuracy(logits, torch.tensor([1, 0]))
