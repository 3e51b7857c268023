"""One forward pass of the image tower that records what the lens needs, and no more.

This is also the answer to "how do I get open_clip's attention weights": the pass re-implements the
block with the model's own modules, computes the CLS query's attention row explicitly next to the
fused attention kernel, and returns a typed record. No hooks are left on the model.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from neuronattack.lens.vit import check_supported, head_maps


@dataclass
class Trace:
    """What one traced pass recorded; dicts are keyed by block index."""

    embedding: Tensor  # [batch, out_dim]  == model.encode_image(images), un-normalised
    residual_cls: Tensor  # [batch, width]  z_L[CLS], the input of ln_post
    ln_post_mean: Tensor  # [batch]
    ln_post_scale: Tensor  # [batch]  sqrt(var + eps), the frozen scale of ln_post at CLS
    attn_cls_rows: dict[int, Tensor] = field(default_factory=dict)  # [batch, heads, tokens]
    ln_1_mean: dict[int, Tensor] = field(default_factory=dict)  # [batch, tokens]
    ln_1_scale: dict[int, Tensor] = field(default_factory=dict)  # [batch, tokens]
    mlp_post: dict[int, Tensor] = field(default_factory=dict)  # [batch, tokens, neurons]
    # First-order pieces in the residual stream, recorded only when asked for.
    embed_cls: Tensor | None = None  # [batch, width]  ln_pre output at CLS
    mlp_cls: Tensor | None = None  # [batch, layers, width]  each MLP's output at CLS (ls_2 applied)
    attn_cls_pieces: Tensor | None = None  # [batch, layers, tokens, heads, width]  no out-proj bias

    def to(self, dtype: torch.dtype) -> Trace:
        """A copy in another dtype: a half-precision pass is analysed in float32."""

        def cast(value):
            if isinstance(value, dict):
                return {key: tensor.to(dtype) for key, tensor in value.items()}
            return value.to(dtype) if isinstance(value, Tensor) else value

        return Trace(**{f.name: cast(getattr(self, f.name)) for f in fields(self)})


def layer_norm_stats(x: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    """Mean and scale ``sqrt(var + eps)`` over channels, as LayerNorm computes them."""
    mean = x.mean(dim=-1)
    var = x.var(dim=-1, unbiased=False)
    return mean, torch.sqrt(var + eps)


@torch.no_grad()
def trace(
    visual: nn.Module,
    images: Tensor,
    mlp_layers: tuple[int, ...] = (),
    attention_from: int | None = None,
    first_order: bool = False,
) -> Trace:
    """Run the tower on ``images [batch, 3, H, W]`` and record the lens's inputs.

    mlp_layers: blocks whose MLP post-activations are kept (the analysed neurons).
    attention_from: first block whose CLS attention rows and ln_1 statistics are kept; defaults to
        the block after the earliest analysed one (the later heads that carry second-order effects).
    first_order: also record the embedding, MLP and per-head-per-token pieces at CLS.
    """
    check_supported(visual)
    blocks = visual.transformer.resblocks
    if attention_from is None:
        attention_from = min(mlp_layers) + 1 if mlp_layers else len(blocks)
    if first_order:
        attention_from = 0
    x = visual._embeds(images.to(visual.conv1.weight.dtype))  # [batch, tokens, width]
    record = Trace(
        embedding=images.new_empty(0),
        residual_cls=images.new_empty(0),
        ln_post_mean=images.new_empty(0),
        ln_post_scale=images.new_empty(0),
    )
    mlp_cls, attn_pieces = [], []
    if first_order:
        record.embed_cls = x[:, 0]
    for index, block in enumerate(blocks):
        x, step = _block(block, x, index >= attention_from, first_order, index in mlp_layers)
        if index >= attention_from:
            record.attn_cls_rows[index] = step["attn_cls_row"]
            record.ln_1_mean[index] = step["ln_1_mean"]
            record.ln_1_scale[index] = step["ln_1_scale"]
        if index in mlp_layers:
            record.mlp_post[index] = step["mlp_post"]
        if first_order:
            mlp_cls.append(step["mlp_cls"])
            attn_pieces.append(step["attn_pieces"])
    if first_order:
        record.mlp_cls = torch.stack(mlp_cls, dim=1)
        record.attn_cls_pieces = torch.stack(attn_pieces, dim=1)
    residual_cls = x[:, 0]  # [batch, width]
    record.residual_cls = residual_cls
    record.ln_post_mean, record.ln_post_scale = layer_norm_stats(residual_cls, visual.ln_post.eps)
    record.embedding = visual.ln_post(residual_cls) @ visual.proj
    return record


def _block(
    block: nn.Module, x: Tensor, want_attention: bool, want_pieces: bool, want_mlp: bool
) -> tuple[Tensor, dict[str, Tensor]]:
    """One residual block, ``x [batch, tokens, width]``; returns the new stream and recordings."""
    attn: nn.MultiheadAttention = block.attn
    batch, tokens, width = x.shape
    heads = attn.num_heads
    head_dim = width // heads
    step: dict[str, Tensor] = {}

    normed = block.ln_1(x)
    qkv = F.linear(normed, attn.in_proj_weight, attn.in_proj_bias)
    q, k, v = (t.reshape(batch, tokens, heads, head_dim).transpose(1, 2) for t in qkv.chunk(3, -1))
    mixed = F.scaled_dot_product_attention(q, k, v)  # [batch, heads, tokens, head_dim]
    attn_out = attn.out_proj(mixed.transpose(1, 2).reshape(batch, tokens, width))
    if want_attention or want_pieces:
        # The CLS row alone, next to the fused kernel: [batch, heads, tokens].
        scores = (q[:, :, :1] @ k.transpose(-1, -2)).squeeze(2) * head_dim**-0.5
        cls_row = scores.softmax(dim=-1)
        step["attn_cls_row"] = cls_row
        step["ln_1_mean"], step["ln_1_scale"] = layer_norm_stats(x, block.ln_1.eps)
        if want_pieces:
            maps = head_maps(block)
            weighted = cls_row[..., None] * v  # [batch, heads, tokens, head_dim]
            step["attn_pieces"] = torch.einsum("bhtc,hdc->bthd", weighted, maps.out_weight)
    x = x + block.ls_1(attn_out)

    post = block.mlp.gelu(block.mlp.c_fc(block.ln_2(x)))  # [batch, tokens, neurons]
    mlp_out = block.ls_2(block.mlp.c_proj(post))
    if want_mlp:
        step["mlp_post"] = post
    if want_pieces:
        step["mlp_cls"] = mlp_out[:, 0]
    return x + mlp_out, step
