"""Shared fixtures: tiny random open_clip ViTs built from configs in milliseconds."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import huggingface_hub.constants
import numpy as np
import open_clip
import pytest
import torch
from PIL import Image

FIXTURES = Path(__file__).parent / "fixtures"
PARITY_DIR = FIXTURES / "official-parity-tiny"


def build_tiny_clip(
    layers: int = 4,
    width: int = 64,
    head_width: int = 16,
    image_size: int = 32,
    patch_size: int = 8,
    embed_dim: int = 32,
    ls_init_value: float | None = None,
    quick_gelu: bool = False,
    seed: int = 0,
) -> open_clip.CLIP:
    """A random CLIP whose LayerNorm weights and biases are pushed away from 1 and 0."""
    torch.manual_seed(seed)
    vision = {"image_size": image_size, "layers": layers, "width": width,
              "head_width": head_width, "patch_size": patch_size, "ls_init_value": ls_init_value}
    text = {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}
    model = open_clip.CLIP(embed_dim, vision, text, quick_gelu=quick_gelu).eval()
    return perturb(model, seed + 1, lambda name: "ln_" in name or name.endswith("gamma"))


def perturb(model: torch.nn.Module, seed: int, is_scale=lambda name: "ln_" in name):
    """Every bias set to small noise and every scale ``is_scale`` names (LayerNorm weights) to 1 +
    noise: left at 0 and 1, they would drop out of the formulas a test checks."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            noise = 0.1 * torch.randn(parameter.shape, generator=generator)
            if name.endswith("bias"):
                parameter.copy_(noise)
            elif is_scale(name):
                parameter.copy_(1 + noise)
    return model


@pytest.fixture
def offline_hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An empty Hugging Face cache with the hub switched off, as on a machine with no network.

    huggingface_hub reads HF_HUB_OFFLINE and the cache path at import, so its constants are
    patched too.
    """
    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    return cache


@pytest.fixture(scope="session")
def tiny_clip() -> open_clip.CLIP:
    return build_tiny_clip()


@pytest.fixture(scope="session")
def parity():
    data = np.load(PARITY_DIR / "parity.npz")
    model = open_clip.create_model(f"local-dir:{PARITY_DIR}").eval()
    return model, data


@contextmanager
def in_float64(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """``model`` in float64 for the block, and float32 again after it even when the block fails:
    the fixtures converted are shared by the tests that follow."""
    model.double()
    try:
        yield model
    finally:
        model.float()


def random_images(batch: int, size: int = 32, seed: int = 0, dtype=torch.float32) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, size, size, generator=generator).to(dtype)


def write_class_folders(root: Path, labels: tuple[str, ...], per_class: int, seed: int = 0,
                        size: int = 32) -> Path:
    """ImageNet-style class folders of random-noise PNGs: ``root/label/index.png``."""
    rng = np.random.default_rng(seed)
    for label in labels:
        (root / label).mkdir(parents=True)
        for index in range(per_class):
            pixels = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / label / f"{index}.png")
    return root
