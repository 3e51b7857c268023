"""Direct contributions of an image set, summed over tokens: what every heads tool starts from.

The lens's ``decompose`` gives first-order pieces per layer × token × head in the output space
(centred convention: each piece depends on itself alone, and they sum to the embedding). Every
tool here (ablation curve, TextSpan, head ablation, retrieval) only needs them summed over tokens,
so one traced pass per batch is reduced to ``Contributions`` and the full pieces are dropped: an
ablation is then arithmetic on these sums, never another forward pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
from torch import Tensor, nn

from neuronattack.errors import NeuronAttackError
from neuronattack.lens.first_order import first_order_pieces
from neuronattack.lens.traced_pass import trace
from neuronattack.progress import progress_bar

Head = tuple[int, int]  # (layer, head)


@dataclass(frozen=True)
class Contributions:
    """Token-summed direct contributions of ``N`` images (centred convention, output space).

    ``embed + mlps.sum(1) + attn.sum(1) + bias`` is the image embedding; ``heads`` repeats, per
    head, the part of ``attn`` that belongs to ``head_layers`` (``heads.sum(2) ==
    attn[:, head_layers]``).
    """

    embed: Tensor  # [N, out_dim]  the ln_pre output at CLS
    mlps: Tensor  # [N, layers, out_dim]
    attn: Tensor  # [N, layers, out_dim]  every head and token of the layer
    heads: Tensor  # [N, len(head_layers), heads, out_dim]
    bias: Tensor  # [N, out_dim]
    head_layers: tuple[int, ...]
    indices: Tensor  # [N]  each row's index in the image set (unreadable files are skipped)

    def total(self) -> Tensor:
        """The embedding ``[N, out_dim]``."""
        return self.embed + self.mlps.sum(1) + self.attn.sum(1) + self.bias

    @property
    def heads_per_layer(self) -> int:
        return self.heads.shape[2]

    def head_names(self) -> list[Head]:
        """Every head whose contributions are kept, layer by layer."""
        return [(layer, head) for layer in self.head_layers for head in range(self.heads_per_layer)]

    def head(self, layer: int, head: int) -> Tensor:
        """One head's contributions ``[N, out_dim]``."""
        return self.heads[:, self.layer_slot(layer), head]

    def layer_slot(self, layer: int) -> int:
        if layer not in self.head_layers:
            kept = ", ".join(map(str, self.head_layers))
            raise NeuronAttackError(f"Layer {layer}'s heads were not kept; kept layers: {kept}.")
        return self.head_layers.index(layer)

    def check_head(self, head: Head) -> None:
        self.layer_slot(head[0])
        if not 0 <= head[1] < self.heads_per_layer:
            raise NeuronAttackError(
                f"Head {head[0]}.{head[1]} does not exist: layers have heads "
                f"0..{self.heads_per_layer - 1}."
            )

    def group(self, heads: list[Head]) -> Tensor:
        """The summed contributions ``[N, out_dim]`` of a group of heads."""
        total = torch.zeros_like(self.embed)
        for head in heads:
            self.check_head(head)
            total = total + self.head(*head)
        return total


def contributions(
    visual: nn.Module, pixels: Tensor, head_layers: tuple[int, ...] = (),
    indices: Tensor | None = None,
) -> Contributions:
    """``Contributions`` of one batch ``pixels [batch, 3, H, W]``, from one traced pass.

    The traced pass records every layer × token × head piece in the residual stream (the lens's
    ``decompose``); they are summed over tokens before the map to the output space, which is
    linear in the centred convention (the out-proj bias, shared over tokens × heads, then counts
    once per head), so the output-space pieces are never held per token.
    """
    record = trace(visual, pixels, first_order=True)
    record.attn_cls_pieces = record.attn_cls_pieces.sum(2, keepdim=True)
    pieces = first_order_pieces(visual, record, convention="centred")
    per_head = pieces.attn[:, :, 0]  # [batch, layers, heads, out_dim]
    layers = per_head.shape[1]
    bad = [layer for layer in head_layers if not 0 <= layer < layers]
    if bad:
        raise NeuronAttackError(
            f"Layer(s) {', '.join(map(str, bad))} do not exist; this tower has layers "
            f"0..{layers - 1}."
        )
    return Contributions(
        embed=pieces.embed,
        mlps=pieces.mlps,
        attn=per_head.sum(2),
        heads=per_head[:, list(head_layers)],
        bias=pieces.bias,
        head_layers=tuple(head_layers),
        indices=torch.arange(len(pixels)) if indices is None else indices,
    )


def concatenate(parts: list[Contributions]) -> Contributions:
    """Batches joined along the image axis (same head layers)."""
    first = parts[0]
    return Contributions(
        **{name: torch.cat([getattr(part, name) for part in parts])
           for name in ("embed", "mlps", "attn", "heads", "bias", "indices")},
        head_layers=first.head_layers,
    )


def collect(
    clip, image_set, head_layers: tuple[int, ...] = (), batch_size: int = 64,
    device: str | torch.device = "cpu", num_workers: int = 0, show_progress: bool = True,
    label: str = "tracing",
) -> Contributions:
    """``Contributions`` of every readable image of ``image_set``, float32 on the CPU."""
    from neuronattack.imagesets import iter_batches

    visual = clip.model.visual.to(device)
    parts = []
    columns = (TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with progress_bar(*columns, disable=not show_progress) as bar:
        task = bar.add_task(label, total=len(image_set))
        for batch in iter_batches(image_set, clip.preprocess, batch_size, num_workers=num_workers):
            with torch.no_grad():
                part = contributions(visual, batch.pixels.to(device), head_layers,
                                     torch.as_tensor(batch.indices))
            parts.append(Contributions(
                **{name: getattr(part, name).float().cpu()
                   for name in ("embed", "mlps", "attn", "heads", "bias")},
                head_layers=part.head_layers, indices=part.indices.cpu()))
            bar.update(task, completed=int(batch.indices[-1]) + 1)
    if not parts:
        raise NeuronAttackError(f"None of the images under {image_set.root} could be read.")
    return concatenate(parts)


def last_layers(visual: nn.Module, count: int) -> tuple[int, ...]:
    """The last ``count`` layers of the tower (the heads that matter, paper 1: the last ~4)."""
    layers = len(visual.transformer.resblocks)
    if not 1 <= count <= layers:
        raise NeuronAttackError(f"Choose between 1 and {layers} last layers, not {count}.")
    return tuple(range(layers - count, layers))


def parse_head(name: str) -> Head:
    """``"10.3"`` -> ``(10, 3)``."""
    layer, _, head = name.strip().partition(".")
    if not (layer.isdigit() and head.isdigit()):
        raise NeuronAttackError(f"Name a head as LAYER.HEAD, e.g. 10.3; got {name!r}.")
    return int(layer), int(head)


def head_name(head: Head) -> str:
    return f"{head[0]}.{head[1]}"
