"""Replacement embeddings of `verify` against explicitly materialised second-order effects."""

from __future__ import annotations

import torch
from conftest import in_float64, random_images

from neuronattack.lens import second_order, trace
from neuronattack.neurons.verify import correct_counts, replaced_embeddings, replacement


def unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True)


def test_replacements_equal_materialised_effects(tiny_clip):
    images = random_images(4, seed=2, dtype=torch.float64)
    generator = torch.Generator().manual_seed(0)
    neurons = torch.arange(256)
    mean = torch.randn(256, 32, generator=generator, dtype=torch.float64) * 1e-2
    rank_one = unit(torch.randn(256, 32, generator=generator, dtype=torch.float64))
    words = unit(torch.randn(256, 32, generator=generator, dtype=torch.float64))
    with in_float64(tiny_clip) as model, torch.no_grad():
        visual = model.visual
        phi = second_order(model, images, 2)  # [batch, neurons, out_dim]
        rep = model.encode_image(images)
        record = trace(visual, images, mlp_layers=(2,))
        result = replaced_embeddings(record, {2: replacement(visual, 2, neurons, mean, rank_one,
                                                             words)})
    ablated = rep - phi.sum(1) + mean.sum(0)
    assert torch.allclose(result[("mean-ablated", 2)], ablated, atol=1e-12)
    for mode, r in (("rank-one", rank_one), ("words", words)):
        along = ((phi - mean) * r).sum(-1, keepdim=True) * r
        assert torch.allclose(result[(mode, 2)], ablated + along.sum(1), atol=1e-12)
        assert torch.equal(result[(mode, "all")], result[(mode, 2)])
    assert torch.allclose(result[("baseline", 2)], rep, atol=1e-12)


def test_exact_rank_one_directions_leave_the_embedding_unchanged(tiny_clip):
    """Two images: φ_n − μ_n lies on one line for both when μ_n = φ_n(I_0)."""
    images = random_images(2, seed=5, dtype=torch.float64)
    with in_float64(tiny_clip) as model, torch.no_grad():
        phi = second_order(model, images, 1)
        record = trace(model.visual, images, mlp_layers=(1,))
        mean, direction = phi[0], unit(phi[1] - phi[0])
        result = replaced_embeddings(record, {1: replacement(
            model.visual, 1, torch.arange(256), mean, direction, direction)})
    assert torch.allclose(result[("rank-one", 1)], record.embedding, atol=1e-12)


def test_no_neurons_replaced_is_the_baseline_exactly(tiny_clip):
    images = random_images(6, seed=1)
    none = torch.zeros(0, dtype=torch.long)
    with torch.no_grad():
        record = trace(tiny_clip.visual, images, mlp_layers=(0, 1))
        empty = torch.zeros(0, 32)
        replacements = {layer: replacement(tiny_clip.visual, layer, none, empty, empty, empty)
                        for layer in (0, 1)}
        result = replaced_embeddings(record, replacements)
    classes = unit(torch.randn(5, 32, generator=torch.Generator().manual_seed(3)))
    labels = torch.tensor([0, 1, 2, 3, 4, 0])
    counts = correct_counts(result, classes, labels)
    baseline = counts[("baseline", "all")]
    assert all(value == baseline for value in counts.values())
    for key, value in result.items():
        assert torch.equal(value, record.embedding), key


def test_correct_counts_arithmetic():
    classes = torch.eye(3)
    embeddings = {("baseline", "all"): torch.tensor([[2.0, 0, 0], [0, 0, 5], [0, 1, 0.5]])}
    assert correct_counts(embeddings, classes, torch.tensor([0, 2, 2])) == {
        ("baseline", "all"): 2}
