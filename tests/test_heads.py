"""The heads tools' arithmetic on random models and planted data: ablations against the lens's
``mean_ablate`` on full pieces, TextSpan on a planted low-rank head, group accuracies, retrieval."""

from __future__ import annotations

import csv

import open_clip
import pytest
import torch
from conftest import in_float64, random_images, write_class_folders

from neuronattack.errors import NeuronAttackError
from neuronattack.heads.ablation import ablated_embeddings, ablation_curve, write_ablation
from neuronattack.heads.contributions import Contributions, concatenate, contributions, parse_head
from neuronattack.heads.debias import GroupAccuracy, debias, read_grouped_csv
from neuronattack.heads.retrieve import group_vectors, nearest, precision_at_k
from neuronattack.heads.text_pool import load_text_pool, parse_pool, toy_pool
from neuronattack.heads.textspan import (
    HeadRoles,
    build_head_roles,
    check_model,
    heads_mean_ablated,
    replaced_by_texts,
    text_span,
)
from neuronattack.heads.zeroshot import accuracy, predict
from neuronattack.lens import decompose, mean_ablate, mean_pieces
from neuronattack.models.clip import LoadedClip
from neuronattack.toy.vocabulary import drawable_words


def unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True)


@pytest.fixture(scope="module")
def traced(tiny_clip):
    """Contributions (float64) of 12 random images with every layer's heads kept, and the full
    lens pieces they come from."""
    images = random_images(12, seed=3, dtype=torch.float64)
    with in_float64(tiny_clip) as model, torch.no_grad():
        contrib = contributions(model.visual, images, head_layers=(0, 1, 2, 3))
        pieces = decompose(model.visual, images)
        embedding = model.encode_image(images)
    return contrib, pieces, embedding


def test_contributions_sum_to_the_embedding_and_heads_to_their_layer(traced):
    contrib, _, embedding = traced
    assert torch.allclose(contrib.total(), embedding, atol=1e-10)
    assert torch.allclose(contrib.heads.sum(2), contrib.attn, atol=1e-12)
    assert torch.allclose(contrib.group([(1, 0), (1, 1), (1, 2), (1, 3)]), contrib.attn[:, 1],
                          atol=1e-12)


def test_ablation_curve_points_equal_the_lens_mean_ablation(traced):
    contrib, pieces, _ = traced
    means = mean_pieces(pieces)
    layers = contrib.attn.shape[1]
    for k in range(layers + 1):
        for mlps in (False, True):
            reference = mean_ablate(pieces, means, mlp_layers=tuple(range(layers)) if mlps else (),
                                    attn_layers=tuple(range(k))).total()
            assert torch.allclose(ablated_embeddings(contrib, k, mlps), reference, atol=1e-10)
    classes = unit(torch.randn(5, contrib.embed.shape[1], dtype=torch.float64,
                               generator=torch.Generator().manual_seed(0)))
    labels = predict(contrib.total(), classes)  # every image "correct" before any ablation
    curve = ablation_curve(contrib, classes, labels)
    assert curve.attention[0] == curve.baseline == 1.0
    assert len(curve.attention) == len(curve.attention_and_mlps) == layers + 1
    for k in range(layers + 1):
        assert curve.attention[k] == accuracy(ablated_embeddings(contrib, k, False), classes,
                                              labels)
        assert curve.attention_and_mlps[k] == accuracy(ablated_embeddings(contrib, k, True),
                                                       classes, labels)


def test_ablating_nothing_changes_nothing(traced):
    contrib, _, embedding = traced
    assert torch.equal(ablated_embeddings(contrib, 0, False), contrib.total())
    assert torch.equal(heads_mean_ablated(contrib, []), contrib.total())
    assert torch.equal(replaced_by_texts(contrib, {}), contrib.total())


def test_head_mean_ablation_replaces_exactly_that_head(traced):
    contrib, pieces, _ = traced
    heads = [(2, 1), (3, 0)]
    expected = contrib.total().clone()
    for layer, head in heads:
        full = pieces.attn[:, layer, :, head].sum(1)  # [N, out_dim] from the lens's pieces
        expected += full.mean(0) - full
    assert torch.allclose(heads_mean_ablated(contrib, heads), expected, atol=1e-10)


