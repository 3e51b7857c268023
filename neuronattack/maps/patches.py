"""Per-patch maps from the lens's first-order pieces (method.md §1 and §2, "spatial maps").

The embedding is an exact sum of pieces, one per layer × token × head (plus MLPs, embedding and
bias). Summing the pieces of one image patch over the heads of chosen layers and projecting on a
direction ``d`` gives that patch's share of the score ``embedding · d``; everything else (the CLS
token's own pieces, the other layers, the MLPs, the embedding and the bias) is the ``rest``, so

    map.values.sum((1, 2)) + map.rest == map.score == embedding · d     (exactly, by construction)

``d`` is a text's unit embedding, or the difference of two (``text − minus``): the contrast CLIP
decides with when it prefers one class over another. With ``per_norm=True`` every number is divided
by ‖embedding‖, so the score is the cosine-similarity difference a zero-shot judge compares.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from neuronattack.errors import NeuronAttackError
from neuronattack.lens.first_order import FirstOrderPieces, first_order_pieces
from neuronattack.lens.traced_pass import Trace, trace


@dataclass(frozen=True)
class PatchMap:
    """A score split into one value per image patch and the rest."""

    values: Tensor  # [batch, grid_h, grid_w]  each patch's share of the score
    rest: Tensor  # [batch]  the CLS token's pieces, other layers, MLPs, embedding, bias
    score: Tensor  # [batch]  the score explained: embedding · direction (/ ‖embedding‖)
    layers: tuple[int, ...]  # the blocks whose heads the patch values sum over

    def total(self) -> Tensor:
        """``values`` summed plus ``rest``: equals ``score`` up to float rounding. ``[batch]``."""
        return self.values.sum((1, 2)) + self.rest


def grid_shape(visual: nn.Module) -> tuple[int, int]:
    """Patches per column and per row of the tower's input: ``(grid_h, grid_w)``."""
    return tuple(int(n) for n in visual.grid_size)


def check_layers(layers: Sequence[int] | None, blocks: int) -> tuple[int, ...]:
    """The chosen blocks, sorted; ``None`` means every block (the first paper's maps)."""
    if layers is None:
        return tuple(range(blocks))
    chosen = tuple(sorted(set(int(layer) for layer in layers)))
    if not chosen or chosen[0] < 0 or chosen[-1] >= blocks:
        raise NeuronAttackError(
            f"Map layers must be block numbers in 0..{blocks - 1}; got {list(layers)}."
        )
    return chosen


def patch_contributions(pieces: FirstOrderPieces, layers: Sequence[int]) -> Tensor:
    """Each patch's direct contribution, summed over the heads of ``layers``.

    Returns ``[batch, patches, out_dim]`` (patch tokens only, row-major over the grid).
    """
    return pieces.attn[:, list(layers), 1:].sum(dim=(1, 3))


def rest_contribution(pieces: FirstOrderPieces, layers: Sequence[int]) -> Tensor:
    """Everything the patch values leave out, ``[batch, out_dim]``, summed from the pieces.

    Computed from the pieces themselves rather than as total − patches, so that checking
    ``values + rest == embedding`` tests the decomposition instead of restating it.
    """
    chosen = list(layers)
    others = [layer for layer in range(pieces.attn.shape[1]) if layer not in chosen]
    cls_of_chosen = pieces.attn[:, chosen, 0].sum(dim=(1, 2))
    other_layers = pieces.attn[:, others].sum(dim=(1, 2, 3))
    return pieces.embed + pieces.mlps.sum(1) + pieces.bias + cls_of_chosen + other_layers


def explain(
    pieces: FirstOrderPieces,
    direction: Tensor,
    grid: tuple[int, int],
    layers: Sequence[int] | None = None,
    per_norm: bool = False,
) -> PatchMap:
    """Project the pieces on ``direction`` (``[out_dim]``, or ``[batch, out_dim]`` per image)."""
    chosen = check_layers(layers, pieces.attn.shape[1])
    patches = patch_contributions(pieces, chosen)  # [batch, patches, out_dim]
    rest = rest_contribution(pieces, chosen)  # [batch, out_dim]
    total = pieces.total()  # [batch, out_dim]
    d = direction.to(patches.dtype)
    d = d.expand(total.shape[0], -1) if d.dim() == 1 else d  # [batch, out_dim]
    if patches.shape[1] != grid[0] * grid[1]:
        raise ValueError(f"{patches.shape[1]} patch tokens do not fill a {grid} grid")
    values = torch.einsum("bpd,bd->bp", patches, d)
    rest_score, score = (rest * d).sum(-1), (total * d).sum(-1)
    if per_norm:
        norm = total.norm(dim=-1)  # [batch]
        values, rest_score, score = values / norm[:, None], rest_score / norm, score / norm
    return PatchMap(values.reshape(-1, *grid), rest_score, score, chosen)


def traced_pieces(visual: nn.Module, pixels: Tensor) -> tuple[Trace, FirstOrderPieces]:
    """One traced pass over ``pixels [batch, 3, H, W]``: the record (attention rows, for the
    CLS-attention baseline) and its first-order pieces in the centred convention."""
    record = trace(visual, pixels, first_order=True)
    return record, first_order_pieces(visual, record, "centred")


def cls_attention_map(record: Trace, grid: tuple[int, int], layer: int = -1) -> Tensor:
    """The raw-attention baseline: block ``layer``'s CLS attention to each patch, mean over heads.

    Returns ``[batch, grid_h, grid_w]``.
    """
    blocks = sorted(record.attn_cls_rows)
    rows = record.attn_cls_rows[blocks[layer]]  # [batch, heads, tokens]
    return rows[:, :, 1:].mean(1).reshape(-1, *grid)


def upsample(values: Tensor, size: tuple[int, int]) -> Tensor:
    """Patch maps ``[batch, grid_h, grid_w]`` to pixels ``[batch, H, W]``, bilinearly (as the
    papers' code does before thresholding)."""
    return torch.nn.functional.interpolate(values[:, None].float(), size=size, mode="bilinear",
                                           align_corners=False)[:, 0]
