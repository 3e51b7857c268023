"""Removing a shortcut by head ablation (paper 1, §4.3: Waterbirds): mean-ablate the heads that
carry a spurious cue and see whether the worst group's accuracy rises.

A grouped set is a CSV with the columns ``image,label,group``: an image path (relative to the
CSV's folder, or absolute), its class name, and its group (e.g. ``landbird on water``). Accuracy
is zero-shot over the CSV's classes. The comparison that makes a rise mean something: ablating as
many heads drawn at random from the same layers, several times.
"""

from __future__ import annotations

import csv
import random
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor

from neuronattack.errors import NeuronAttackError
from neuronattack.heads.contributions import Contributions, Head, head_name
from neuronattack.heads.textspan import heads_mean_ablated
from neuronattack.heads.zeroshot import predict

SCHEMA = "neuronattack.debias/1"
COLUMNS = ("image", "label", "group")


@dataclass(frozen=True)
class GroupedSet:
    image_set: object  # ImageSet whose labels are the CSV's class names
    groups: tuple[str, ...]  # one per image
    class_names: tuple[str, ...]  # sorted unique labels: the zero-shot classes

    def labels(self) -> Tensor:
        """Class indices ``[images]``."""
        index = {name: i for i, name in enumerate(self.class_names)}
        return torch.tensor([index[label] for label in self.image_set.labels])


def read_grouped_csv(path: Path) -> GroupedSet:
    """The images, class names and groups of a grouped CSV (format in the module docstring)."""
    from neuronattack.imagesets import ImageSet

    path = Path(path)
    if not path.is_file():
        raise NeuronAttackError(f"The grouped set {path} does not exist; give a CSV with the "
                                "columns image,label,group.")
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        missing = [column for column in COLUMNS if column not in (reader.fieldnames or [])]
        if missing:
            raise NeuronAttackError(f"{path} lacks the column(s) {', '.join(missing)}; its first "
                                    "line must name image,label,group.")
        rows = list(reader)
    if not rows:
        raise NeuronAttackError(f"{path} lists no images.")
    root = path.parent
    paths, labels, groups, sizes = [], [], [], []
    for number, row in enumerate(rows, start=2):
        image = Path(row["image"])
        full = image if image.is_absolute() else root / image
        if not full.is_file():
            raise NeuronAttackError(f"{path} line {number}: the image {row['image']} does not "
                                    f"exist (paths are relative to {root}).")
        if not row["label"].strip() or not row["group"].strip():
            raise NeuronAttackError(f"{path} line {number}: label and group must not be empty.")
        paths.append(str(full.relative_to(root)) if not image.is_absolute() else str(full))
        labels.append(row["label"].strip())
        groups.append(row["group"].strip())
        sizes.append(full.stat().st_size)
    image_set = ImageSet(root=root, paths=tuple(paths), labels=tuple(labels), sizes=tuple(sizes))
    return GroupedSet(image_set, tuple(groups), tuple(sorted(set(labels))))


@dataclass(frozen=True)
class GroupAccuracy:
    groups: dict[str, float]  # accuracy per group
    worst_group: str
    worst: float
    average: float  # over images
    group_mean: float  # mean of the group accuracies

    @classmethod
    def of(cls, correct: Tensor, groups: tuple[str, ...]) -> GroupAccuracy:
        """``correct [N]`` booleans, ``groups`` one name per image."""
        names = sorted(set(groups))
        per_group = {}
        for name in names:
            rows = torch.tensor([g == name for g in groups])
            per_group[name] = float(correct[rows].float().mean())
        worst = min(names, key=lambda name: (per_group[name], name))
        return cls(per_group, worst, per_group[worst], float(correct.float().mean()),
                   sum(per_group.values()) / len(per_group))


def group_accuracy(embeddings: Tensor, classes: Tensor, labels: Tensor,
                   groups: tuple[str, ...]) -> GroupAccuracy:
    return GroupAccuracy.of(predict(embeddings, classes) == labels, groups)


