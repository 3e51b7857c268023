"""Rank-one directions of second-order effects (method.md §4), streamed over an image set.

Per neuron: centre φ_n over all images, keep the top-k images by centred norm (the k-th norm is the
significance threshold), and take the first right singular vector of those rows, signed so that
most of them project positively. Two passes over the images: the first sums coordinates for the
mean, the second keeps each neuron's top-k. Everything is done in the K-dimensional coordinate
space of ``EffectBasis`` (norms through its Gram matrix), so memory is bounded by the per-neuron
top-k buffers and never grows with the number of images.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from neuronattack.lens.neuron_effects import EffectBasis

NEURON_CHUNK = 256  # neurons per batched SVD; bounds the [chunk, k, out_dim] rows in memory
# Where the rank-one fits run. Each neuron's QR and SVD is of a matrix of a few dozen columns, and
# cuSOLVER factors a batch of such matrices one at a time: on an H200 the fits of ViT-B-32's three
# blocks took 10 s on the GPU (benchmarks/rank_one_fit.py compares the two in one run).
FIT_DEVICE = torch.device("cpu")


@dataclass(frozen=True)
class RankOneDirections:
    """One block's fit; every tensor is indexed by position in ``neurons``."""

    layer: int
    neurons: Tensor  # [neurons]
    direction: Tensor  # [neurons, out_dim]  unit, signed
    mean_effect: Tensor  # [neurons, out_dim]
    variance_explained: Tensor  # [neurons]  σ₁² / Σσ² of the top-k centred rows
    singular_value: Tensor  # [neurons]  σ₁
    threshold: Tensor  # [neurons]  k-th largest centred norm
    top_norms: Tensor  # [neurons, k]  descending
    top_images: Tensor  # [neurons, k]  image indices, same order
    convention: str


@dataclass(frozen=True)
class BasisGram:
    """Inner products of an ``EffectBasis``'s vectors, float64: centred norms without the rows."""

    neuron: Tensor  # [neurons, K, K]
    cross: Tensor  # [neurons, K, J]
    shared: Tensor  # [J, J]


def basis_gram(basis: EffectBasis) -> BasisGram:
    neuron_basis = basis.neuron_basis.double()
    shared_basis = basis.shared_basis.double()
    return BasisGram(
        neuron=neuron_basis @ neuron_basis.transpose(1, 2),
        cross=neuron_basis @ shared_basis.T,
        shared=shared_basis @ shared_basis.T,
    )


def centred_sq_norms(coords: Tensor, shared: Tensor, gram: BasisGram) -> Tensor:
    """``‖φ - mean‖²`` per neuron and image from centred coordinates.

    coords ``[neurons, batch, K]`` and shared ``[batch, J]`` (both minus their means) ->
    ``[neurons, batch]``. The quadratic form of the rows' Gram, expanded over the two bases.
    """
    per_neuron = ((coords @ gram.neuron) * coords).sum(-1)  # [neurons, batch]
    cross = ((coords @ gram.cross) * shared).sum(-1)
    common = ((shared @ gram.shared) * shared).sum(-1)  # [batch]
    return (per_neuron + 2 * cross + common).clamp_min(0)


