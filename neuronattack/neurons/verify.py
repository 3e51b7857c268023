"""Does the atlas say what the model does? Zero-shot accuracy with a block's second-order effects
mean-ablated, or replaced by their rank-one or word reconstructions (method.md §4–5).

For neuron n of an analysed block, with mean effect μ_n and unit direction r_n:
- mean-ablated:  φ_n(I) → μ_n
- rank-one:      φ_n(I) → μ_n + ((φ_n(I) − μ_n) · r_n) r_n
- words:         the same with r_n replaced by its normalised word reconstruction w_n
and the embedding becomes ``rep − Σ_n φ_n + Σ_n φ̂_n``. All three are linear in the neuron
coordinates, so each is one contraction per batch (no ``[batch, neurons, out_dim]``):
``Σ_n (φ_n · r_n) r_n = Σ_n (coords_n · (U_n r_n)) r_n``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from neuronattack.errors import NeuronAttackError
from neuronattack.lens.neuron_effects import EffectBasis, effect_basis, effect_coords
from neuronattack.lens.traced_pass import Trace

MODES = ("baseline", "mean-ablated", "rank-one", "words")


@dataclass(frozen=True)
class Replacement:
    """Image-independent terms for one block (centred convention)."""

    basis: EffectBasis
    directions: dict[str, Tensor]  # mode -> [neurons, out_dim] unit directions
    reads: dict[str, Tensor]  # mode -> [neurons, K]  U_n r_n
    total_mean: Tensor  # [out_dim]  Σ_n μ_n
    projected_means: dict[str, Tensor]  # mode -> [out_dim]  Σ_n (μ_n · r_n) r_n


def replacement(
    visual: nn.Module, layer: int, neurons: Tensor, mean_effect: Tensor, rank_one: Tensor,
    words: Tensor,
) -> Replacement:
    """mean_effect, rank_one, words: ``[neurons, out_dim]`` from the atlas (centred convention)."""
    basis = effect_basis(visual, layer, neurons, convention="centred")
    directions = {"rank-one": rank_one, "words": words}
    return Replacement(
        basis=basis,
        directions=directions,
        reads={mode: torch.einsum("nkd,nd->nk", basis.neuron_basis, r)
               for mode, r in directions.items()},
        total_mean=mean_effect.sum(0),
        projected_means={mode: ((mean_effect * r).sum(1, keepdim=True) * r).sum(0)
                         for mode, r in directions.items()},
    )


def replaced_embeddings(record: Trace, replacements: dict[int, Replacement]) -> dict:
    """``{(mode, scope): embeddings [batch, out_dim]}``, scope a block index or ``"all"``.

    ``"all"`` replaces every block in ``replacements`` at once (their changes add up).
    """
    embedding = record.embedding
    changes: dict[tuple[str, int], Tensor] = {}
    for layer, terms in replacements.items():
        coords, _ = effect_coords(record, terms.basis)  # [batch, neurons, K]
        total = torch.einsum("bnk,nkd->bd", coords, terms.basis.neuron_basis)
        ablated = terms.total_mean - total
        changes[("mean-ablated", layer)] = ablated
        for mode, direction in terms.directions.items():
            along = torch.einsum("bnk,nk->bn", coords, terms.reads[mode]) @ direction
            changes[(mode, layer)] = ablated + along - terms.projected_means[mode]
    result = {("baseline", scope): embedding for scope in (*replacements, "all")}
    for mode in MODES[1:]:
        for layer in replacements:
            result[(mode, layer)] = embedding + changes[(mode, layer)]
        result[(mode, "all")] = embedding + sum(changes[(mode, layer)] for layer in replacements)
    return result


def correct_counts(embeddings: dict, class_embeddings: Tensor, labels: Tensor) -> dict:
    """Top-1 hits per ``(mode, scope)``: class_embeddings ``[classes, out_dim]`` unit rows."""
    return {key: int(((value / value.norm(dim=-1, keepdim=True)) @ class_embeddings.T)
                     .argmax(-1).eq(labels).sum())
            for key, value in embeddings.items()}


def atlas_replacements(visual: nn.Module, atlas) -> dict[int, Replacement]:
    """One ``Replacement`` per block of a centred-convention ``Atlas``."""
    if atlas.convention != "centred":
        raise NeuronAttackError(
            "verify needs an atlas analysed in the centred convention (its mean effects are in "
            "embedding units); rerun `neuronattack analyze` without --convention reference."
        )
    device = visual.proj.device
    return {
        layer: replacement(visual, layer, fit.neurons.to(device), fit.mean_effect.to(device),
                           fit.direction.to(device), atlas.codes[layer].word_direction.to(device))
        for layer, fit in atlas.directions.items()
    }


def verify(
    clip, atlas, image_set, class_names: list[str], batch_size: int = 64, device: str = "cpu",
    num_workers: int = 0, show_progress: bool = True,
) -> dict:
    """Zero-shot accuracy per ``(mode, scope)`` over a labelled image set.

    ``class_names`` follows ``image_set.classes``. Returns ``{"images": n, "classes": c,
    "accuracy": {mode: {scope: fraction}}}`` with scope a block index (as a string) or ``"all"``.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn

    from neuronattack.imagesets import iter_batches
    from neuronattack.lens.traced_pass import trace
    from neuronattack.models.zeroshot import class_embeddings, judge_templates
    from neuronattack.progress import progress_bar

    visual = clip.model.visual.to(device)
    replacements = atlas_replacements(visual, atlas)
    classes = class_embeddings(clip, class_names, judge_templates(clip),
                               show_progress=show_progress).to(device)
    label_index = {label: i for i, label in enumerate(image_set.classes)}
    labels = torch.tensor([label_index[label] for label in image_set.labels])
    totals: dict = {}
    seen = 0
    columns = (TextColumn("verify"), BarColumn(), MofNCompleteColumn())
    with progress_bar(*columns, disable=not show_progress) as bar:
        task = bar.add_task("verify", total=len(image_set))
        for batch in iter_batches(image_set, clip.preprocess, batch_size, num_workers=num_workers):
            with torch.no_grad():
                record = trace(visual, batch.pixels.to(device), mlp_layers=tuple(replacements))
                counts = correct_counts(replaced_embeddings(record, replacements), classes,
                                        labels[batch.indices].to(device))
            for key, value in counts.items():
                totals[key] = totals.get(key, 0) + value
            seen += len(batch)
            bar.update(task, completed=int(batch.indices[-1]) + 1)
    if seen == 0:
        raise NeuronAttackError(f"None of the images under {image_set.root} could be read.")
    accuracy: dict = {}
    for (mode, scope), correct in totals.items():
        accuracy.setdefault(mode, {})[str(scope)] = correct / seen
    return {"images": seen, "classes": len(class_names), "accuracy": accuracy}
