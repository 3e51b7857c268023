"""Sparse codes of neuron directions over a word-embedding dictionary.

``omp`` is a batched Orthogonal Matching Pursuit that returns the same supports and coefficients
as ``sklearn.linear_model.orthogonal_mp(dictionary.T, targets.T, n_nonzero_coefs=m)`` (its default
per-target Cholesky path, ``_cholesky_omp``), including its rules for stopping early:

- the atom chosen is ``argmax_j |<d_j, residual>|`` over raw, *unnormalised* atoms — scikit-learn
  assumes unit-norm columns but never rescales, so a longer atom wins more easily;
- stop (with a ``RuntimeWarning``) when the chosen atom is already in the support, when its
  correlation with the *original* target squares below machine epsilon (an absolute threshold:
  targets of norm ~1e-8 stop at once), or, from the second atom on, when its squared distance to
  the span of the support is at most machine epsilon (linear dependence);
- the coefficients are the least-squares fit of the target on the support.

Ties between exactly equal correlations may break differently (scikit-learn takes the first in its
internally permuted column order); continuous data never has them.

The cost is one correlation of every residual with every atom per step, ``targets × atoms × d``
multiply-adds; ``n_nonzero`` steps of it dominate everything else. On the CPU those products are
screened in bfloat16 (oneDNN, f32 accumulation, about 8× the float64 rate here) under a rigorous
error bound: the best few bf16 scores are re-scored exactly, and a row whose winner the bound
cannot certify against every other atom is re-scored wider, then if need be exactly in full, so
the selection is the exact one. What remains per step is O(k·d) per target for the support's
Gram–Schmidt update; the atoms × atoms Gram matrix is never formed.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

# Atoms re-scored exactly per target and step. The bf16 bound rarely leaves more than 2-3 in play;
# 0.5-2% of rows need the wide retry, which still avoids reading the float64 dictionary.
_CANDIDATES = 8
_WIDE_CANDIDATES = 256
# Columns per block in the candidate search (``_block_top``).
_BLOCK = 256
# Orthogonality kept between support directions: far below the error of scikit-learn's own
# Cholesky solve in float64, beyond float32's reach (so float32 always reorthogonalises).
_ORTHOGONALITY = 1e-10
_BF16_UNIT_ROUNDOFF = 2.0**-8
_F32_UNIT_ROUNDOFF = 2.0**-24


@dataclass(frozen=True)
class SparseCodes:
    """Sparse codes of ``targets`` over the rows of a dictionary.

    A target that stopped early (see the module docstring) has ``-1`` indices and zero
    coefficients in its unused trailing slots.
    """

    indices: Tensor  # [targets, m] long, in selection order
    coefficients: Tensor  # [targets, m]  least-squares coefficients on the support
    reconstruction_cosine: Tensor  # [targets]  cos(target, reconstruction)

    @property
    def n_active(self) -> Tensor:
        """Atoms actually selected per target, ``[targets]``."""
        return (self.indices >= 0).sum(dim=1)


@dataclass(frozen=True)
class _Screen:
    """A bfloat16 copy of the dictionary and the constants that bound its correlation error."""

    atoms: Tensor  # [padded atoms, d] bfloat16, zero rows up to a multiple of _BLOCK
    rounding: float  # max_j ||d_j - bf16(d_j)||
    norm: float  # max_j ||d_j||
    screened_norm: float  # max_j ||bf16(d_j)||
    accumulation: float  # relative error bound of a length-d dot product accumulated in f32


def reconstruct(dictionary: Tensor, codes: SparseCodes) -> Tensor:
    """``coefficients @ dictionary[indices]`` per target, ``[targets, d]``.

    Loops over selection slots rather than gathering ``[targets, m, d]`` at once, which would be
    1.6 GB for 3,072 targets × 128 atoms × 512 dims in float64.
    """
    atoms = dictionary.to(codes.coefficients.dtype)  # [atoms, d]
    total = atoms.new_zeros(codes.indices.shape[0], atoms.shape[1])  # [targets, d]
    for slot in range(codes.indices.shape[1]):
        chosen = codes.indices[:, slot]  # [targets]
        total += codes.coefficients[:, slot, None] * atoms[chosen.clamp(min=0)]
    return total


@torch.no_grad()
def omp(
    dictionary: Tensor,
    targets: Tensor,
    n_nonzero: int = 128,
    *,
    dtype: torch.dtype = torch.float64,
    chunk_size: int = 512,
    screen: bool | None = None,
    on_chunk: Callable[[int], None] | None = None,
) -> SparseCodes:
    """Orthogonal Matching Pursuit of every target over the rows of ``dictionary``.

    ``dictionary`` is ``[atoms, d]`` (rows need not be unit norm), ``targets`` ``[targets, d]``,
    both on the same device. ``dtype`` is the working precision: float64 reproduces scikit-learn;
    float32 is for speed on GPUs. Targets are processed ``chunk_size`` at a time, so memory is about
    ``chunk_size × (n_nonzero × (d + n_nonzero) × 8 + atoms × 2)`` bytes on top of the dictionary;
    512 keeps the bf16 correlations of a 30k-word dictionary in a 32 MB L3. ``screen`` turns the
    exact bf16 screening on or off; by default it is on where oneDNN has native bf16 (CPU only).

    Raises ``ValueError`` when ``n_nonzero`` exceeds the number of atoms (as scikit-learn does) or
    the dimension ``d``: beyond ``d`` atoms the support is linearly dependent and which step stops
    depends on round-off, so no answer would be reproducible. ``on_chunk(targets_done)`` is
    called after each chunk (for a progress display).
    """
    _check_inputs(dictionary, targets, n_nonzero, dtype, chunk_size)
    screen = _screen_available(dictionary.device) if screen is None else screen
    if screen and dictionary.device.type != "cpu":
        raise ValueError(
            "bf16 screening is certified only on the CPU, where oneDNN accumulates in float32; "
            "leave screen unset (or False) on other devices."
        )
    atoms = dictionary.to(dtype)  # [atoms, d]
    screening = _build_screen(atoms) if screen else None
    pieces = []
    for chunk in targets.split(chunk_size):
        pieces.append(_omp_chunk(atoms, chunk.to(dtype), n_nonzero, screening))
        if on_chunk is not None:
            on_chunk(len(chunk))
    indices = torch.cat([piece[0] for piece in pieces])  # [targets, m]
    coefficients = torch.cat([piece[1] for piece in pieces])  # [targets, m]
    short = int((indices[:, -1] < 0).sum())
    if short:
        warnings.warn(
            f"Orthogonal matching pursuit stopped early for {short} of {len(indices)} targets "
            "(atom repeated, negligible correlation, or linearly dependent support); their "
            "unused slots hold index -1 and coefficient 0.",
            RuntimeWarning,
            stacklevel=2,
        )
    return _with_cosine(atoms, targets.to(dtype), indices, coefficients)


def nonnegative_lasso(
    dictionary: Tensor, targets: Tensor, alpha: float, *, n_nonzero: int | None = None
) -> SparseCodes:
    """Non-negative Lasso codes through scikit-learn, largest coefficients first.

    Minimises ``||y - D^T w||² / (2 d) + alpha ||w||_1`` subject to ``w >= 0`` per target
    (scikit-learn's ``Lasso(positive=True, fit_intercept=False)`` scaling, ``d`` samples). A
    sparser, all-positive alternative to OMP for reading neurons; slow, since coordinate descent
    runs per target. Keeps at most ``n_nonzero`` atoms (all non-zero ones when ``None``); the
    coefficients are the Lasso's own, not refitted, so the cosine reflects the shrinkage.
    """
    from sklearn.linear_model import Lasso

    design = dictionary.detach().to("cpu", torch.float64).numpy().T  # [d, atoms], Fortran order
    responses = targets.detach().to("cpu", torch.float64).numpy().T  # [d, targets]
    model = Lasso(alpha=alpha, positive=True, fit_intercept=False, precompute=False)
    weights = np.atleast_2d(model.fit(design, responses).coef_)  # [targets, atoms]
    keep = n_nonzero if n_nonzero is not None else max(int((weights > 0).sum(1).max()), 1)
    order = np.argsort(-weights, axis=1, kind="stable")[:, :keep]  # [targets, keep]
    kept = np.take_along_axis(weights, order, axis=1)  # [targets, keep]
    indices = torch.from_numpy(np.where(kept > 0, order, -1))
    coefficients = torch.from_numpy(np.where(kept > 0, kept, 0.0))
    return _with_cosine(
        dictionary.detach().to("cpu", torch.float64),
        targets.detach().to("cpu", torch.float64),
        indices,
        coefficients,
    )


def _check_inputs(
    dictionary: Tensor, targets: Tensor, n_nonzero: int, dtype: torch.dtype, chunk_size: int
) -> None:
    """Reject inputs whose failure would otherwise surface as a shape error mid-loop."""
    if dictionary.ndim != 2 or targets.ndim != 2:
        raise ValueError(
            f"Expected dictionary [atoms, d] and targets [targets, d], got shapes "
            f"{tuple(dictionary.shape)} and {tuple(targets.shape)}; unsqueeze a single target."
        )
    atoms, dim = dictionary.shape
    if targets.shape[1] != dim:
        raise ValueError(f"Targets have dimension {targets.shape[1]}, the dictionary {dim}.")
    if dictionary.device != targets.device:
        raise ValueError(f"Dictionary on {dictionary.device} but targets on {targets.device}.")
    if not 1 <= n_nonzero <= min(atoms, dim):
        raise ValueError(
            f"n_nonzero={n_nonzero} must be between 1 and min(atoms, d) = {min(atoms, dim)}: "
            "more atoms than dimensions are linearly dependent, more than the dictionary holds "
            "do not exist."
        )
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype}.")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}.")


def _screen_available(device: torch.device) -> bool:
    """bf16 screening pays off only with native bf16 dot products (oneDNN, AVX512-BF16/AMX)."""
    return (
        device.type == "cpu"
        and torch.backends.mkldnn.is_available()
        and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    )


def _build_screen(atoms: Tensor) -> _Screen:
    """Round the dictionary to bf16 once, pad it to whole blocks, and measure the rounding."""
    screened = atoms.to(torch.bfloat16)  # [atoms, d]
    widened = screened.to(atoms.dtype)  # [atoms, d]
    count, dim = atoms.shape
    padded = screened.new_zeros(-(-count // _BLOCK) * _BLOCK, dim)  # [padded atoms, d]
    padded[:count] = screened
    return _Screen(
        atoms=padded,
        rounding=float((atoms - widened).norm(dim=1).max()),
        norm=float(atoms.norm(dim=1).max()),
        screened_norm=float(widened.norm(dim=1).max()),
        accumulation=dim * _F32_UNIT_ROUNDOFF / (1 - dim * _F32_UNIT_ROUNDOFF),
    )


def _screen_slack(residual: Tensor, screened: Tensor, screen: _Screen) -> Tensor:
    """Additive part of the bound ``|<d_j, r>| <= |c~_j| / (1 - u) + slack``, ``[batch]``.

    ``c~_j`` is the bf16 result. Its f32 accumulator differs from it by at most ``u`` relative
    (output rounding), from ``<bf16(d_j), bf16(r)>`` by ``accumulation × ||bf16(d_j)|| ||bf16(r)||``
    (bf16 products are exact in f32), and that from ``<d_j, r>`` by
    ``||d_j - bf16(d_j)|| ||bf16(r)|| + ||d_j|| ||r - bf16(r)||`` (Cauchy–Schwarz).
    """
    widened = screened.to(residual.dtype)  # [batch, d]
    screened_norm = widened.norm(dim=1)  # [batch]
    drift = (residual - widened).norm(dim=1)  # [batch]
    per_norm = screen.rounding + screen.accumulation * screen.screened_norm
    return per_norm * screened_norm + screen.norm * drift


def _exact_best(atoms: Tensor, residual: Tensor) -> Tensor:
    """``argmax_j |<d_j, r>|`` per row at full precision, ``[batch]``."""
    return (residual @ atoms.T).abs_().argmax(dim=1)


def _screened_best(
    atoms: Tensor, residual: Tensor, screen: _Screen, scratch: Tensor, running: Tensor
) -> Tensor:
    """The exact ``argmax_j |<d_j, r>|`` per row, scoring all atoms in bf16 first, ``[batch]``.

    The ``_CANDIDATES`` best bf16 scores are recomputed exactly; a row whose winner the bound
    cannot certify is retried with ``_WIDE_CANDIDATES``, then (very rarely) exactly in full, which
    reads the whole full-precision dictionary. Halted rows (``running`` false, ``[batch]``) skip
    the retries: their choice is discarded, and a zero residual would never certify. ``scratch``
    is a reusable ``[batch, padded atoms]`` bf16 buffer (30 MB per 512 targets).
    """
    screened = residual.to(torch.bfloat16)  # [batch, d]
    approx = torch.mm(screened, screen.atoms.T, out=scratch).abs_()  # [batch, padded]
    slack = _screen_slack(residual, screened, screen)  # [batch]
    scores, columns = _block_top(approx, _CANDIDATES)
    chosen, certain = _best_candidate(atoms, residual, scores, columns, slack, approx.shape[1])
    certain |= ~running
    if bool(certain.all()):
        return chosen
    rows = (~certain).nonzero().squeeze(1)
    scores, columns = approx[rows].topk(min(_WIDE_CANDIDATES, approx.shape[1]), dim=1)
    wide, wide_certain = _best_candidate(
        atoms, residual[rows], scores, columns, slack[rows], approx.shape[1]
    )
    chosen[rows] = wide
    if not bool(wide_certain.all()):
        rows = rows[~wide_certain]
        chosen[rows] = _exact_best(atoms, residual[rows])
    return chosen


def _block_top(approx: Tensor, count: int) -> tuple[Tensor, Tensor]:
    """The ``count`` largest entries of each row of non-negative bf16 ``approx`` and their columns.

    ``torch.topk`` over 30k bf16 columns costs ~20× a max reduction, so reduce blocks of
    ``_BLOCK`` columns to their maxima first (on the int16 view: non-negative bf16 values sort
    like their bit patterns, and integer reductions vectorise), then search only the ``count``
    best blocks, which hold the ``count`` best entries. Returns ``[batch, count]`` bf16 and long.
    """
    batch, width = approx.shape
    bits = approx.view(torch.int16)  # [batch, padded]
    maxima = bits.view(batch, width // _BLOCK, _BLOCK).amax(dim=2)  # [batch, blocks]
    blocks = maxima.topk(min(count, maxima.shape[1]), dim=1).indices  # [batch, count]
    offsets = torch.arange(_BLOCK, device=approx.device)
    columns = (blocks[:, :, None] * _BLOCK + offsets).flatten(1)  # [batch, count × _BLOCK]
    values, picks = bits.gather(1, columns).topk(count, dim=1)  # [batch, count]
    return values.view(torch.bfloat16), columns.gather(1, picks)


def _best_candidate(
    atoms: Tensor, residual: Tensor, scores: Tensor, columns: Tensor, slack: Tensor, width: int
) -> tuple[Tensor, Tensor]:
    """Exact winner among the candidate ``columns``, and whether it is the global one.

    ``scores`` and ``columns`` are ``[batch, k]`` bf16 |scores| (descending) and their columns in
    the ``width``-column screen, whose zero padding columns are clamped onto the last atom.
    ``slack`` is ``[batch]`` from ``_screen_slack``. Every atom left out scored at most the last
    candidate's bf16 value, so its exact |correlation| is below that value's bound; the winner is
    certified when it beats this. Returns ``[batch]`` indices and ``[batch]`` bool.
    """
    ids = columns.clamp(max=atoms.shape[0] - 1)  # [batch, k]
    candidates = atoms.index_select(0, ids.flatten()).view(*ids.shape, -1)  # [batch, k, d]
    exact = torch.bmm(candidates, residual[:, :, None]).squeeze(2).abs_()  # [batch, k]
    best_score, best_slot = exact.max(dim=1)  # [batch]
    chosen = ids.gather(1, best_slot[:, None]).squeeze(1)  # [batch]
    if columns.shape[1] == width:
        return chosen, torch.ones_like(best_score, dtype=torch.bool)
    left_out = scores[:, -1].to(residual.dtype) / (1 - _BF16_UNIT_ROUNDOFF)  # [batch]
    return chosen, best_score > left_out + slack


def _orthogonalise(basis: Tensor, atom: Tensor, running: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Split ``atom`` against the orthonormal ``basis``: coordinates, remainder and its norm.

    ``basis`` is ``[batch, k, d]``, ``atom`` ``[batch, d]``, ``running`` ``[batch]`` bool (halted
    rows may keep re-picking an atom inside their span, so they must not force a second pass);
    returns ``[batch, k]``, ``[batch, d]`` and ``[batch]``. One classical Gram–Schmidt pass
    reads the basis twice, the dominant memory traffic after the correlations, and leaves the
    remainder orthogonal to about ``eps · ||atom|| / ||remainder||``; a second pass ("twice is
    enough") runs only when some row would exceed ``_ORTHOGONALITY``: in float64 only for nearly
    dependent atoms, in float32 always.
    """
    coords = torch.bmm(atom[:, None, :], basis.mT)  # [batch, 1, k]
    remainder = atom - torch.bmm(coords, basis).squeeze(1)  # [batch, d]
    length = remainder.norm(dim=1)  # [batch]
    loss = torch.finfo(atom.dtype).eps * atom.norm(dim=1)  # [batch]
    if bool(((loss > _ORTHOGONALITY * length) & running).any()):
        extra = torch.bmm(remainder[:, None, :], basis.mT)  # [batch, 1, k]
        remainder -= torch.bmm(extra, basis).squeeze(1)
        coords += extra
        length = remainder.norm(dim=1)
    return coords.squeeze(1), remainder, length


def _halts(
    step: int, chosen: Tensor, atom: Tensor, targets: Tensor, picked: Tensor, orth_sq: Tensor
) -> Tensor:
    """scikit-learn's three early stops, per row, ``[batch]`` bool.

    ``picked`` is ``[batch, step]`` indices so far, ``orth_sq`` the squared norm of the chosen
    atom's component orthogonal to the support. The correlation test uses the *original* target,
    as ``_cholesky_omp`` does, and the dependence test is skipped for the first atom, as there.
    scikit-learn takes ``orth_sq`` as ``||x||² - ||L⁻¹ D_S x||²``, whose cancellation can leave
    ~1e-15 > eps for a dependent atom and admit it with a round-off coefficient; the remainder's
    own norm does not, so on exactly dependent supports we stop where it might not.
    """
    eps = torch.finfo(atom.dtype).eps
    repeated = (picked == chosen[:, None]).any(dim=1)
    negligible = torch.linalg.vecdot(atom, targets).square() < eps
    dependent = (orth_sq <= eps) & (step > 0)
    return repeated | negligible | dependent


def _omp_chunk(
    atoms: Tensor, targets: Tensor, n_nonzero: int, screen: _Screen | None
) -> tuple[Tensor, Tensor]:
    """OMP for one chunk of targets: indices and coefficients, each ``[batch, n_nonzero]``.

    Keeps orthonormal rows ``Q`` spanning each support and upper-triangular ``R`` with
    ``D_S = R^T Q`` (a QR of the support: better conditioned than scikit-learn's Cholesky of
    ``D_S D_S^T``, same solution), so each step costs one correlation pass plus O(k·d) per
    target, and the coefficients come from one batched triangular solve ``R c = Q y`` at the end.
    A halted row keeps running with a zero direction and an identity column in ``R``, which pins
    its unused coefficients at zero.
    """
    batch, dim = targets.shape
    residual = targets.clone()  # [batch, d]
    basis = targets.new_zeros(batch, n_nonzero, dim)  # [batch, m, d]  Q, one row per atom
    triangle = targets.new_zeros(batch, n_nonzero, n_nonzero)  # [batch, m, m]  R
    projections = targets.new_zeros(batch, n_nonzero)  # [batch, m]  Q y
    indices = torch.full((batch, n_nonzero), -1, dtype=torch.long, device=targets.device)
    running = torch.ones(batch, dtype=torch.bool, device=targets.device)  # [batch]
    scratch = (
        targets.new_empty(batch, screen.atoms.shape[0], dtype=torch.bfloat16) if screen else None
    )  # [batch, padded atoms]
    steps = 0
    for step in range(n_nonzero):
        if screen is None:
            chosen = _exact_best(atoms, residual)  # [batch]
        else:
            chosen = _screened_best(atoms, residual, screen, scratch, running)
        atom = atoms.index_select(0, chosen)  # [batch, d]
        coords, remainder, length = _orthogonalise(basis[:, :step], atom, running)
        running &= ~_halts(step, chosen, atom, targets, indices[:, :step], length.square())
        if not bool(running.any()):
            break
        live = running.to(targets.dtype)  # [batch]
        diagonal = torch.where(running, length, 1.0)  # [batch]
        direction = remainder * (live / diagonal)[:, None]  # [batch, d]
        # Projecting the residual rather than the target keeps it orthogonal to Q to round-off.
        weight = torch.linalg.vecdot(direction, residual)  # [batch]
        residual.addcmul_(direction, weight[:, None], value=-1)
        basis[:, step] = direction
        triangle[:, :step, step] = coords * live[:, None]
        triangle[:, step, step] = diagonal
        projections[:, step] = weight
        indices[:, step] = torch.where(running, chosen, -1)
        steps = step + 1
    coefficients = targets.new_zeros(batch, n_nonzero)  # [batch, m]
    coefficients[:, :steps] = torch.linalg.solve_triangular(
        triangle[:, :steps, :steps], projections[:, :steps, None], upper=True
    ).squeeze(2)
    return indices, coefficients


def _with_cosine(
    atoms: Tensor, targets: Tensor, indices: Tensor, coefficients: Tensor
) -> SparseCodes:
    """Attach ``cos(target, reconstruction)``; an empty code (zero reconstruction) scores 0."""
    partial = SparseCodes(indices, coefficients, coefficients.new_zeros(len(indices)))
    rebuilt = reconstruct(atoms, partial)  # [targets, d]
    norms = rebuilt.norm(dim=1) * targets.norm(dim=1)  # [targets]
    denominator = norms.clamp_min(torch.finfo(norms.dtype).tiny)
    cosine = (rebuilt * targets).sum(dim=1) / denominator  # [targets]
    return SparseCodes(indices, coefficients, cosine)