class RankOneFitter:
    """Streaming state of the two passes for one block; ``state_dict`` makes it resumable."""

    def __init__(self, basis: EffectBasis, top_k: int = 100):
        self.basis = basis
        self.top_k = top_k
        self.gram = basis_gram(basis)
        neurons, heads = basis.neuron_basis.shape[:2]
        shared = basis.shared_basis.shape[0]
        self.device = basis.neuron_basis.device
        self.coord_sum = torch.zeros(neurons, heads, dtype=torch.float64, device=self.device)
        self.shared_sum = torch.zeros(shared, dtype=torch.float64, device=self.device)
        self.count = 0
        self.top_norms = self.top_coords = self.top_shared = self.top_images = None

    # -- pass 1 -------------------------------------------------------------------------------
    def add_to_mean(self, coords: Tensor, shared: Tensor) -> None:
        """coords ``[batch, neurons, K]``, shared ``[batch, J]``."""
        self.coord_sum += coords.double().sum(0)
        self.shared_sum += shared.double().sum(0)
        self.count += coords.shape[0]

    def set_mean_sums(self, coord_sum: Tensor, shared_sum: Tensor, count: int) -> None:
        """Pass 1's sums computed elsewhere (merged across processes): ``[neurons, K]``, ``[J]``."""
        # Copies: the sums handed in may belong to the caller's own state (a tree's node).
        self.coord_sum = coord_sum.to(self.device, torch.float64, copy=True)
        self.shared_sum = shared_sum.to(self.device, torch.float64, copy=True)
        self.count = count

    def mean_coords(self) -> tuple[Tensor, Tensor]:
        if self.count == 0:
            raise ValueError("no images were added to the mean pass")
        return self.coord_sum / self.count, self.shared_sum / self.count

    # -- pass 2 -------------------------------------------------------------------------------
    def add_to_top_k(self, coords: Tensor, shared: Tensor, image_indices: Tensor) -> None:
        """Merge a batch into each neuron's top-k by centred norm; ``image_indices [batch]``."""
        mean, shared_mean = self.mean_coords()
        coords = (coords.double() - mean).transpose(0, 1)  # [neurons, batch, K]
        shared = shared.double() - shared_mean  # [batch, J]
        norms = centred_sq_norms(coords, shared, self.gram).sqrt()  # [neurons, batch]
        self._ensure_top_k()
        # Late in the pass few images beat a neuron's current k-th norm: merge only those rows.
        # (Images arrive in index order, so an equal norm loses to the one already kept.)
        rows = (norms > self.top_norms[:, -1:]).any(dim=1).nonzero().squeeze(1)
        if len(rows) == 0:
            return
        images = image_indices.to(self.device, torch.long)[None].expand(len(rows), -1)
        self._keep_best(rows, norms[rows], images, coords[rows],
                        shared[None].expand(len(rows), -1, -1))

    def merge_top_k(self, other: dict[str, Tensor]) -> None:
        """Fold in another process' top-k lists (its ``state_dict``) over other images.

        With the total order of :func:`top_k_order` the result is the top-k of the union, the
        same list whatever the order of the merges and however the images were split.
        """
        self._ensure_top_k()
        other = {name: tensor.to(self.device) for name, tensor in other.items()}
        rows = torch.arange(len(self.top_norms), device=self.device)
        self._keep_best(rows, other["top_norms"], other["top_images"], other["top_coords"],
                        other["top_shared"])

    def _keep_best(self, rows: Tensor, norms: Tensor, images: Tensor, coords: Tensor,
                   shared: Tensor) -> None:
        """Candidates for ``rows`` (norms/images ``[rows, m]``, coords ``[rows, m, K]``, shared
        ``[rows, m, J]``) against the current lists; keeps the best k of both, in order."""
        all_norms = torch.cat([self.top_norms[rows], norms], dim=1)
        all_images = torch.cat([self.top_images[rows], images], dim=1)
        keep = top_k_order(all_norms, all_images, self.top_norms.shape[1])  # [rows, k]
        self.top_norms[rows] = all_norms.gather(1, keep)
        self.top_images[rows] = all_images.gather(1, keep)
        candidates = torch.cat([self.top_coords[rows], coords], dim=1)
        self.top_coords[rows] = candidates.gather(1, keep[..., None].expand(-1, -1,
                                                                           coords.shape[2]))
        shared_rows = torch.cat([self.top_shared[rows], shared], dim=1)
        self.top_shared[rows] = shared_rows.gather(1, keep[..., None].expand(-1, -1,
                                                                             shared.shape[2]))

    def _ensure_top_k(self) -> None:
        if self.top_norms is None:
            self._empty_top_k(min(self.top_k, self.count))

    def _empty_top_k(self, k: int) -> None:
        neurons, heads = self.coord_sum.shape
        shared = self.shared_sum.shape[0]
        options = {"dtype": torch.float64, "device": self.device}
        self.top_norms = torch.full((neurons, k), -torch.inf, **options)
        self.top_images = torch.full((neurons, k), -1, dtype=torch.long, device=self.device)
        self.top_coords = torch.zeros(neurons, k, heads, **options)
        self.top_shared = torch.zeros(neurons, k, shared, **options)

    # -- result -------------------------------------------------------------------------------
    def result(self) -> RankOneDirections:
        if self.top_norms is None or bool((self.top_images < 0).any()):
            raise ValueError("the top-k pass has not seen every image yet")
        mean, shared_mean = self.mean_coords()
        neuron_basis = self.basis.neuron_basis.double()
        shared_basis = self.basis.shared_basis.double()
        mean_effect = torch.einsum("nk,nkd->nd", mean, neuron_basis) + shared_mean @ shared_basis
        coefficients = torch.cat([self.top_coords, self.top_shared], dim=2)  # [n, k, K']
        direction, singular, explained = fit_rank_one(coefficients, neuron_basis, shared_basis)
        order = self.top_norms.argsort(dim=1, descending=True, stable=True)
        top_norms = self.top_norms.gather(1, order)
        return RankOneDirections(
            layer=self.basis.layer,
            neurons=self.basis.neurons.cpu(),
            direction=direction.float().cpu(),
            mean_effect=mean_effect.float().cpu(),
            variance_explained=explained.float().cpu(),
            singular_value=singular.float().cpu(),
            threshold=top_norms[:, -1].float().cpu(),
            top_norms=top_norms.float().cpu(),
            top_images=self.top_images.gather(1, order).cpu(),
            convention=self.basis.convention,
        )

    # -- resuming -----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Tensor]:
        """CPU copies of everything the passes accumulated."""
        state = {"coord_sum": self.coord_sum, "shared_sum": self.shared_sum,
                 "count": torch.tensor(self.count)}
        if self.top_norms is not None:
            state |= {"top_norms": self.top_norms, "top_images": self.top_images,
                      "top_coords": self.top_coords, "top_shared": self.top_shared}
        return {name: tensor.cpu() for name, tensor in state.items()}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        state = {name: tensor.to(self.device) for name, tensor in state.items()}
        self.coord_sum, self.shared_sum = state["coord_sum"], state["shared_sum"]
        self.count = int(state["count"])
        if "top_norms" in state:
            self.top_norms, self.top_images = state["top_norms"], state["top_images"]
            self.top_coords, self.top_shared = state["top_coords"], state["top_shared"]


