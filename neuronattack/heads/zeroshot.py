"""Zero-shot classification of decomposed embeddings: the yardstick of every heads tool."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from neuronattack.errors import NeuronAttackError


def classifier(clip, class_names: Sequence[str], show_progress: bool = False) -> Tensor:
    """Unit class rows ``[classes, out_dim]`` with the templates the attack's judge uses (the
    toy CLIP's own for the toy CLIP, OpenAI's 80 otherwise), so accuracies agree across tools."""
    from neuronattack.models.zeroshot import class_embeddings, judge_templates

    return class_embeddings(clip, list(class_names), judge_templates(clip),
                            show_progress=show_progress)


def predict(embeddings: Tensor, classes: Tensor) -> Tensor:
    """Class indices ``[N]`` for embeddings ``[N, out_dim]`` (normalised here) and unit class rows
    ``[classes, out_dim]``."""
    unit = torch.nn.functional.normalize(embeddings.float(), dim=-1)
    return (unit @ classes.float().T).argmax(-1)


def accuracy(embeddings: Tensor, classes: Tensor, labels: Tensor) -> float:
    """Top-1 accuracy in [0, 1]; labels ``[N]`` are class indices."""
    return float((predict(embeddings, classes) == labels).float().mean())


def folder_labels(image_set, names_file=None) -> tuple[list[str], Tensor]:
    """Class names (in ``image_set.classes`` order) and each image's class index ``[images]``."""
    from neuronattack.models.zeroshot import resolve_class_names

    if not image_set.classes or any(label is None for label in image_set.labels):
        raise NeuronAttackError(
            f"{image_set.root} is not laid out in class folders; zero-shot accuracy needs one "
            "folder per class (ROOT/CLASS/IMAGE)."
        )
    index = {label: i for i, label in enumerate(image_set.classes)}
    labels = torch.tensor([index[label] for label in image_set.labels])
    return resolve_class_names(image_set.classes, names_file), labels
