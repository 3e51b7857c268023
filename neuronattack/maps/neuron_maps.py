"""Neuron-based maps (the second paper): where the neurons that write a class fire.

Neurons are chosen from the atlas: those whose word decomposition names the class with a positive
coefficient, strongest first, or (the papers' code) those whose direction is most aligned with the
class embedding. Two maps of them:

- ``effect`` (ours, exact): each token's share of the chosen neurons' second-order effects,
  projected on a direction. Neuron n at token t reaches the output through every later head k as
  ``A_k[0,t] p_{t,n} / σ_k,t · u_{n,k} / σ_post`` (method.md §3), so per token

      map[t] = Σ_n Σ_k  A_k[0,t] p_{t,n} / σ_k,t · (u_{n,k} · d) / σ_post

  and the patch values plus the CLS token's share sum to ``Σ_n φ_n · d`` exactly.
- ``activation`` (the papers' code): the mean post-activation ``p_{t,n}`` of the chosen neurons.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from neuronattack.errors import NeuronAttackError
from neuronattack.lens.neuron_effects import effect_basis
from neuronattack.lens.traced_pass import Trace
from neuronattack.maps.patches import PatchMap

NeuronChoice = Literal["words", "direction"]
DEFAULT_NEURONS = 100  # the papers' code averages the top 200 of ViT-B-32's 9,216 analysed ones


@dataclass(frozen=True)
class ClassNeurons:
    """Neurons that write a class: per block, MLP indices and their word coefficients."""

    word: str
    neurons: dict[int, Tensor]  # block -> [n] MLP indices
    coefficients: dict[int, Tensor]  # block -> [n]

    @property
    def count(self) -> int:
        return sum(len(indices) for indices in self.neurons.values())


def class_neurons(atlas, word: str, count: int = DEFAULT_NEURONS, by: NeuronChoice = "words",
                  class_embedding: Tensor | None = None) -> ClassNeurons:
    """The ``count`` neurons of the atlas that write the class ``word``.

    ``by="words"``: whose word decomposition names ``word``, largest positive coefficient first
    (may be fewer than ``count``; none is a one-line error). ``by="direction"`` (the papers'
    code): largest ``|r_n · class_embedding|`` over every analysed neuron; the weights are those
    dot products. ``atlas`` is a :class:`neuronattack.neurons.atlas.Atlas`.
    """
    if by == "direction":
        if class_embedding is None:
            raise ValueError("by='direction' needs the class embedding")
        scored = [(layer, fit.neurons, fit.direction.float() @ class_embedding.float().cpu())
                  for layer, fit in atlas.directions.items()]
        flat = torch.cat([scores for _, _, scores in scored])
        top = set(flat.abs().argsort(descending=True)[:count].tolist())
        hits, offset = [], 0
        for layer, neurons, scores in scored:
            hits += [(layer, int(neurons[i]), float(scores[i]), 0) for i in range(len(neurons))
                     if offset + i in top]
            offset += len(neurons)
    else:
        hits = [hit for hit in atlas.search(word) if hit[2] > 0][:count]
    if not hits:
        raise NeuronAttackError(
            f"No neuron of the atlas names '{word}' with a positive coefficient, so there is no "
            "word-chosen neuron map for it; choose neurons by direction, or use the text map."
        )
    neurons: dict[int, list[int]] = {}
    coefficients: dict[int, list[float]] = {}
    for layer, neuron, coefficient, _rank in hits:
        neurons.setdefault(layer, []).append(neuron)
        coefficients.setdefault(layer, []).append(coefficient)
    return ClassNeurons(word, {layer: torch.tensor(v) for layer, v in neurons.items()},
                        {layer: torch.tensor(v) for layer, v in coefficients.items()})


def neuron_effect_map(visual: nn.Module, record: Trace, chosen: ClassNeurons, direction: Tensor,
                      grid: tuple[int, int]) -> PatchMap:
    """Per-token second-order effects of the chosen neurons projected on ``direction [out_dim]``
    (centred convention). ``record`` must hold their blocks' MLP activations and the CLS rows and
    ln_1 scales of every later block (``trace(..., mlp_layers=blocks)`` or ``first_order=True``).

    ``score`` is ``Σ_n φ_n · direction``; ``rest`` the CLS token's share of it.
    """
    per_token = 0.0
    for layer, neurons in chosen.neurons.items():
        basis = effect_basis(visual, layer, neurons)  # neuron_basis [n, K, out_dim]
        weights = basis.neuron_basis @ direction.to(basis.neuron_basis)  # [n, K]
        later = sorted({block for block, _ in basis.later_heads})
        read = torch.cat([record.attn_cls_rows[b] / record.ln_1_scale[b][:, None, :]
                          for b in later], dim=1)  # [batch, K, tokens]
        post = record.mlp_post[layer][..., neurons]  # [batch, tokens, n]
        per_token = per_token + torch.einsum("bkt,btn,nk->bt", read, post, weights)
    per_token = per_token / record.ln_post_scale[:, None]  # [batch, tokens]
    return PatchMap(per_token[:, 1:].reshape(-1, *grid), per_token[:, 0], per_token.sum(1),
                    tuple(sorted(chosen.neurons)))


def neuron_activation_map(record: Trace, chosen: ClassNeurons, grid: tuple[int, int]) -> Tensor:
    """The papers' map: mean post-activation of the chosen neurons per patch,
    ``[batch, grid_h, grid_w]``."""
    columns = [record.mlp_post[layer][..., neurons] for layer, neurons in chosen.neurons.items()]
    return torch.cat(columns, dim=-1)[:, 1:].mean(-1).reshape(-1, *grid)
