"""Second-order effects of MLP neurons, by the factored algorithm of method.md §3.

A neuron n of block l writes ``p_{t,n} w_n`` into token t. Each later head h of block l' reads it
through its frozen CLS attention row, its ln_1 scale, W_V and W_O; ln_post and the projection map it
out. Everything right of the scalar activation is image-independent, so for every image

    φ_n(I) = Σ_k  coords[I, n, k] · neuron_basis[n, k]  +  Σ_j shared_coords[I, j] · shared_basis[j]

with k running over the K later heads (``coords = Σ_t A[0,t] p_{t,n} / σ_t`` scaled per image) and j
over terms common to all neurons (only the ``reference`` convention has those: its shares of biases
and LayerNorm means). Statistics over images then live in K dimensions, never in
``[images, neurons, out_dim]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from neuronattack.lens.traced_pass import Trace, trace
from neuronattack.lens.vit import (
    centre,
    check_convention,
    head_maps,
    layer_norm_params,
    neuron_writes,
)

REFERENCE_COEFFICIENT = 100.0  # the papers' code reports effects in percent of ‖rep‖


@dataclass(frozen=True)
class EffectBasis:
    """The image-independent half of the second-order effects of one block's neurons."""

    layer: int
    neurons: Tensor  # [neurons]  indices into the block's MLP
    neuron_basis: Tensor  # [neurons, K, out_dim]  one vector per later head
    shared_basis: Tensor  # [J, out_dim]  J = 0 in the centred convention
    later_heads: tuple[tuple[int, int], ...]  # K pairs (block, head), block-major
    convention: str

    def effects(self, coords: Tensor, shared_coords: Tensor) -> Tensor:
        """φ ``[batch, neurons, out_dim]`` from coordinates.

        coords ``[batch, neurons, K]``, shared_coords ``[batch, J]``.
        """
        per_neuron = torch.einsum("bnk,nkd->bnd", coords, self.neuron_basis)
        return per_neuron + (shared_coords @ self.shared_basis)[:, None, :]


def effect_basis(
    visual: nn.Module,
    layer: int,
    neurons: Tensor | None = None,
    convention: str = "centred",
) -> EffectBasis:
    """Precompute, per neuron and later head, the output-space vector one unit of ``s`` writes."""
    check_convention(convention)
    blocks = visual.transformer.resblocks
    if not 0 <= layer < len(blocks) - 1:
        raise ValueError(f"layer must be in 0..{len(blocks) - 2} (a later block must exist)")
    writes, write_bias = neuron_writes(blocks[layer])  # [mlp_width, width], [width]
    mlp_width = writes.shape[0]
    if neurons is None:
        neurons = torch.arange(mlp_width)
    writes = writes[neurons]
    post = layer_norm_params(visual.ln_post)
    proj = visual.proj.detach()

    def to_output(residual: Tensor) -> Tensor:  # [..., width] -> [..., out_dim]
        if convention == "centred":
            residual = centre(residual)
        return (post.weight * residual) @ proj

    per_layer, shared, later_heads = [], [], []
    n_blocks = len(blocks)
    for later in range(layer + 1, n_blocks):
        maps = head_maps(blocks[later])
        ln_1 = layer_norm_params(blocks[later].ln_1)
        heads = maps.value_weight.shape[0]
        later_heads += [(later, h) for h in range(heads)]
        read = writes if convention == "reference" else centre(writes)

        def through_head(residual: Tensor, maps=maps) -> Tensor:
            """``[..., width]`` into ln_1's linear part -> ``[..., heads, width]`` out of W_O."""
            values = torch.einsum("...d,hcd->...hc", residual, maps.value_weight)
            return torch.einsum("...hc,hdc->...hd", values, maps.out_weight)

        per_layer.append(to_output(through_head(ln_1.weight * read)))  # [neurons, heads, out_dim]
        if convention == "reference":
            shared.append(_reference_shared(to_output, through_head, maps, ln_1, write_bias,
                                            mlp_width, later, n_blocks, post.bias, proj))
    shared_basis = (
        _assemble_reference_shared(shared)
        if convention == "reference"
        else proj.new_zeros(0, proj.shape[1])
    )
    return EffectBasis(
        layer=layer,
        neurons=neurons,
        neuron_basis=torch.cat(per_layer, dim=1),
        shared_basis=shared_basis,
        later_heads=tuple(later_heads),
        convention=convention,
    )


