"""Typed artifacts on disk: safetensors for tensors, JSON for the rest, every write atomic.

A killed process leaves either the old file or the new one, never half of one: we write to a
temporary file in the same folder and ``os.replace`` it over the target.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

import neuronattack


@contextmanager
def _atomic_path(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        yield Path(temporary)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def write_json(path: Path, data: Any) -> None:
    with _atomic_path(Path(path)) as temporary:
        temporary.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    """safetensors with string metadata; tensors are made contiguous and moved to the CPU."""
    ready = {name: tensor.detach().contiguous().cpu() for name, tensor in tensors.items()}
    with _atomic_path(Path(path)) as temporary:
        save_file(ready, str(temporary), metadata=metadata)


def load_tensors(path: Path, with_metadata: bool = False):
    """``{name: tensor}``, or ``(tensors, metadata)`` when ``with_metadata``."""
    with safe_open(str(path), framework="pt") as handle:
        tensors = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
        metadata = handle.metadata() or {}
    return (tensors, metadata) if with_metadata else tensors


def versions() -> dict[str, str]:
    """Package versions recorded in every meta.json, so an artifact says what made it."""
    import open_clip

    return {
        "neuronattack": neuronattack.__version__,
        "torch": torch.__version__,
        "open_clip": open_clip.__version__,
        "python": platform.python_version(),
    }
