"""First-order (direct) decomposition of the image embedding (method.md §1).

``z_L[CLS] = e + Σ_l mlp_l + Σ_{l,t,h} a_{l,t,h}`` exactly, and ln_post is linear once its mean and
scale at CLS are frozen, so every piece maps to the output space. Conventions (``lens.vit``):

- ``centred`` (default): ``c ↦ (γ_post ⊙ centre(c) / σ_post) · P``; ``β_post · P`` is its own bias
  piece. A piece's value depends on that piece alone; pieces sum to the embedding.
- ``reference`` (the papers' code):
  ``c ↦ (γ_post ⊙ (c − μ_post/K) / σ_post + β_post/K) · P / ‖rep‖``
  with the mean and bias shared equally over K pieces; pieces sum to ``rep / ‖rep‖``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor, nn

from neuronattack.lens.traced_pass import Trace, trace
from neuronattack.lens.vit import centre, check_convention, head_maps, layer_norm_params


@dataclass(frozen=True)
class FirstOrderPieces:
    """Direct contributions to the image embedding, in the output space."""

    embed: Tensor  # [batch, out_dim]  the ln_pre output at CLS
    mlps: Tensor  # [batch, layers, out_dim]
    attn: Tensor  # [batch, layers, tokens, heads, out_dim]  out-proj bias shared over tokens×heads
    bias: Tensor  # [batch, out_dim]  β_post·P (centred); zero in the reference convention
    convention: str

    def total(self) -> Tensor:
        """All pieces summed: the embedding (centred) or ``rep / ‖rep‖`` (reference).

        Returns ``[batch, out_dim]``.
        """
        return self.embed + self.mlps.sum(1) + self.attn.sum((1, 2, 3)) + self.bias


def first_order_pieces(
    visual: nn.Module, record: Trace, convention: str = "centred"
) -> FirstOrderPieces:
    """Map the residual-stream pieces of a ``trace(..., first_order=True)`` to the output space."""
    check_convention(convention)
    blocks = visual.transformer.resblocks
    layers, tokens, heads = record.attn_cls_pieces.shape[1:4]
    out_bias = torch.stack([head_maps(block).out_bias for block in blocks])  # [layers, width]
    attn = record.attn_cls_pieces + out_bias[None, :, None, None, :] / (tokens * heads)
    post = layer_norm_params(visual.ln_post)
    proj = visual.proj.detach()  # [width, out_dim]
    scale = record.ln_post_scale  # [batch]

    if convention == "centred":

        def to_output(piece: Tensor, _shares: int) -> Tensor:
            batch_shape = (-1,) + (1,) * (piece.dim() - 2)
            return (post.weight * centre(piece) / scale.view(batch_shape)[..., None]) @ proj

        bias = (post.bias @ proj).expand(scale.shape[0], -1)
    else:
        norm = record.embedding.norm(dim=-1)  # [batch]
        mean = record.ln_post_mean

        def to_output(piece: Tensor, shares: int) -> Tensor:
            view = (-1,) + (1,) * (piece.dim() - 2)
            shifted = piece - mean.view(view)[..., None] / shares
            mapped = post.weight * shifted / scale.view(view)[..., None] + post.bias / shares
            return (mapped @ proj) / norm.view(view)[..., None]

        bias = torch.zeros_like(record.embedding)

    stream_pieces = 2 * layers + 1  # embedding + one attention and one MLP output per block
    return FirstOrderPieces(
        embed=to_output(record.embed_cls, stream_pieces),
        mlps=to_output(record.mlp_cls, stream_pieces),
        attn=to_output(attn, stream_pieces * tokens * heads),
        bias=bias,
        convention=convention,
    )


def decompose(visual: nn.Module, images: Tensor, convention: str = "centred") -> FirstOrderPieces:
    """First-order pieces of ``images [batch, 3, H, W]`` in one traced pass."""
    return first_order_pieces(visual, trace(visual, images, first_order=True), convention)


def mean_pieces(pieces: FirstOrderPieces) -> FirstOrderPieces:
    """Each piece averaged over the batch (keeping a batch axis of 1), for mean-ablation."""
    return FirstOrderPieces(
        embed=pieces.embed.mean(0, keepdim=True),
        mlps=pieces.mlps.mean(0, keepdim=True),
        attn=pieces.attn.mean(0, keepdim=True),
        bias=pieces.bias.mean(0, keepdim=True),
        convention=pieces.convention,
    )


def mean_ablate(
    pieces: FirstOrderPieces,
    means: FirstOrderPieces,
    mlp_layers: tuple[int, ...] = (),
    attn_layers: tuple[int, ...] = (),
) -> FirstOrderPieces:
    """Replace the MLPs and attention layers named by their dataset means (no re-forward).

    ``means`` comes from ``mean_pieces`` over a reference set; ``.total()`` of the result is the
    embedding the zero-shot head sees after the ablation.
    """
    mlps, attn = pieces.mlps.clone(), pieces.attn.clone()
    mlp_index, attn_index = list(mlp_layers), list(attn_layers)
    mlps[:, mlp_index] = means.mlps[:, mlp_index].to(mlps)
    attn[:, attn_index] = means.attn[:, attn_index].to(attn)
    return replace(pieces, mlps=mlps, attn=attn)
