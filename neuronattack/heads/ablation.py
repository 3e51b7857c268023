"""Which layers matter: zero-shot accuracy as the direct paths are mean-ablated (paper 1, §3).

Two series from the same traced pass, each a point per number k of attention layers whose direct
path is replaced by its mean over the image set, cumulatively from the first layer:

- ``attention[k]``: MLPs untouched; ``attention[0]`` is the plain accuracy.
- ``attention_and_mlps[k]``: every MLP's direct path mean-ablated too; ``[0]`` is "MLPs only".

Mean-ablating piece x means ``embedding − x + mean(x)``, so a whole curve is cumulative sums of
``mean(x) − x`` over ``Contributions``: no forward pass per point.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor

from neuronattack.heads.contributions import Contributions
from neuronattack.heads.zeroshot import accuracy

SCHEMA = "neuronattack.ablation/1"


@dataclass(frozen=True)
class AblationCurve:
    attention: list[float]  # [layers + 1]  accuracy with attention layers 0..k-1 mean-ablated
    attention_and_mlps: list[float]  # [layers + 1]  the same with every MLP mean-ablated
    images: int
    classes: int

    @property
    def baseline(self) -> float:
        return self.attention[0]

    @property
    def mlps_ablated(self) -> float:
        return self.attention_and_mlps[0]

    def as_dict(self) -> dict:
        return {"schema": SCHEMA, "baseline": self.baseline, "mlps_ablated": self.mlps_ablated,
                **asdict(self)}


def ablated_embeddings(contrib: Contributions, attn_layers: int, mlps: bool) -> Tensor:
    """Embeddings ``[N, out_dim]`` with attention layers ``0..attn_layers-1`` (and, if ``mlps``,
    every MLP) replaced by their means over ``contrib``."""
    embedding = contrib.total()
    if attn_layers:
        attn = contrib.attn[:, :attn_layers]
        embedding = embedding + (attn.mean(0, keepdim=True) - attn).sum(1)
    if mlps:
        embedding = embedding + (contrib.mlps.mean(0, keepdim=True) - contrib.mlps).sum(1)
    return embedding


def ablation_curve(contrib: Contributions, classes: Tensor, labels: Tensor) -> AblationCurve:
    """Both series for ``contrib`` (N images), unit class rows ``[classes, out_dim]`` and class
    indices ``labels [N]``."""
    embedding = contrib.total()
    attn_steps = torch.cumsum(contrib.attn.mean(0, keepdim=True) - contrib.attn, dim=1)
    mlp_step = (contrib.mlps.mean(0, keepdim=True) - contrib.mlps).sum(1)  # [N, out_dim]
    series = {}
    for name, start in (("attention", embedding), ("attention_and_mlps", embedding + mlp_step)):
        points = [start] + [start + attn_steps[:, k] for k in range(attn_steps.shape[1])]
        series[name] = [accuracy(point, classes, labels) for point in points]
    return AblationCurve(**series, images=len(labels), classes=len(classes))


def run_ablate(
    clip, image_set, names_file: Path | None = None, batch_size: int = 64, device="cpu",
    num_workers: int = 0, show_progress: bool = True,
) -> AblationCurve:
    """The curve over a labelled image set (class folders), from one traced pass per batch."""
    from neuronattack.heads.contributions import collect
    from neuronattack.heads.zeroshot import classifier, folder_labels

    class_names, labels = folder_labels(image_set, names_file)
    classes = classifier(clip, class_names, show_progress=show_progress)
    contrib = collect(clip, image_set, batch_size=batch_size, device=device,
                      num_workers=num_workers, show_progress=show_progress)
    return ablation_curve(contrib, classes, labels[contrib.indices])


def write_ablation(curve: AblationCurve, out: Path, title: str = "") -> tuple[Path, Path]:
    """``OUT.json`` (the curve) and ``OUT.png`` (its plot); returns both paths."""
    import matplotlib

    matplotlib.use("Agg")  # files only; never a window
    import matplotlib.pyplot as plt

    from neuronattack.artifacts import versions, write_json

    out = Path(out)
    json_path, png_path = out.with_suffix(".json"), out.with_suffix(".png")
    write_json(json_path, curve.as_dict() | {"title": title, "versions": versions()})
    figure, axes = plt.subplots(figsize=(5, 3.2), dpi=120)
    steps = range(len(curve.attention))
    axes.plot(steps, [100 * a for a in curve.attention], marker="o", label="MLPs kept")
    axes.plot(steps, [100 * a for a in curve.attention_and_mlps], marker="s",
              label="MLPs mean-ablated")
    axes.set_xlabel("attention layers mean-ablated (from the first)")
    axes.set_ylabel("zero-shot accuracy (%)")
    axes.set_ylim(0, 100)
    axes.set_title(title or f"{curve.images:,} images, {curve.classes} classes", fontsize=9)
    axes.legend(fontsize=8)
    axes.grid(alpha=0.3)
    figure.tight_layout()
    png_path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(png_path)
    plt.close(figure)
    return json_path, png_path
