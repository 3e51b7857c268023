"""Why-maps: for an attack image, which patches pushed CLIP from the source toward the target.

The map projects each patch's direct contribution on ``e(target) − e(source)``, the judge's own
class embeddings, divided by ‖embedding‖: its values plus the rest sum exactly to the judge's
margin ``cos(image, target) − cos(image, source)``. A red patch pulled the image toward the target.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from PIL import Image
from torch import Tensor

from neuronattack.attack.run import why_map_path
from neuronattack.maps.heatmap import patch_maps
from neuronattack.maps.overlay import model_view, overlay, save_map_png
from neuronattack.maps.patches import PatchMap
from neuronattack.models.loaded import LoadedClip

WHY_DISPLAY = 128  # small: it sits beside the image in galleries
# Images per traced pass: every layer × token × head piece is held at once (ViT-L-14: ~0.6 GB
# per image), so a render batch is explained a few images at a time.
WHY_BATCH = 4


def why_maps(clip: LoadedClip, images: Sequence[Image.Image], source_embedding: Tensor,
             target_embedding: Tensor) -> PatchMap:
    """Target-minus-source patch maps of ``images``; embeddings ``[out_dim]`` are the judge's
    unit class embeddings, so ``score`` is the judge's margin per image."""
    return patch_maps(clip, images, target_embedding - source_embedding)


def write_why_maps(clip: LoadedClip, images: Sequence[Image.Image], image_paths: Sequence[Path],
                   source_embedding: Tensor, target_embedding: Tensor) -> list[Path]:
    """One small overlay PNG next to each image; returns their paths."""
    size = int(clip.model.visual.image_size[0])
    written = []
    for start in range(0, len(images), WHY_BATCH):
        chunk = images[start:start + WHY_BATCH]
        result = why_maps(clip, chunk, source_embedding, target_embedding)
        for offset, image in enumerate(chunk):
            values = result.values[offset].double().cpu()
            path = why_map_path(image_paths[start + offset])
            info = {"kind": "why-map", "image": Path(image_paths[start + offset]).name,
                    "margin": float(result.score[offset]), "patches": float(values.sum()),
                    "rest": float(result.rest[offset]), "layers": list(result.layers)}
            save_map_png(overlay(model_view(image, size), values, WHY_DISPLAY), path, info)
            written.append(path)
    return written
