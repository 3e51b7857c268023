"""The open_clip ViT image tower read as matrices, so the lens can do algebra with its weights.

open_clip block: ``x = x + ls_1(attn(ln_1(x)))``, ``x = x + ls_2(mlp(ln_2(x)))``, with
``attn = nn.MultiheadAttention`` and ``mlp = c_fc -> act -> c_proj``. LayerScale (``ls_*``) is
folded into the matrices here so that no other module has to remember it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from neuronattack.errors import NeuronAttackError

# How ln_post's bias and mean, which belong to no single piece, are attributed (method.md §1);
# the maps below and every effect basis are built for one of them:
# - ``centred``: β_post·P is a piece of its own and each piece is centred, so a piece's value
#   depends on that piece alone, and the pieces sum to the embedding;
# - ``reference`` (the papers' code): mean and bias are shared equally over the pieces, and
#   everything is divided by ‖rep‖.
CONVENTIONS = ("centred", "reference")


def check_convention(convention: str) -> None:
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {CONVENTIONS}, not {convention!r}")


@dataclass(frozen=True)
class LayerNormParams:
    weight: Tensor  # [width]
    bias: Tensor  # [width]
    eps: float


@dataclass(frozen=True)
class HeadMaps:
    """Per-head value and output maps of one attention block, LayerScale folded into the output."""

    value_weight: Tensor  # [heads, head_dim, width]
    value_bias: Tensor  # [heads, head_dim]
    out_weight: Tensor  # [heads, width, head_dim]  (ls_1 applied)
    out_bias: Tensor  # [width]  (ls_1 applied; shared by all heads)


def check_supported(visual: nn.Module) -> None:
    """Refuse towers whose output is not the CLS token of a plain open_clip ViT.

    The decompositions assume the pooled embedding is ``ln_post(z_L[CLS]) @ proj``; attention
    pooling and average pooling mix tokens after the last block and would need other algebra.
    """
    name = type(visual).__name__
    if name != "VisionTransformer" or not hasattr(visual, "transformer"):
        raise NeuronAttackError(
            f"The image tower is a {name}; neuronattack decomposes only open_clip ViT towers "
            "(e.g. ViT-B-32, ViT-L-14)."
        )
    if getattr(visual, "attn_pool", None) is not None:
        raise NeuronAttackError(
            "This ViT pools with attention (CoCa-style attn_pool); only CLS-token pooling is "
            "decomposed for now."
        )
    if getattr(visual, "pool_type", "tok") != "tok":
        raise NeuronAttackError(
            f"This ViT pools by '{visual.pool_type}' (e.g. SigLIP-style average pooling); only "
            "CLS-token pooling is decomposed for now."
        )
    if visual.proj is None:
        raise NeuronAttackError("This ViT has no output projection (`visual.proj` is None).")
    for index, block in enumerate(visual.transformer.resblocks):
        if not isinstance(getattr(block, "attn", None), nn.MultiheadAttention):
            raise NeuronAttackError(
                f"Block {index} uses a custom attention ({type(block).__name__}: scaled-cosine or "
                "head-scaled attention); only open_clip's standard blocks are decomposed."
            )
        if not isinstance(block.ln_1, nn.LayerNorm) or not isinstance(block.ln_2, nn.LayerNorm):
            raise NeuronAttackError(
                f"Block {index} does not use LayerNorm; it cannot be linearised."
            )
    if not isinstance(visual.ln_post, nn.LayerNorm):
        raise NeuronAttackError("The tower's ln_post is not a LayerNorm; it cannot be linearised.")


def layer_norm_params(norm: nn.LayerNorm) -> LayerNormParams:
    width = norm.normalized_shape[0]
    like = next(iter(norm.parameters()), None)
    weight = norm.weight if norm.weight is not None else torch.ones(width, dtype=like.dtype)
    bias = norm.bias if norm.bias is not None else torch.zeros_like(weight)
    return LayerNormParams(weight.detach(), bias.detach(), float(norm.eps))


def layer_scale(module: nn.Module, like: Tensor) -> Tensor:
    """The per-channel gain of an ``ls_*`` slot: LayerScale's gamma, or ones for nn.Identity."""
    gamma = getattr(module, "gamma", None)
    return gamma.detach() if gamma is not None else torch.ones_like(like)


def head_maps(block: nn.Module) -> HeadMaps:
    attn: nn.MultiheadAttention = block.attn
    heads, width = attn.num_heads, attn.embed_dim
    head_dim = width // heads
    _, _, value_weight = attn.in_proj_weight.detach().chunk(3, dim=0)  # [width, width]
    _, _, value_bias = attn.in_proj_bias.detach().chunk(3, dim=0)  # [width]
    gain = layer_scale(block.ls_1, value_bias)  # [width]
    out_weight = gain[:, None] * attn.out_proj.weight.detach()  # [width, width]
    return HeadMaps(
        value_weight=value_weight.reshape(heads, head_dim, width),
        value_bias=value_bias.reshape(heads, head_dim),
        out_weight=out_weight.reshape(width, heads, head_dim).permute(1, 0, 2),
        out_bias=gain * attn.out_proj.bias.detach(),
    )


def neuron_writes(block: nn.Module) -> tuple[Tensor, Tensor]:
    """What each MLP neuron adds to the residual stream per unit of activation.

    Returns ``(writes [neurons, width], bias [width])``: column n of ``c_proj`` and its bias, with
    ls_2 applied.
    """
    c_proj: nn.Linear = block.mlp.c_proj
    gain = layer_scale(block.ls_2, c_proj.bias)
    return (c_proj.weight.detach() * gain[:, None]).T, gain * c_proj.bias.detach()


def centre(x: Tensor) -> Tensor:
    """Subtract the mean over the last (channel) axis: the linear part of a LayerNorm."""
    return x - x.mean(dim=-1, keepdim=True)
