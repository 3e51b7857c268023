"""``neuronattack segment``: zero-shot segmentation from maps, scored against masks.

Each map kind gives one value per patch for the image's class; it is upsampled bilinearly to the
model's input resolution, negative values are set to 0 (they speak against the class), the map is
scaled to [0, 1] per image and thresholded at its mean (the first paper's protocol; a constant map
predicts no foreground). Scores, as in both papers' code: pixel accuracy and mIoU (foreground and
background IoU, each summed over the whole set, then averaged), and AP per image over both
channels (foreground scored by the map, background by one minus it), averaged over images.

Map kinds: ``text`` (patch contributions on the class embedding minus the class set's mean),
``neurons`` (the per-token second-order effects of the neurons whose atlas words name the class,
on the same direction; a class no neuron names gets no map, and is listed) and
``neuron-activations`` (the second paper's code: mean activation of the neurons whose directions
best match the class embedding), and the baselines ``attention`` (last block's CLS attention,
mean over heads) and ``uniform``.

Folder format for your own masks (what ``segment DATA`` reads)::

    DATA/images/NAME.(png|jpg|jpeg|webp|bmp)   any size
    DATA/masks/NAME.png                        same size; foreground = every non-zero pixel
    DATA/labels.json                           optional: {"NAME": "class name", ...}

Masks go through the same resize and centre crop as the images. An image without ``labels.json``
entry is segmented for CLIP's top-1 class over ``--classes``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn
from sklearn.metrics import average_precision_score
from torch import Tensor

from neuronattack.errors import NeuronAttackError
from neuronattack.lens.first_order import first_order_pieces
from neuronattack.lens.traced_pass import Trace, trace
from neuronattack.maps.heatmap import model_pixels, open_image
from neuronattack.maps.neuron_maps import (
    ClassNeurons,
    class_neurons,
    neuron_activation_map,
    neuron_effect_map,
)
from neuronattack.maps.overlay import model_view
from neuronattack.maps.patches import cls_attention_map, explain, grid_shape, upsample
from neuronattack.progress import progress_bar

SCHEMA = "neuronattack.segmentation/1"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
BASE_KINDS = ("text", "attention", "uniform")
ATLAS_KINDS = ("neurons", "neuron-activations")


# --- the metrics: pure functions of maps and masks ------------------------------------------


def scale01(values: Tensor) -> Tensor:
    """Negative values to 0, then each map ``[n, H, W]`` scaled to [0, 1]; constant maps to 0."""
    clipped = values.clamp(min=0)
    low = clipped.amin((1, 2), keepdim=True)
    span = clipped.amax((1, 2), keepdim=True) - low
    return torch.where(span > 0, (clipped - low) / span.where(span > 0, 1), 0)


def binarise(scaled: Tensor) -> Tensor:
    """Foreground where a [0, 1] map ``[n, H, W]`` is above its own mean: bool ``[n, H, W]``."""
    return scaled > scaled.mean((1, 2), keepdim=True)


@dataclass
class Tally:
    """Running counts over a set; ``scores()`` turns them into the reported numbers."""

    correct: int = 0
    pixels: int = 0
    intersection: list[int] = field(default_factory=lambda: [0, 0])  # background, foreground
    union: list[int] = field(default_factory=lambda: [0, 0])
    average_precisions: list[float] = field(default_factory=list)

    def add(self, maps: Tensor, masks: Tensor) -> None:
        """Score maps ``[n, H, W]`` (any real values) against bool masks ``[n, H, W]``."""
        scaled = scale01(maps.double())
        predicted = binarise(scaled)
        truth = masks.bool()
        self.correct += int((predicted == truth).sum())
        self.pixels += truth.numel()
        for channel, (pred, true) in enumerate(((~predicted, ~truth), (predicted, truth))):
            self.intersection[channel] += int((pred & true).sum())
            self.union[channel] += int((pred | true).sum())
        for score, true in zip(scaled, truth, strict=True):
            self.average_precisions.append(two_channel_ap(score, true))

    def scores(self) -> dict[str, float]:
        iou = [i / u if u else 1.0 for i, u in zip(self.intersection, self.union, strict=True)]
        return {
            "pixel_accuracy": self.correct / self.pixels,
            "miou": sum(iou) / 2,
            "iou_background": iou[0],
            "iou_foreground": iou[1],
            "ap": float(np.mean(self.average_precisions)),
            "images": len(self.average_precisions),
        }


def two_channel_ap(scaled: Tensor, mask: Tensor) -> float:
    """Average precision of one image over both channels: the foreground pixels ranked by the
    map, the background pixels by one minus it (the papers' protocol). ``[H, W]`` each."""
    scores = torch.cat([(1 - scaled).flatten(), scaled.flatten()]).numpy()
    labels = torch.cat([(~mask).flatten(), mask.flatten()]).numpy()
    return float(average_precision_score(labels, scores))


# --- a folder of images and masks --------------------------------------------------------------


@dataclass(frozen=True)
class MaskedImage:
    name: str
    image: Path
    mask: Path
    label: str | None


def scan_mask_folder(root: Path) -> list[MaskedImage]:
    """The image/mask pairs of a folder in the format of the module docstring."""
    root = Path(root)
    images_dir, masks_dir = root / "images", root / "masks"
    if not images_dir.is_dir() or not masks_dir.is_dir():
        raise NeuronAttackError(
            f"{root} needs images/ and masks/ folders (masks/NAME.png for images/NAME.*); see "
            "`neuronattack segment --help`."
        )
    labels = {}
    if (root / "labels.json").exists():
        try:
            labels = json.loads((root / "labels.json").read_text())
        except json.JSONDecodeError as error:
            raise NeuronAttackError(
                f"{root / 'labels.json'} is not valid JSON ({error})."
            ) from None
    pairs, missing = [], []
    for image in sorted(images_dir.iterdir()):
        if image.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        mask = masks_dir / f"{image.stem}.png"
        if not mask.exists():
            missing.append(image.name)
            continue
        pairs.append(MaskedImage(image.stem, image, mask, labels.get(image.stem)))
    if missing:
        raise NeuronAttackError(
            f"{len(missing)} images have no mask in {masks_dir} (e.g. {missing[0]}); every "
            "images/NAME.* needs masks/NAME.png."
        )
    if not pairs:
        raise NeuronAttackError(f"{images_dir} holds no images.")
    return pairs


def read_mask(path: Path, size: int) -> Tensor:
    """A mask through the images' geometry (nearest-neighbour): bool ``[size, size]``."""
    with Image.open(path) as mask:
        view = model_view(mask.convert("L"), size, resample=Image.NEAREST)
    return torch.from_numpy(np.asarray(view) > 0)


# --- the evaluation --------------------------------------------------------------------------


def evaluate_folder(clip, root: Path, class_names: Sequence[str], class_embeddings: Tensor,
                    atlas=None, neurons: int = 100, batch_size: int = 16,
                    show_progress: bool = True) -> dict:
    """Score every map kind on a mask folder. ``class_embeddings [classes, out_dim]`` are unit
    zero-shot rows for ``class_names``; with ``atlas`` the neuron kinds are scored too."""
    pairs = scan_mask_folder(root)
    unknown = sorted({p.label for p in pairs if p.label is not None} - set(class_names))
    if unknown:
        raise NeuronAttackError(
            f"labels.json names classes outside the class set: {', '.join(unknown[:5])}; add "
            "them to --classes."
        )
    kinds = BASE_KINDS + (ATLAS_KINDS if atlas is not None else ())
    tallies = {kind: Tally() for kind in kinds}
    size = int(clip.model.visual.image_size[0])
    chosen: dict[str, ClassNeurons] = {}
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    with progress_bar(*columns, disable=not show_progress) as bar:
        task = bar.add_task("segment", total=len(pairs))
        for batch in _chunks(pairs, batch_size):
            images = [open_image(pair.image) for pair in batch]
            masks = torch.stack([read_mask(pair.mask, size) for pair in batch])
            maps = batch_maps(clip, images, [pair.label for pair in batch], class_names,
                              class_embeddings, kinds, atlas, neurons, chosen)
            for kind, values in maps.items():
                tallies[kind].add(upsample(values, (size, size)).cpu(), masks)
            bar.advance(task, len(batch))
    return {
        "schema": SCHEMA, "model": clip.spec, "data": str(root), "images": len(pairs),
        "classes": len(class_names), "labelled": sum(p.label is not None for p in pairs),
        "neurons_per_class": neurons if atlas is not None else None,
        "classes_no_neuron_names": sorted(name for (name, by), chosen_neurons in chosen.items()
                                          if by == "words" and chosen_neurons is None),
        "protocol": "negatives to 0, min-max per image, threshold at the mean; AP over both "
                    "channels per image",
        "kinds": {kind: tally.scores() for kind, tally in tallies.items()},
    }


def batch_maps(clip, images, labels: Sequence[str | None], class_names: Sequence[str],
               class_embeddings: Tensor, kinds: Sequence[str], atlas=None, neurons: int = 100,
               cache: dict | None = None) -> dict[str, Tensor]:
    """Every requested kind of map ``[batch, grid_h, grid_w]`` for the images' classes (label,
    else CLIP's top-1), from one traced pass."""
    visual = clip.model.visual
    grid = grid_shape(visual)
    blocks = tuple(atlas.layers) if atlas is not None else ()
    record = trace(visual, model_pixels(clip, images), mlp_layers=blocks, first_order=True)
    pieces = first_order_pieces(visual, record, "centred")
    rows = class_embeddings.to(pieces.embed)  # [classes, out_dim]
    predicted = (pieces.total() @ rows.T).argmax(-1).tolist()
    classes = [class_names.index(label) if label is not None else guess
               for label, guess in zip(labels, predicted, strict=True)]
    directions = rows[classes] - rows.mean(0)  # [batch, out_dim]: the class against the set
    maps = {}
    if "text" in kinds:
        maps["text"] = explain(pieces, directions, grid).values
    if "attention" in kinds:
        maps["attention"] = cls_attention_map(record, grid)
    if "uniform" in kinds:
        maps["uniform"] = torch.zeros(len(images), *grid)
    if any(kind in ATLAS_KINDS for kind in kinds):
        cache = {} if cache is None else cache
        maps["neurons"] = torch.zeros(len(images), *grid)  # a class no neuron names: no map
        maps["neuron-activations"] = torch.zeros(len(images), *grid)
        for cls in sorted(set(classes)):
            name = class_names[cls]
            rows_of = [i for i, c in enumerate(classes) if c == cls]
            one = _select(record, rows_of)
            if (name, "words") not in cache:
                cache[name, "words"] = _maybe_neurons(atlas, name, neurons)
                cache[name, "direction"] = class_neurons(atlas, name, neurons, "direction",
                                                         rows[cls])
            if cache[name, "words"] is not None:
                maps["neurons"][rows_of] = neuron_effect_map(
                    visual, one, cache[name, "words"], directions[rows_of[0]], grid).values.cpu()
            maps["neuron-activations"][rows_of] = neuron_activation_map(
                one, cache[name, "direction"], grid).cpu()
    return {kind: maps[kind] for kind in kinds}


def _maybe_neurons(atlas, name: str, count: int) -> ClassNeurons | None:
    """The neurons whose words name the class, or None when no neuron does."""
    try:
        return class_neurons(atlas, name, count)
    except NeuronAttackError:
        return None


def _select(record: Trace, rows: list[int]) -> Trace:
    """The record of some images of a batch."""

    def pick(value):
        if isinstance(value, dict):
            return {key: tensor[rows] for key, tensor in value.items()}
        return value[rows] if isinstance(value, Tensor) else value

    return Trace(**{f.name: pick(getattr(record, f.name)) for f in fields(record)})


def _chunks(items: Sequence, size: int) -> Iterator[Sequence]:
    for start in range(0, len(items), size):
        yield items[start:start + size]



def resolve_classes(clip, pairs: Sequence[MaskedImage], classes_spec: str | None) -> list[str]:
    """``--classes`` when given; the class set of the plug-in world the CLIP comes from (the toy
    world's for the toy CLIP); else the classes of a fully labelled folder."""
    from neuronattack.attack.setup import load_class_names
    from neuronattack.models.plugins import clip_plugin

    if classes_spec is not None:
        return load_class_names(classes_spec)
    plugin = clip_plugin(clip.spec)
    if plugin is not None and plugin.class_names is not None:
        return plugin.class_names()
    labels = sorted({pair.label for pair in pairs if pair.label is not None})
    if len(labels) >= 2 and all(pair.label is not None for pair in pairs):
        return labels
    raise NeuronAttackError(
        "Say which classes CLIP chooses among: pass --classes (imagenet, cifar10, toy or a file "
        "of names), or label every image in labels.json."
    )


def run_segment(clip, data: Path, classes_spec: str | None = None, atlas_dir: Path | None = None,
                toy_scenes: int | None = None, neurons: int = 100, batch_size: int = 16,
                out: Path | None = None, show_progress: bool = True) -> dict:
    """What ``neuronattack segment`` does: (draw a toy set into ``data``,) score every map kind,
    write ``out`` (default ``data/segmentation.json``) and return it."""
    from neuronattack.artifacts import versions, write_json
    from neuronattack.maps.toyset import write_toy_masks
    from neuronattack.models.zeroshot import class_embeddings, judge_templates
    from neuronattack.neurons.atlas import Atlas

    data = Path(data)
    if toy_scenes is not None:
        write_toy_masks(data, toy_scenes)
    class_names = resolve_classes(clip, scan_mask_folder(data), classes_spec)
    atlas = Atlas.load(atlas_dir) if atlas_dir is not None else None
    if atlas is not None and atlas.model != clip.spec:
        raise NeuronAttackError(f"The atlas in {atlas_dir} was built for {atlas.model}, not "
                                f"{clip.spec}.")
    rows = class_embeddings(clip, class_names, judge_templates(clip))
    result = evaluate_folder(clip, data, class_names, rows, atlas, neurons, batch_size,
                             show_progress)
    result |= {"atlas": None if atlas_dir is None else str(atlas_dir), "versions": versions()}
    out = Path(out) if out is not None else data / "segmentation.json"
    write_json(out, result)
    return result | {"out": str(out)}