def test_the_ablation_curve_first_point_is_the_plain_accuracy_of_the_model(tiny_clip, tmp_path):
    images = random_images(16, seed=8)
    with torch.no_grad():
        contrib = concatenate([contributions(tiny_clip.visual, images[:7]),
                               contributions(tiny_clip.visual, images[7:])])
        plain = tiny_clip.encode_image(images)
    classes = unit(torch.randn(4, 32, generator=torch.Generator().manual_seed(1)))
    labels = torch.arange(16) % 4
    curve = ablation_curve(contrib, classes, labels)
    assert curve.attention[0] == accuracy(plain, classes, labels)
    json_path, png_path = write_ablation(curve, tmp_path / "curve")
    assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json_path.exists()


def planted_head(texts: torch.Tensor, chosen: list[int], scales: list[float], images: int = 400,
                 noise: float = 1e-4, seed: int = 0) -> torch.Tensor:
    """Contributions ``[images, out_dim]``: a mean plus independent coefficients times the
    ``chosen`` texts (standard deviations ``scales``) plus a little isotropic noise."""
    generator = torch.Generator().manual_seed(seed)
    coefficients = torch.randn(images, len(chosen), generator=generator, dtype=torch.float64)
    coefficients = (coefficients - coefficients.mean(0)) * torch.tensor(scales,
                                                                        dtype=torch.float64)
    mean = torch.randn(texts.shape[1], generator=generator, dtype=torch.float64)
    return mean + coefficients @ texts[chosen] + noise * torch.randn(
        images, texts.shape[1], generator=generator, dtype=torch.float64)


def test_text_span_recovers_the_texts_of_a_planted_low_rank_head():
    texts = unit(torch.randn(60, 48, generator=torch.Generator().manual_seed(4),
                             dtype=torch.float64))
    chosen = [41, 7, 23]
    head = planted_head(texts, chosen, [3.0, 2.0, 1.0])
    basis = text_span(head, texts, n_texts=5, rank=10)
    assert basis.text_indices[:3].tolist() == chosen
    assert float(basis.variance_explained[:3].sum()) > 0.999
    assert float(basis.variance_explained[3:].sum()) < 1e-6
    # The chosen directions are orthonormal and reconstruct the head.
    gram = basis.directions.double() @ basis.directions.double().T
    assert torch.allclose(gram, torch.eye(len(gram), dtype=torch.float64), atol=1e-5)
    assert torch.allclose(basis.reconstruct(head.float()).double(), head, atol=1e-3)
    assert torch.allclose(basis.mean.double(), head.mean(0), atol=1e-5)


def test_text_span_stops_when_no_variance_is_left():
    texts = unit(torch.randn(20, 16, generator=torch.Generator().manual_seed(5)))
    head = planted_head(texts.double(), [3], [1.0], noise=0.0).float()
    basis = text_span(head, texts, n_texts=8)
    assert basis.text_indices.tolist() == [3]
    assert float(basis.variance_explained[0]) == pytest.approx(1.0, abs=1e-6)
    constant = text_span(torch.ones(10, 16), texts, n_texts=3)
    assert len(constant.text_indices) == 0 and constant.variance == 0.0


def test_text_span_picks_the_text_of_largest_spread_first():
    """Against the obvious reference: project every text, take the largest std; twice."""
    generator = torch.Generator().manual_seed(6)
    texts = unit(torch.randn(30, 12, generator=generator, dtype=torch.float64))
    scales = torch.linspace(3, 0.1, 12, dtype=torch.float64)
    data = torch.randn(50, 12, generator=generator, dtype=torch.float64) * scales
    basis = text_span(data, texts, n_texts=2, rank=12)
    centred = data - data.mean(0)
    first = int((centred @ texts.T).std(0).argmax())
    t = texts[first]
    deflated = centred - (centred @ t)[:, None] * t
    others = texts - (texts @ t)[:, None] * t
    spread = (deflated @ others.T).std(0)
    assert basis.text_indices.tolist() == [first, int(spread.argmax())]


def test_text_replacement_with_a_full_basis_is_the_identity(traced):
    contrib, _, _ = traced
    out_dim = contrib.embed.shape[1]
    texts = unit(torch.randn(3 * out_dim, out_dim, generator=torch.Generator().manual_seed(2),
                             dtype=torch.float64))
    bases = {head: text_span(contrib.head(*head), texts, n_texts=out_dim, rank=out_dim)
             for head in [(3, 0), (3, 2)]}
    replaced = replaced_by_texts(contrib, bases)
    assert torch.allclose(replaced, contrib.total(), atol=1e-4)
    bases_one = {head: text_span(contrib.head(*head), texts, n_texts=1) for head in bases}
    assert not torch.allclose(replaced_by_texts(contrib, bases_one), contrib.total(), atol=1e-4)