@dataclass(frozen=True)
class DebiasReport:
    heads: list[str]
    before: GroupAccuracy
    after: GroupAccuracy
    random_heads: list[list[str]]  # one draw per row
    random_worst: list[float]
    random_average: list[float]
    images: int
    classes: int

    @staticmethod
    def interval(values: list[float]) -> tuple[float, float]:
        """The central 95% of the random draws (min and max when there are fewer than 40)."""
        ordered = sorted(values)
        if len(ordered) < 40:
            return ordered[0], ordered[-1]
        return ordered[int(0.025 * len(ordered))], ordered[int(0.975 * len(ordered)) - 1]

    def as_dict(self) -> dict:
        worst_low, worst_high = self.interval(self.random_worst)
        avg_low, avg_high = self.interval(self.random_average)
        return {
            "schema": SCHEMA, "heads": self.heads, "images": self.images,
            "classes": self.classes, "before": asdict(self.before), "after": asdict(self.after),
            "worst_group_change": self.after.worst - self.before.worst,
            "average_change": self.after.average - self.before.average,
            "random": {"draws": len(self.random_worst), "heads": self.random_heads,
                       "worst": self.random_worst, "average": self.random_average,
                       "worst_interval": [worst_low, worst_high],
                       "average_interval": [avg_low, avg_high]},
            "beats_random": self.after.worst > worst_high,
        }


def debias(
    contrib: Contributions, classes: Tensor, labels: Tensor, groups: tuple[str, ...],
    heads: list[Head], candidates: list[Head] | None = None, draws: int = 20, seed: int = 0,
) -> DebiasReport:
    """Group accuracies before and after mean-ablating ``heads``, and after ablating as many
    random heads from ``candidates`` (default: every head ``contrib`` keeps) in each of ``draws``
    seeded draws."""
    if not heads:
        raise NeuronAttackError("No heads to ablate; name some with --heads or choose a role "
                                "that matches at least one head.")
    for head in heads:
        contrib.check_head(head)
    candidates = contrib.head_names() if candidates is None else candidates
    if len(candidates) < len(heads):
        raise NeuronAttackError(f"Cannot draw {len(heads)} random heads from {len(candidates)}.")
    rng = random.Random(seed)
    random_sets = [sorted(rng.sample(candidates, len(heads))) for _ in range(draws)]
    before = group_accuracy(contrib.total(), classes, labels, groups)
    after = group_accuracy(heads_mean_ablated(contrib, heads), classes, labels, groups)
    random_results = [group_accuracy(heads_mean_ablated(contrib, chosen), classes, labels, groups)
                      for chosen in random_sets]
    return DebiasReport(
        heads=[head_name(head) for head in heads], before=before, after=after,
        random_heads=[[head_name(head) for head in chosen] for chosen in random_sets],
        random_worst=[result.worst for result in random_results],
        random_average=[result.average for result in random_results],
        images=len(labels), classes=len(classes),
    )


def run_debias(
    clip, grouped: GroupedSet, heads: list[Head], layers: tuple[int, ...], draws: int = 20,
    seed: int = 0, batch_size: int = 64, device="cpu", show_progress: bool = True,
) -> DebiasReport:
    """``debias`` on a grouped CSV's images; random heads come from ``layers``."""
    from neuronattack.heads.contributions import collect
    from neuronattack.heads.zeroshot import classifier

    needed = tuple(sorted(set(layers) | {layer for layer, _ in heads}))
    classes = classifier(clip, grouped.class_names, show_progress=show_progress)
    contrib = collect(clip, grouped.image_set, needed, batch_size, device,
                      show_progress=show_progress)
    if len(contrib.indices) != len(grouped.groups):
        raise NeuronAttackError(f"{len(grouped.groups) - len(contrib.indices)} image(s) of the "
                                "grouped set could not be read; fix or remove them.")
    candidates = [(layer, head) for layer in layers for head in range(contrib.heads_per_layer)]
    return debias(contrib, classes, grouped.labels(), grouped.groups, heads, candidates, draws,
                  seed)
