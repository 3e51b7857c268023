"""Atlas folders with random contents in the exact on-disk format, at any size, in seconds.

For the explorer and for sharing, which read atlases but do not care how they were computed; the
full-size one (3 blocks x 3,072 neurons x 128 words over 30,000 words) is the explorer benchmark's.
"""

from __future__ import annotations

from pathlib import Path

import torch

from neuronattack.artifacts import file_hash, save_tensors, versions, write_json
from neuronattack.neurons.atlas import SCHEMA as ATLAS_SCHEMA

DIRECTIONS_SCHEMA = "neuronattack.directions/1"


def write_synthetic_atlas(
    root: Path, layers: tuple[int, ...] = (1, 2), neurons: int = 16, words: list[str] | None = None,
    nonzeros: int = 6, out_dim: int = 8, top_k: int = 5, images: list[str] | None = None,
    image_root: Path | None = None, seed: int = 0, model: str = "random:synthetic@0",
    vision_fingerprint: str = "0123456789abcdef",
) -> Path:
    """Write meta.json, directions.safetensors, atlas.safetensors, atlas.json and images.json.

    Every neuron uses ``nonzeros`` distinct words, except the last of each block, whose final two
    slots are zero padding (as OMP leaves after an early stop).
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(seed)
    words = words or [f"word{i}" for i in range(40)]
    images = images if images is not None else [f"class{i % 3}/{i}.png" for i in range(12)]
    directions, codes = {}, {}
    for layer in layers:
        direction = torch.nn.functional.normalize(torch.randn(neurons, out_dim,
                                                              generator=generator), dim=1)
        top_norms = torch.rand(neurons, top_k, generator=generator).sort(dim=1,
                                                                          descending=True).values
        directions |= {
            f"{layer}.direction": direction,
            f"{layer}.mean_effect": torch.randn(neurons, out_dim, generator=generator),
            f"{layer}.variance_explained": torch.rand(neurons, generator=generator),
            f"{layer}.singular_value": torch.rand(neurons, generator=generator),
            f"{layer}.threshold": top_norms[:, -1].clone(),
            f"{layer}.top_norms": top_norms,
            f"{layer}.top_images": torch.randint(len(images), (neurons, top_k),
                                                 generator=generator),
            f"{layer}.neurons": torch.arange(neurons),
        }
        indices = torch.rand(neurons, len(words), generator=generator).argsort(dim=1)[:, :nonzeros]
        coefficients = torch.randn(neurons, nonzeros, generator=generator)
        coefficients[-1, -2:] = 0
        codes |= {
            f"{layer}.word_indices": indices,
            f"{layer}.word_coefficients": coefficients,
            f"{layer}.reconstruction_cosine": torch.rand(neurons, generator=generator),
            f"{layer}.word_direction": direction,
        }
    save_tensors(root / "directions.safetensors", directions, {"schema": DIRECTIONS_SCHEMA})
    write_json(root / "meta.json", {
        "schema": DIRECTIONS_SCHEMA, "model": model, "vision_fingerprint": vision_fingerprint,
        "image_set": {"fingerprint": "fedcba9876543210", "images": len(images)},
        "settings": {"layers": list(layers), "convention": "centred", "top_k": top_k,
                     "precision": "fp32"},
        "status": "complete", "versions": versions(),
    })
    write_json(root / "images.json", {"root": str(image_root or root / "images"),
                                      "paths": images})
    save_tensors(root / "atlas.safetensors", codes, {"schema": ATLAS_SCHEMA})
    write_json(root / "atlas.json", {
        "schema": ATLAS_SCHEMA, "directions": file_hash(root / "directions.safetensors"),
        "solver": "omp", "nonzeros": nonzeros, "convention": "centred",
        "vocabulary": {"hash": "synthetic", "source": "synthetic test words",
                       "licence": "CC0 (test data)"},
        "words": words, "versions": versions(),
    })
    return root