def test_group_accuracy_arithmetic():
    correct = torch.tensor([True, True, False, True, False, False])
    groups = ("a", "a", "a", "b", "b", "c")
    result = GroupAccuracy.of(correct, groups)
    assert result.groups == {"a": pytest.approx(2 / 3), "b": 0.5, "c": 0.0}
    assert (result.worst_group, result.worst) == ("c", 0.0)
    assert result.average == 0.5
    assert result.group_mean == pytest.approx((2 / 3 + 0.5) / 3)


def synthetic_shortcut(seed: int = 0) -> tuple[Contributions, torch.Tensor, torch.Tensor, tuple]:
    """Two classes along e0/e1; head 1.2 writes a 'background' towards class 1 whenever the
    background is water, whatever the class: class-0 images on water are misread."""
    generator = torch.Generator().manual_seed(seed)
    n, dim, heads = 80, 8, 4
    labels = torch.arange(n) % 2
    water = (torch.arange(n) // 2) % 2 == 1
    contrib_heads = 0.05 * torch.randn(n, 2, heads, dim, generator=generator)
    contrib_heads[:, 1, 2, 1] += 2.0 * water.float()
    embed = torch.zeros(n, dim)
    embed[torch.arange(n), labels] = 1.5
    zeros = torch.zeros(n, 2, dim)
    contrib = Contributions(embed=embed, mlps=zeros, attn=contrib_heads.sum(2),
                            heads=contrib_heads, bias=torch.zeros(n, dim), head_layers=(0, 1),
                            indices=torch.arange(n))
    classes = torch.eye(dim)[:2]
    groups = tuple(f"class {int(c)} {'on water' if w else 'on land'}"
                   for c, w in zip(labels, water, strict=True))
    return contrib, classes, labels, groups


def test_debias_removes_a_planted_shortcut_and_beats_random_heads():
    contrib, classes, labels, groups = synthetic_shortcut()
    report = debias(contrib, classes, labels, groups, [(1, 2)], draws=30, seed=1)
    assert report.before.worst_group == "class 0 on water" and report.before.worst == 0.0
    assert report.after.worst == 1.0
    # Random draws that miss head 1.2 leave the worst group near 0; those that hit it fix it.
    draws = list(zip(report.random_heads, report.random_worst, strict=True))
    assert {w for heads, w in draws if "1.2" in heads} == {1.0}
    assert max(w for heads, w in draws if "1.2" not in heads) <= 0.1
    data = report.as_dict()
    assert data["worst_group_change"] == 1.0 and data["random"]["draws"] == 30
    again = debias(contrib, classes, labels, groups, [(1, 2)], draws=30, seed=1)
    assert again.random_heads == report.random_heads
    with pytest.raises(NeuronAttackError):
        debias(contrib, classes, labels, groups, [], draws=3)
    with pytest.raises(NeuronAttackError):
        debias(contrib, classes, labels, groups, [(1, 9)], draws=3)


def test_retrieval_by_the_planted_head_finds_its_property():
    contrib, _, labels, groups = synthetic_shortcut()
    water = [group.endswith("water") for group in groups]
    by_head = precision_at_k(group_vectors(contrib, [(1, 2)]), water, k=10)
    by_class = precision_at_k(group_vectors(contrib, None), [str(int(c)) for c in labels], k=10)
    assert by_head == 1.0 and by_class == 1.0
    assert precision_at_k(group_vectors(contrib, [(0, 0)]), water, k=10) < 0.8
    indices, scores = nearest(torch.tensor([1.0, 0.0]), torch.tensor(
        [[1.0, 0.1], [0.0, 1.0], [2.0, 0.0], [-1.0, 0.0]]), 2, exclude=2)
    assert indices.tolist() == [0, 1] and scores[0] > scores[1]


def test_text_pools_parse_roles_and_the_toy_pool_is_the_toy_vocabulary():
    pool = parse_pool("# comment\n[colour]\na red car\nred   car # trailing\na red car\n"
                      "[place]\nParis\n", "test")
    assert pool.texts == ("a red car", "red car", "Paris")
    assert pool.roles == ("colour", "colour", "place")
    toy = toy_pool()
    assert toy.texts == tuple(drawable_words()) and all(toy.roles)
    assert toy.roles[toy.texts.index("water")] == "background"
    assert toy.roles[toy.texts.index("letter k")] == "sign"
    shipped = load_text_pool("default")
    assert len(shipped.texts) >= 300 and all(shipped.roles)
    with pytest.raises(NeuronAttackError):
        parse_pool("only one", "x")
    with pytest.raises(NeuronAttackError):
        load_text_pool("no-such-pool-file.txt")


def test_parse_head_names():
    assert parse_head(" 10.3") == (10, 3)
    with pytest.raises(NeuronAttackError):
        parse_head("10")


@pytest.fixture(scope="module")
def tiny_loaded(tiny_clip) -> LoadedClip:
    return LoadedClip(tiny_clip, open_clip.image_transform(32, is_train=False),
                      open_clip.get_tokenizer("ViT-B-32"), spec="tiny-test", arch="ViT-B-32")


def test_head_roles_artifact_round_trip(tiny_loaded, tmp_path, monkeypatch):
    monkeypatch.setenv("NEURONATTACK_CACHE", str(tmp_path / "cache"))
    from neuronattack.imagesets import scan_images

    folder = write_class_folders(tmp_path / "images", ("cat", "dog"), per_class=6)
    pool = parse_pool("[colour]\nred\ngreen\nblue\n[place]\nwater\ngrass\nsky\nroad\n", "test")
    roles = build_head_roles(tiny_loaded, scan_images(folder), tmp_path / "heads", (2, 3), pool,
                             n_texts=3, rank=8, show_progress=False)
    again = HeadRoles.load(tmp_path / "heads")
    assert again.heads == roles.heads == [(layer, head) for layer in (2, 3) for head in range(4)]
    card = again.card((3, 1))
    assert len(card.texts) == 3 and card.variance > 0
    assert 0 < card.variance_explained <= 1 + 1e-6
    assert {text for text, _, _ in card.texts} <= set(pool.texts)
    accuracy_ = again.accuracy
    assert set(accuracy_) == {"baseline", "text_replaced", "mean_ablated", "classes"}
    shares = again.role_shares("colour")
    assert all(0 <= share <= 1 for share in shares.values())
    place = again.role_shares("place")
    for head in again.heads:
        assert shares[head] + place[head] == pytest.approx(1.0)
    assert again.role_heads("colour", min_share=0.0) == sorted(
        again.heads, key=lambda h: (-shares[h], h))
    hits = again.search("red")
    assert all(text == "red" for _, text, _, _ in hits)
    check_model(again, tiny_loaded)
    with pytest.raises(NeuronAttackError):
        again.role_shares("elephant")
    with pytest.raises(NeuronAttackError):
        again.card((0, 0))
    other = LoadedClip(open_clip.CLIP(**{"embed_dim": 32, "vision_cfg": {
        "image_size": 32, "layers": 4, "width": 64, "head_width": 16, "patch_size": 8},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2,
                     "layers": 1}}), tiny_loaded.preprocess, tiny_loaded.tokenizer, "tiny-test",
        "ViT-B-32")
    with pytest.raises(NeuronAttackError, match="other weights"):
        check_model(again, other)


def test_grouped_csv_reading(tmp_path):
    write_class_folders(tmp_path, ("imgs",), per_class=3)
    path = tmp_path / "groups.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerows([("image", "label", "group"), ("imgs/0.png", "dog", "dog on water"),
                          ("imgs/1.png", "cat", "cat on land"),
                          ("imgs/2.png", "cat", "cat on water")])
    grouped = read_grouped_csv(path)
    assert grouped.class_names == ("cat", "dog")
    assert grouped.labels().tolist() == [1, 0, 0]
    assert grouped.groups == ("dog on water", "cat on land", "cat on water")
    path.write_text("image,label\nimgs/0.png,dog\n")
    with pytest.raises(NeuronAttackError, match="group"):
        read_grouped_csv(path)
    path.write_text("image,label,group\nimgs/missing.png,dog,x\n")
    with pytest.raises(NeuronAttackError, match="does not exist"):
        read_grouped_csv(path)
