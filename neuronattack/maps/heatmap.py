"""``neuronattack heatmap``: where in an image CLIP sees a text, or one text rather than another."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor

from neuronattack.errors import NeuronAttackError
from neuronattack.maps.overlay import model_view, overlay, save_map_png, with_caption
from neuronattack.maps.patches import PatchMap, explain, grid_shape, traced_pieces
from neuronattack.models.clip import LoadedClip
from neuronattack.models.zeroshot import text_embedding


def text_direction(clip: LoadedClip, text: str, minus: str | None = None) -> Tensor:
    """``[out_dim]``: the unit embedding of ``text``, minus that of ``minus`` when given."""
    direction = text_embedding(clip, text)
    if minus is not None:
        direction = direction - text_embedding(clip, minus)
    return direction


def model_pixels(clip: LoadedClip, images: Sequence[Image.Image]) -> Tensor:
    """``[batch, 3, H, W]`` through the model's own preprocessing, on the model's device."""
    device = next(clip.model.parameters()).device
    return torch.stack([clip.preprocess(image.convert("RGB")) for image in images]).to(device)


def patch_maps(clip: LoadedClip, images: Sequence[Image.Image], direction: Tensor,
               layers: Sequence[int] | None = None) -> PatchMap:
    """Per-patch shares of ``unit(embedding) · direction`` for each image (one traced pass).

    ``direction`` is ``[out_dim]`` or one per image ``[batch, out_dim]``; ``layers`` default to
    every block.
    """
    visual = clip.model.visual
    _, pieces = traced_pieces(visual, model_pixels(clip, images))
    return explain(pieces, direction.to(pieces.embed.device), grid_shape(visual), layers,
                   per_norm=True)


def open_image(path: Path) -> Image.Image:
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, ValueError) as error:
        raise NeuronAttackError(f"Cannot read {path} as an image ({error}).") from None


def write_heatmap(clip: LoadedClip, image_path: Path, text: str, out: Path,
                  minus: str | None = None, layers: Sequence[int] | None = None) -> dict:
    """Draw the map of ``text`` (or ``text`` against ``minus``) over the image; returns what the
    CLI prints: the score, how much of it the patches carry, the strongest patches."""
    image = open_image(Path(image_path))
    result = patch_maps(clip, [image], text_direction(clip, text, minus), layers)
    values = result.values[0].double().cpu()
    view = model_view(image, int(clip.model.visual.image_size[0]))
    summary = {
        "image": str(image_path), "text": text, "minus": minus, "layers": list(result.layers),
        "score": float(result.score[0]), "patches": float(values.sum()),
        "rest": float(result.rest[0]), "max_abs_patch": float(values.abs().max()),
        "top_patches": _top_patches(values, 5),
        "units": "cosine similarity" + (" difference" if minus else ""),
    }
    picture = with_caption(overlay(view, values), [
        f"red: '{text}'; blue: '{minus}'" if minus else f"red: toward '{text}'; blue: against",
        f"score {summary['score']:+.4f} = patches {summary['patches']:+.4f} "
        f"+ rest {summary['rest']:+.4f}",
    ])
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_map_png(picture, out, summary)
    return summary | {"out": str(out)}


def _top_patches(values: Tensor, count: int) -> list[dict]:
    """The ``count`` patches with the largest |value|: row, column (grid cells) and value."""
    flat = values.flatten()
    order = flat.abs().argsort(descending=True)[:count]
    width = values.shape[1]
    return [{"row": int(i) // width, "col": int(i) % width, "value": float(flat[i])}
            for i in order]