def top_k_order(norms: Tensor, images: Tensor, k: int) -> Tensor:
    """Column positions of each row's best ``k``, ``[rows, k]``: larger norm first, then lower
    image index; norms and images ``[rows, m]``.

    A total order (image indices are unique), so the kept set never depends on the order in
    which candidates arrived: two stable sorts, by image and then by norm, give it.
    """
    by_image = images.argsort(dim=1, stable=True)
    by_norm = norms.gather(1, by_image).argsort(dim=1, descending=True, stable=True)
    return by_image.gather(1, by_norm)[:, :k]


def fit_rank_one(coefficients: Tensor, neuron_basis: Tensor, shared_basis: Tensor,
                 device: torch.device = FIT_DEVICE) -> tuple[Tensor, Tensor, Tensor]:
    """:func:`_fit_rows` for every neuron, in chunks of :data:`NEURON_CHUNK`, on ``device``.

    coefficients ``[neurons, k, K + J]``, neuron_basis ``[neurons, K, out_dim]``, shared_basis
    ``[J, out_dim]``; returns ``(direction [neurons, out_dim], σ₁ [neurons], explained
    [neurons])`` on ``device``.
    """
    fits = []
    for chunk in torch.arange(len(coefficients), device=coefficients.device).split(NEURON_CHUNK):
        bases = torch.cat([neuron_basis[chunk], shared_basis.expand(len(chunk), -1, -1)], dim=1)
        fits.append(_fit_rows(coefficients[chunk].to(device), bases.to(device)))
    return tuple(torch.cat(parts) for parts in zip(*fits, strict=True))


def _fit_rows(coefficients: Tensor, bases: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """First right singular vector of each neuron's top-k centred rows ``coefficients @ bases``.

    coefficients ``[chunk, k, K']``, bases ``[chunk, K', out_dim]``. The rows are never formed:
    with ``basesᵀ = Q R`` they are ``(coefficients Rᵀ) Qᵀ``, so the SVD of the small
    ``coefficients Rᵀ`` gives the same singular values and, mapped by Q, the same vectors.

    Sign rule (the papers'): keep the vector if more than half the rows project positively. On an
    exact tie (k even, k/2 positive) their code keeps whatever sign LAPACK returned; we break it
    deterministically by the sign of the summed projections.
    Returns ``(direction [chunk, out_dim], σ₁ [chunk], σ₁²/Σσ² [chunk])``.
    """
    q, r = torch.linalg.qr(bases.transpose(1, 2))  # [chunk, out_dim, m], [chunk, m, K']
    reduced = coefficients @ r.transpose(1, 2)  # [chunk, k, m]
    _, singular, vh = torch.linalg.svd(reduced, full_matrices=False)
    projections = reduced @ vh[:, 0, :, None]  # [chunk, k, 1]: rows · direction
    positive = (projections > 0).sum((1, 2))
    negative = (projections < 0).sum((1, 2))
    tie_break = torch.where(projections.sum((1, 2)) >= 0, 1.0, -1.0)
    sign = torch.where(positive > negative, 1.0, torch.where(positive < negative, -1.0, tie_break))
    first = (q @ vh[:, 0, :, None]).squeeze(-1) * sign[:, None].to(q)  # [chunk, out_dim]
    energy = (singular**2).sum(1)
    return first, singular[:, 0], singular[:, 0] ** 2 / energy.clamp_min(1e-300)

