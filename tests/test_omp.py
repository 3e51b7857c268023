"""Batched OMP against scikit-learn's orthogonal_mp, and the non-negative Lasso wrapper.

Tolerances (float64): supports must be identical (as sets and in selection order) and
coefficients ``allclose(rtol=1e-9, atol=1e-9)``; the largest difference observed here is 1.1e-13
(coefficients up to 16, anisotropic dictionary), and the margin leaves room for scikit-learn's
own Cholesky error, which grows with the square of the support's condition number. float32 runs
are compared with float64 at ``rtol=1e-4, atol=1e-5``. Data are continuous random draws, so exact
ties between correlations (the one place the two could legitimately differ) do not occur.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from sklearn.linear_model import Lasso, orthogonal_mp

from neuronattack.neurons import omp as omp_module
from neuronattack.neurons.omp import (
    _BF16_UNIT_ROUNDOFF,
    SparseCodes,
    _build_screen,
    _screen_available,
    _screen_slack,
    nonnegative_lasso,
    omp,
    reconstruct,
)

RTOL = ATOL = 1e-9
SCREENS = [
    False,
    pytest.param(
        True,
        marks=pytest.mark.skipif(
            not _screen_available(torch.device("cpu")), reason="no native bf16 on this CPU"
        ),
    ),
]


def make_dictionary(
    atoms: int, dim: int, seed: int, centred: bool = True, decay: float = 0.0
) -> np.ndarray:
    """Unit rows, optionally centred (then no longer unit), like word embeddings: ``[atoms, dim]``.

    ``decay`` > 0 gives the rows a power-law spectrum, so atoms are correlated as real ones are.
    """
    rng = np.random.default_rng(seed)
    rows = rng.standard_normal((atoms, dim)) * np.arange(1, dim + 1) ** -decay
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    return rows - rows.mean(axis=0) if centred else rows


def sklearn_codes(dictionary: np.ndarray, targets: np.ndarray, m: int):
    """scikit-learn's supports in selection order and final coefficients, ``[targets, m]`` each.

    The order comes from the coefficient path: step ``s`` adds exactly one non-zero.
    """
    atoms, count = dictionary.shape[0], targets.shape[0]
    path = orthogonal_mp(dictionary.T, targets.T, n_nonzero_coefs=m, return_path=True)
    path = np.asarray(path).reshape(atoms, count, -1)  # undo scikit-learn's squeeze
    orders = []
    for target in range(count):
        order: list[int] = []
        for step in range(path.shape[2]):
            (new,) = set(np.flatnonzero(path[:, target, step])) - set(order)
            order.append(new)
        orders.append(order)
    indices = np.array(orders)
    return indices, np.take_along_axis(path[:, :, -1].T, indices, axis=1)


CASES = [
    # atoms, dim, m, targets, centred, decay
    (50, 16, 5, 1, True, 0.0),
    (500, 64, 40, 7, True, 0.0),
    (500, 64, 64, 3, True, 0.0),
    (3000, 128, 40, 5, False, 0.0),
    (3000, 128, 1, 3, True, 0.0),
    (2000, 96, 30, 6, True, 1.0),
]


@pytest.mark.parametrize("screen", SCREENS)
@pytest.mark.parametrize(("atoms", "dim", "m", "count", "centred", "decay"), CASES)
def test_matches_sklearn(atoms, dim, m, count, centred, decay, screen):
    dictionary = make_dictionary(atoms, dim, seed=atoms + dim, centred=centred, decay=decay)
    targets = np.random.default_rng(m).standard_normal((count, dim))
    expected_indices, expected_coefficients = sklearn_codes(dictionary, targets, m)

    codes = omp(torch.from_numpy(dictionary), torch.from_numpy(targets), m, screen=screen)

    assert codes.indices.shape == codes.coefficients.shape == (count, m)
    np.testing.assert_array_equal(codes.indices.numpy(), expected_indices)
    np.testing.assert_allclose(
        codes.coefficients.numpy(), expected_coefficients, rtol=RTOL, atol=ATOL
    )


def test_chunking_is_invisible():
    dictionary = torch.from_numpy(make_dictionary(800, 48, seed=3, decay=0.5))
    targets = torch.randn(9, 48, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    whole = omp(dictionary, targets, 20, chunk_size=64)
    pieces = omp(dictionary, targets, 20, chunk_size=2)
    assert torch.equal(whole.indices, pieces.indices)
    torch.testing.assert_close(whole.coefficients, pieces.coefficients, rtol=0, atol=1e-13)


@pytest.mark.parametrize("screen", SCREENS)
def test_float32_close_to_float64(screen):
    # screen=False is also the path CUDA takes.
    dictionary = torch.from_numpy(make_dictionary(1000, 64, seed=4))
    targets = torch.randn(6, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    exact = omp(dictionary, targets, 12)
    single = omp(dictionary, targets, 12, dtype=torch.float32, screen=screen)
    assert single.coefficients.dtype == torch.float32
    assert torch.equal(exact.indices, single.indices)
    torch.testing.assert_close(
        single.coefficients.double(), exact.coefficients, rtol=1e-4, atol=1e-5
    )


def test_reconstruction_cosine_is_direct():
    dictionary = make_dictionary(400, 32, seed=5)
    targets = np.random.default_rng(2).standard_normal((4, 32))
    codes = omp(torch.from_numpy(dictionary), torch.from_numpy(targets), 7)
    rebuilt = np.einsum("tm,tmd->td", codes.coefficients.numpy(), dictionary[codes.indices])
    cosine = (rebuilt * targets).sum(1) / np.linalg.norm(rebuilt, axis=1)
    cosine /= np.linalg.norm(targets, axis=1)
    np.testing.assert_allclose(codes.reconstruction_cosine.numpy(), cosine, rtol=1e-12)
    np.testing.assert_allclose(reconstruct(torch.from_numpy(dictionary), codes), rebuilt)


@pytest.mark.parametrize(("atoms", "dim", "m"), [(100, 16, 17), (10, 16, 11), (10, 16, 0)])
def test_impossible_sizes_raise(atoms, dim, m):
    dictionary = torch.from_numpy(make_dictionary(atoms, dim, seed=6))
    with pytest.raises(ValueError, match="n_nonzero"):
        omp(dictionary, torch.ones(2, dim, dtype=torch.float64), m)


def test_sklearn_also_rejects_more_atoms_than_exist():
    dictionary = make_dictionary(10, 16, seed=6)
    with pytest.raises(ValueError):
        orthogonal_mp(dictionary.T, np.ones(16), n_nonzero_coefs=11)


def test_exact_combinations_recover_their_support():
    dictionary = make_dictionary(1000, 128, seed=7)
    rng = np.random.default_rng(3)
    supports = [rng.choice(1000, size=5, replace=False) for _ in range(4)]
    weights = rng.uniform(1, 2, size=(4, 5)) * rng.choice([-1, 1], size=(4, 5))
    targets = np.stack([w @ dictionary[s] for s, w in zip(supports, weights, strict=True)])

    codes = omp(torch.from_numpy(dictionary), torch.from_numpy(targets), 5)

    for row, (support, weight) in enumerate(zip(supports, weights, strict=True)):
        pairs = zip(codes.indices[row].tolist(), codes.coefficients[row].tolist(), strict=True)
        found = dict(pairs)
        assert set(found) == set(support.tolist())
        np.testing.assert_allclose([found[i] for i in support], weight, atol=1e-10)
    np.testing.assert_allclose(codes.reconstruction_cosine.numpy(), 1.0, atol=1e-12)


def test_zero_target_stops_at_once_like_sklearn():
    dictionary = make_dictionary(300, 24, seed=8)
    targets = np.random.default_rng(4).standard_normal((3, 24))
    targets[1] = 0.0
    with pytest.warns(RuntimeWarning):
        expected = orthogonal_mp(dictionary.T, targets.T, n_nonzero_coefs=6).T  # [targets, atoms]
    with pytest.warns(RuntimeWarning, match="1 of 3 targets"):
        codes = omp(torch.from_numpy(dictionary), torch.from_numpy(targets), 6)
    assert codes.n_active.tolist() == [6, 0, 6]
    assert (codes.indices[1] == -1).all() and (codes.coefficients[1] == 0).all()
    assert codes.reconstruction_cosine[1] == 0
    dense = np.zeros_like(expected)
    for row in (0, 2):
        dense[row, codes.indices[row]] = codes.coefficients[row]
    np.testing.assert_allclose(dense, expected, rtol=RTOL, atol=ATOL)


def test_dependent_support_stops_after_the_rank():
    """40 atoms spanning 3 of 8 dimensions: a 4th atom adds nothing, so OMP must stop at 3.

    scikit-learn tests the same condition but takes the squared distance as ``||x||² - ||w||²``,
    whose cancellation can leave ~1e-15 > eps and admit a round-off atom; we measure the
    orthogonal remainder directly, so only the three real steps are compared with it.
    """
    rng = np.random.default_rng(5)
    dictionary = rng.standard_normal((40, 3)) @ rng.standard_normal((3, 8))
    targets = rng.standard_normal((2, 8))
    with pytest.warns(RuntimeWarning, match="2 of 2 targets"):
        codes = omp(torch.from_numpy(dictionary), torch.from_numpy(targets), 5)
    assert codes.n_active.tolist() == [3, 3]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        expected_indices, expected_coefficients = sklearn_codes(dictionary, targets, 3)
    np.testing.assert_array_equal(codes.indices[:, :3].numpy(), expected_indices)
    np.testing.assert_allclose(
        codes.coefficients[:, :3].numpy(), expected_coefficients, rtol=RTOL, atol=ATOL
    )


@pytest.mark.skipif(not _screen_available(torch.device("cpu")), reason="no native bf16")
@pytest.mark.parametrize(("candidates", "wide"), [(1, 256), (1, 2)])
def test_screen_fallbacks_stay_exact(monkeypatch, candidates, wide):
    """Starve the candidate lists so rows go to the wide retry, and then to the full rescoring."""
    monkeypatch.setattr(omp_module, "_CANDIDATES", candidates)
    monkeypatch.setattr(omp_module, "_WIDE_CANDIDATES", wide)
    retries = []
    exact_best = omp_module._exact_best
    monkeypatch.setattr(
        omp_module, "_exact_best", lambda *args: retries.append(1) or exact_best(*args)
    )
    dictionary = make_dictionary(2000, 96, seed=11, decay=1.0)
    targets = np.random.default_rng(7).standard_normal((5, 96))
    expected_indices, expected_coefficients = sklearn_codes(dictionary, targets, 25)
    codes = omp(torch.from_numpy(dictionary), torch.from_numpy(targets), 25, screen=True)
    np.testing.assert_array_equal(codes.indices.numpy(), expected_indices)
    np.testing.assert_allclose(
        codes.coefficients.numpy(), expected_coefficients, rtol=RTOL, atol=ATOL
    )
    assert bool(retries) == (wide == 2)


@pytest.mark.skipif(not _screen_available(torch.device("cpu")), reason="no native bf16")
def test_screen_error_bound_holds():
    # Guards the certification against a backend that accumulates bf16 products below f32.
    atoms = torch.from_numpy(make_dictionary(4000, 512, seed=9, decay=0.5))
    generator = torch.Generator().manual_seed(2)
    residuals = torch.randn(32, 512, dtype=torch.float64, generator=generator)
    screen = _build_screen(atoms)
    screened = residuals.to(torch.bfloat16)
    approx = (screened @ screen.atoms[: len(atoms)].T).abs().double()  # [32, atoms]
    exact = (residuals @ atoms.T).abs()  # [32, atoms]
    slack = _screen_slack(residuals, screened, screen)[:, None]  # [32, 1]
    assert (exact <= approx / (1 - _BF16_UNIT_ROUNDOFF) + slack).all()
    assert (slack < 0.05 * exact.amax(dim=1, keepdim=True)).all()  # tight enough to prune


def test_nonnegative_lasso_matches_sklearn():
    dictionary = make_dictionary(200, 32, seed=10)
    targets = np.random.default_rng(6).standard_normal((3, 32))
    codes = nonnegative_lasso(torch.from_numpy(dictionary), torch.from_numpy(targets), 0.01)
    for row, target in enumerate(targets):
        model = Lasso(alpha=0.01, positive=True, fit_intercept=False).fit(dictionary.T, target)
        support = np.flatnonzero(model.coef_)
        kept = codes.indices[row][codes.indices[row] >= 0].numpy()
        assert set(kept) == set(support)
        np.testing.assert_allclose(codes.coefficients[row, : len(kept)], model.coef_[kept])
    valid = codes.indices >= 0
    assert (codes.coefficients[valid] > 0).all() and (codes.coefficients[~valid] == 0).all()
    assert (codes.coefficients[:, :-1] >= codes.coefficients[:, 1:]).all()


def test_nonnegative_lasso_keeps_the_largest():
    dictionary = torch.from_numpy(make_dictionary(200, 32, seed=10))
    targets = torch.from_numpy(np.random.default_rng(6).standard_normal((3, 32)))
    everything = nonnegative_lasso(dictionary, targets, 0.01)
    top = nonnegative_lasso(dictionary, targets, 0.01, n_nonzero=3)
    assert isinstance(top, SparseCodes) and top.indices.shape == (3, 3)
    assert torch.equal(top.indices, everything.indices[:, :3])
