"""Splitting an analysis across processes or machines; the merge equals one process, bit for bit.

Three things make the merged statistics independent of how the images were split:

- **The same batches.** Shards own whole batches (image ``i`` is in batch ``i // batch_size``
  whatever the split), so every image goes through the model in the same batch as in a single
  process, and its coordinates, and its batch's sums, come out of the same arithmetic.
- **Sums in a fixed tree.** Floating-point addition is not associative, so a mean summed batch
  by batch in one process differs in its last bits from two half-sums added. :class:`TreeSum`
  adds the per-batch sums (float64) along the binary tree of batch indices: a node is always the
  sum of its two children, whoever computed them, and the leftover nodes are added in order.
- **A total order for top-k.** Each neuron keeps its k images by centred norm, ties going to the
  lower image index (``directions.top_k_order``), so merging any number of top-k lists gives the
  same list as one pass over all images.

:class:`Shard` is which part a process owns: ``--shard I/N`` (job arrays), or the ``RANK`` and
``WORLD_SIZE`` that ``accelerate launch`` (torchrun) sets.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import torch
from torch import Tensor

from neuronattack.errors import NeuronAttackError

_SHARD = re.compile(r"\s*(\d+)\s*/\s*(\d+)\s*")


@dataclass(frozen=True)
class Shard:
    """Process ``index`` of ``count``; shard 0 writes the shared files and does the merge."""

    index: int = 0
    count: int = 1

    @property
    def main(self) -> bool:
        return self.index == 0

    @property
    def name(self) -> str:
        return f"{self.index}-of-{self.count}"

    def batch_range(self, n_images: int, batch_size: int) -> tuple[int, int]:
        """``(start, stop)`` image indices this shard analyses: a run of whole batches.

        Batches are split as evenly as possible; with more shards than batches some shards get
        none (they still take part in the merge).
        """
        batches = -(-n_images // batch_size)
        first = batches * self.index // self.count
        last = batches * (self.index + 1) // self.count
        return min(first * batch_size, n_images), min(last * batch_size, n_images)


UNSHARDED = Shard()


def parse_shard(text: str) -> Shard:
    """``"I/N"`` with ``0 <= I < N``, as ``--shard`` takes it."""
    match = _SHARD.fullmatch(text)
    if match is None:
        raise NeuronAttackError(
            f"--shard {text!r} is not of the form I/N; write e.g. --shard 0/4 for the first of "
            "four shards (I counts from 0, as SLURM_ARRAY_TASK_ID does)."
        )
    index, count = int(match[1]), int(match[2])
    if count < 1 or not 0 <= index < count:
        raise NeuronAttackError(
            f"--shard {text}: the shard number must be 0..{max(count - 1, 0)} of N >= 1 shards."
        )
    return Shard(index, count)


def launched_shard() -> Shard:
    """This process' shard under ``accelerate launch`` or torchrun (``RANK`` of ``WORLD_SIZE``)."""
    count = int(os.environ.get("WORLD_SIZE", "1"))
    return Shard(int(os.environ.get("RANK", "0")), count) if count > 1 else Shard()


def launched_device(device: str) -> str:
    """``auto`` under a multi-GPU launch means this process' own GPU (``LOCAL_RANK``)."""
    if device == "auto" and int(os.environ.get("WORLD_SIZE", "1")) > 1 and \
            torch.cuda.is_available():
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return device


class TreeSum:
    """A sum of named float64 tensors given per position (batch index), fixed by the positions.

    Node ``(level, i)`` covers positions ``[i * 2**level, (i + 1) * 2**level)`` and is the sum
    left child + right child. Nodes combine as soon as both halves exist, so each process only
    holds the O(log n) nodes along the edges of its range; :meth:`merge` takes another process'
    nodes, and :meth:`total` adds what is left in position order. Every addition is therefore
    the same whichever process made it, and so is the result.
    """

    def __init__(self) -> None:
        self.nodes: dict[tuple[int, int], dict[str, Tensor]] = {}

    def add(self, position: int, values: dict[str, Tensor]) -> None:
        self._insert(0, position, {name: value.double() for name, value in values.items()})

    def merge(self, other: TreeSum) -> None:
        for (level, index), values in sorted(other.nodes.items()):
            self._insert(level, index, values)

    def total(self) -> dict[str, Tensor] | None:
        """The sum over every position added so far; None when nothing was added."""
        total = None
        for _, values in sorted(self.nodes.items(), key=lambda item: item[0][1] << item[0][0]):
            total = values if total is None else {name: total[name] + values[name]
                                                  for name in total}
        return total

    def _insert(self, level: int, index: int, values: dict[str, Tensor]) -> None:
        if (level, index) in self.nodes:
            raise ValueError(f"position block {(level, index)} was added twice")
        while (level, index ^ 1) in self.nodes:
            sibling = self.nodes.pop((level, index ^ 1))
            left, right = (sibling, values) if index & 1 else (values, sibling)
            values = {name: left[name] + right[name] for name in left}
            level, index = level + 1, index >> 1
        self.nodes[(level, index)] = values

    def state_dict(self) -> dict[str, Tensor]:
        """``{"L.I.name": tensor}``; the node keys travel in the names."""
        return {f"{level}.{index}.{name}": tensor.cpu()
                for (level, index), values in self.nodes.items()
                for name, tensor in values.items()}

    @classmethod
    def from_state_dict(cls, state: dict[str, Tensor]) -> TreeSum:
        tree = cls()
        for key, tensor in state.items():
            level, index, name = key.split(".", 2)
            tree.nodes.setdefault((int(level), int(index)), {})[name] = tensor.double()
        return tree