def _reference_shared(to_output, through_head, maps, ln_1, write_bias, mlp_width, later, n_blocks,
                      post_bias, proj) -> dict[str, Tensor]:
    """The papers' per-neuron shares of everything that is not ``p_{t,n} w_n``, for one later block.

    Their code splits the c_proj bias 1/M per neuron; ln_1's mean and bias, the value bias and the
    out-proj bias 1/((2l'+1)·M) (``(2l'+1)`` residual pieces enter block l'); ln_post's mean and
    bias
    a further 1/((2L+1)·H) per head.
    """
    heads = maps.value_weight.shape[0]
    pieces_in = (2 * later + 1) * mlp_width
    pieces_out = pieces_in * (2 * n_blocks + 1) * heads
    constant = (
        through_head(ln_1.bias) + torch.einsum("hc,hdc->hd", maps.value_bias, maps.out_weight)
    ) / pieces_in + maps.out_bias / (pieces_in * heads)  # [heads, width]
    return {
        "bias_per_scale": to_output(through_head(ln_1.weight * write_bias)) / mlp_width,
        "mean_per_scale": -to_output(through_head(ln_1.weight)) / pieces_in,
        "constant": to_output(constant).sum(0),
        "post_mean": -heads / pieces_out * to_output(torch.ones_like(post_bias)),
        "post_bias": heads / pieces_out * (post_bias @ proj),
    }


def _assemble_reference_shared(per_block: list[dict[str, Tensor]]) -> Tensor:
    """Stack into ``[J, out_dim]`` in the order ``shared_coords`` uses (see ``effect_coords``)."""
    return torch.cat([
        torch.cat([b["bias_per_scale"] for b in per_block]),  # [K, out_dim]
        torch.cat([b["mean_per_scale"] for b in per_block]),  # [K, out_dim]
        torch.stack([
            sum(b["constant"] for b in per_block),
            sum(b["post_mean"] for b in per_block),
            sum(b["post_bias"] for b in per_block),
        ]),
    ])


def effect_coords(record: Trace, basis: EffectBasis) -> tuple[Tensor, Tensor]:
    """The image-dependent half: ``(coords [batch, neurons, K], shared_coords [batch, J])``.

    ``s_{l',h,n} = Σ_t A^{l',h}[0,t] p_{t,n} / σ^{l'}_t``: one batched matmul per later block.
    """
    post = record.mlp_post[basis.layer][..., basis.neurons]  # [batch, tokens, neurons]
    later_blocks = sorted({block for block, _ in basis.later_heads})
    read_weights = torch.cat(
        [record.attn_cls_rows[b] / record.ln_1_scale[b][:, None, :] for b in later_blocks], dim=1
    )  # [batch, K, tokens]
    coords = torch.einsum("bkt,btn->bnk", read_weights, post)
    per_image = 1.0 / record.ln_post_scale  # [batch]
    if basis.convention == "centred":
        return coords * per_image[:, None, None], coords.new_zeros(coords.shape[0], 0)

    per_image = per_image * REFERENCE_COEFFICIENT / record.embedding.norm(dim=-1)
    mean_weights = torch.cat(
        [record.attn_cls_rows[b] * (record.ln_1_mean[b] / record.ln_1_scale[b])[:, None, :]
         for b in later_blocks], dim=1,
    )  # [batch, K, tokens]
    shared = torch.cat([
        read_weights.sum(-1),  # multiplies the c_proj bias share
        mean_weights.sum(-1),  # multiplies the ln_1 mean share
        torch.ones_like(per_image)[:, None],
        record.ln_post_mean[:, None],
        record.ln_post_scale[:, None],  # cancels the 1/σ_post: ln_post's bias is not scaled
    ], dim=1)
    return coords * per_image[:, None, None], shared * per_image[:, None]


def second_order(
    model: nn.Module,
    images: Tensor,
    layer: int,
    neurons: Tensor | None = None,
    convention: str = "centred",
) -> Tensor:
    """Second-order effects ``[batch, neurons, out_dim]`` of block ``layer``'s neurons.

    ``model`` is an open_clip CLIP (or its ``.visual``); ``images`` a preprocessed float tensor
    ``[batch, 3, H, W]``. Materialises the full effect: for small checks; the streaming statistics
    in ``neuronattack.neurons.directions`` work on coordinates instead.
    """
    visual = getattr(model, "visual", model)
    basis = effect_basis(visual, layer, neurons, convention)
    record = trace(visual, images, mlp_layers=(layer,))
    return basis.effects(*effect_coords(record, basis))
