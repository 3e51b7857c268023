"""Streaming rank-one fits against a materialised brute force (the official code's recipe)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import in_float64, random_images

from neuronattack.lens.neuron_effects import effect_basis, effect_coords, second_order
from neuronattack.lens.traced_pass import trace
from neuronattack.neurons.directions import RankOneFitter


def brute_force_fit(phi: np.ndarray, top_k: int):
    """compute_pcas.py's recipe on a materialised ``[images, neurons, out_dim]`` array."""
    centred = phi - phi.mean(axis=0)
    directions, norms, images, explained = [], [], [], []
    for neuron in range(phi.shape[1]):
        rows = centred[:, neuron]
        row_norms = np.linalg.norm(rows, axis=-1)
        top = np.argsort(row_norms)[::-1][:top_k]
        _, singular, vh = np.linalg.svd(rows[top], full_matrices=False)
        projections = rows[top] @ vh[0]
        positive, negative = (projections > 0).sum(), (projections < 0).sum()
        keep = positive > negative or (positive == negative and projections.sum() >= 0)
        directions.append(vh[0] if keep else -vh[0])
        norms.append(row_norms[top])
        images.append(top)
        explained.append(singular[0] ** 2 / (singular**2).sum())
    return np.stack(directions), np.stack(norms), np.stack(images), np.array(explained)


def stream(model, images, layer, convention, top_k, batch=5, fitter=None):
    basis = effect_basis(model.visual, layer, convention=convention)
    fitter = fitter or RankOneFitter(basis, top_k)
    batches = list(torch.arange(len(images)).split(batch))
    with torch.no_grad():
        for index in batches:
            record = trace(model.visual, images[index], mlp_layers=(layer,))
            fitter.add_to_mean(*effect_coords(record, basis))
        for index in reversed(batches):  # order of the second pass must not matter
            record = trace(model.visual, images[index], mlp_layers=(layer,))
            fitter.add_to_top_k(*effect_coords(record, basis), index)
    return fitter.result()


@pytest.mark.parametrize("convention", ["centred", "reference"])
def test_streaming_fit_equals_materialised(tiny_clip, convention):
    images = random_images(23, seed=4, dtype=torch.float64)
    top_k = 6
    with in_float64(tiny_clip) as model:
        with torch.no_grad():
            phi = second_order(model, images, 1, convention=convention).numpy()
        directions, norms, top, explained = brute_force_fit(phi, top_k)
        fit = stream(model, images, 1, convention, top_k)
    assert np.allclose(fit.top_norms.numpy(), norms, rtol=1e-5)
    assert np.array_equal(fit.top_images.numpy(), top)
    assert np.allclose(fit.threshold.numpy(), norms[:, -1], rtol=1e-5)
    assert np.allclose(fit.direction.numpy(), directions, atol=1e-5)
    assert np.allclose(fit.variance_explained.numpy(), explained, atol=1e-6)
    assert np.allclose(fit.mean_effect.numpy(), phi.mean(0), atol=1e-6 * np.abs(phi).max())
    assert np.allclose(np.linalg.norm(fit.direction.numpy(), axis=1), 1, atol=1e-6)


def test_matches_official_rank_one_directions(parity):
    model, data = parity
    images = torch.from_numpy(data["images"])
    top_k = int(data["top_k"])
    for index, layer in enumerate(data["layers"]):
        fit = stream(model, images, int(layer), "reference", top_k, batch=16)
        expected_norms = data["pca_norms"][index][:, ::-1]  # theirs ascending
        assert np.allclose(fit.top_norms.numpy(), expected_norms, rtol=1e-5, atol=1e-7)
        expected = data["pca_r"][index]
        ours = fit.direction.numpy()
        # Their sign is LAPACK's on an exact tie (k/2 rows positive); elsewhere it must agree.
        phi = data["phi"][index]
        centred = phi - phi.mean(0)
        for neuron in range(expected.shape[0]):
            rows = centred[:, neuron]
            top = np.argsort(np.linalg.norm(rows, axis=-1))[-top_k:]
            tie = (rows[top] @ expected[neuron] > 0).sum() * 2 == top_k
            sign = np.sign(ours[neuron] @ expected[neuron]) if tie else 1.0
            assert np.abs(sign * ours[neuron] - expected[neuron]).max() <= 1e-4, neuron


def test_state_does_not_grow_with_images_and_resumes(tiny_clip):
    basis = effect_basis(tiny_clip.visual, 2)
    images = random_images(30, seed=9)

    def state_shapes(fitter):
        return {key: tuple(value.shape) for key, value in fitter.state_dict().items()}

    shapes = []
    for count in (12, 30):
        fitter = RankOneFitter(basis, top_k=4)
        with torch.no_grad():
            coords = effect_coords(trace(tiny_clip.visual, images[:count], mlp_layers=(2,)), basis)
        fitter.add_to_mean(*coords)
        fitter.add_to_top_k(*coords, torch.arange(count))
        shapes.append(state_shapes(fitter))
    assert shapes[0] == shapes[1]

    # Stop mid-way through the second pass, reload the state into a fresh fitter, finish.
    uninterrupted = stream(tiny_clip, images, 2, "centred", 4, batch=7)
    first = RankOneFitter(basis, 4)
    with torch.no_grad():
        coords = effect_coords(trace(tiny_clip.visual, images, mlp_layers=(2,)), basis)
    first.add_to_mean(*coords)
    first.add_to_top_k(coords[0][:10], coords[1][:10], torch.arange(10))
    resumed = RankOneFitter(basis, 4)
    resumed.load_state_dict({k: v.clone() for k, v in first.state_dict().items()})
    resumed.add_to_top_k(coords[0][10:], coords[1][10:], torch.arange(10, 30))
    result = resumed.result()
    assert torch.equal(result.top_images, uninterrupted.top_images)
    assert torch.allclose(result.direction, uninterrupted.direction, atol=1e-6)


def test_result_refuses_an_unfinished_pass(tiny_clip):
    fitter = RankOneFitter(effect_basis(tiny_clip.visual, 2), top_k=4)
    with pytest.raises(ValueError):
        fitter.result()
