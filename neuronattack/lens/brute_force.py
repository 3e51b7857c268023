"""The slow, obvious second-order formula: one image, one later head at a time, every neuron's write
pushed through explicitly, as the papers' code does it.

Kept in the package (not only in tests) so the benchmark and users can check the fast path against
it. It shares no algebra with ``second_order.py``: weights are read straight from the modules.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from neuronattack.lens.traced_pass import trace

REFERENCE_COEFFICIENT = 100.0


def _gain(slot: nn.Module, width: int, like: Tensor) -> Tensor:
    gamma = getattr(slot, "gamma", None)
    return gamma.detach() if gamma is not None else torch.ones(width, dtype=like.dtype)


@torch.no_grad()
def second_order_brute_force(
    visual: nn.Module,
    images: Tensor,
    layer: int,
    neurons: Tensor | None = None,
    convention: str = "centred",
) -> Tensor:
    """φ ``[batch, neurons, out_dim]`` by the explicit formula of method.md §3."""
    blocks = visual.transformer.resblocks
    record = trace(visual, images, mlp_layers=(layer,))
    source = blocks[layer]
    width = source.mlp.c_proj.weight.shape[0]
    mlp_width = source.mlp.c_proj.weight.shape[1]
    if neurons is None:
        neurons = torch.arange(mlp_width)
    ls_2 = _gain(source.ls_2, width, source.mlp.c_proj.weight)
    writes = (source.mlp.c_proj.weight.detach() * ls_2[:, None]).T[neurons]  # [neurons, width]
    write_bias = ls_2 * source.mlp.c_proj.bias.detach()
    gamma_post, beta_post = visual.ln_post.weight.detach(), visual.ln_post.bias.detach()
    proj = visual.proj.detach()
    n_blocks = len(blocks)
    results = []
    for i in range(images.shape[0]):
        activations = record.mlp_post[layer][i][:, neurons]  # [tokens, neurons]
        sigma_post, mu_post = record.ln_post_scale[i], record.ln_post_mean[i]
        total = torch.zeros(len(neurons), proj.shape[1], dtype=proj.dtype)
        for later in range(layer + 1, n_blocks):
            block = blocks[later]
            attn = block.attn
            heads, head_dim = attn.num_heads, width // attn.num_heads
            w_v = attn.in_proj_weight.detach()[2 * width:]
            b_v = attn.in_proj_bias.detach()[2 * width:]
            ls_1 = _gain(block.ls_1, width, w_v)
            w_o = attn.out_proj.weight.detach() * ls_1[:, None]
            b_o = attn.out_proj.bias.detach() * ls_1
            gamma_1, beta_1 = block.ln_1.weight.detach(), block.ln_1.bias.detach()
            row = record.attn_cls_rows[later][i]  # [heads, tokens]
            sigma = record.ln_1_scale[later][i]  # [tokens]
            mu = record.ln_1_mean[later][i]  # [tokens]
            shares_in = (2 * later + 1) * mlp_width
            shares_out = shares_in * (2 * n_blocks + 1) * heads
            for h in range(heads):
                cols = slice(h * head_dim, (h + 1) * head_dim)
                # Every neuron's write at every token: [tokens, neurons, width].
                written = activations[..., None] * writes[None]
                if convention == "centred":
                    written = written - written.mean(-1, keepdim=True)
                    normed = gamma_1 * written / sigma[:, None, None]
                    values = normed @ w_v[cols].T
                else:
                    written = written + write_bias / mlp_width
                    normed = gamma_1 * (written - mu[:, None, None] / shares_in)
                    normed = normed / sigma[:, None, None] + beta_1 / shares_in
                    values = normed @ w_v[cols].T + b_v[cols] / shares_in
                read = torch.einsum("t,tnc->nc", row[h], values)  # [neurons, head_dim]
                out = read @ w_o[:, cols].T  # [neurons, width]
                if convention == "centred":
                    out = out - out.mean(-1, keepdim=True)
                    total += (gamma_post * out / sigma_post) @ proj
                else:
                    out = out + b_o / (shares_in * heads)
                    mapped = gamma_post * (out - mu_post / shares_out) / sigma_post
                    total += (mapped + beta_post / shares_out) @ proj
        if convention == "reference":
            total = total * REFERENCE_COEFFICIENT / record.embedding[i].norm()
        results.append(total)
    return torch.stack(results)
