"""Typed artifacts on disk: safetensors for tensors, JSON for the rest, every write atomic.

A killed process leaves either the old file or the new one, never half of one: we write to a
temporary file in the same folder and ``os.replace`` it over the target. The file then gets the
mode any new file would (the umask's), not the temporary file's private 0600, so an atlas or a
campaign shared on a cluster stays readable by colleagues.

Reading is the other half: a file damaged on disk (truncated by a full disk, edited by hand,
copied half-way) becomes one sentence, "X is damaged (reason); <what to do>", never a traceback.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

import neuronattack
from neuronattack.errors import NeuronAttackError

# What to do about a damaged file when the caller knows no better.
RERUN = "delete it and rerun the command that wrote it"


class DamagedArtifactError(NeuronAttackError, OSError):
    """An artifact that exists but cannot be read as what it should be.

    Also an ``OSError``, so code that treats an unreadable cache file as a cache miss keeps doing
    so.
    """


def damaged(path: Path, reason: str, remedy: str = RERUN) -> DamagedArtifactError:
    return DamagedArtifactError(f"{path} is damaged ({reason}); {remedy}.")


def new_file_mode() -> int:
    """The mode ``open()`` would give a new file: 0666 less the umask."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


@contextmanager
def _atomic_path(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        yield Path(temporary)
        os.chmod(temporary, new_file_mode())
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def write_json(path: Path, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def write_text(path: Path, text: str) -> None:
    """``text`` to ``path`` all at once: a reader never sees half a file, and a crash after the
    rename never leaves an empty one (the data is on disk before the name is)."""
    with _atomic_path(Path(path)) as temporary, open(temporary, "w", encoding="utf-8") as stream:
        stream.write(text)
        stream.flush()
        os.fsync(stream.fileno())


def read_json(path: Path, remedy: str = RERUN, expect: type | None = None) -> Any:
    """The JSON in ``path``; a damaged file (or one that is not an ``expect``) raises
    :class:`DamagedArtifactError` saying ``remedy``. A missing file raises FileNotFoundError."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise damaged(path, "not UTF-8 text", remedy) from None
    except json.JSONDecodeError as error:
        raise damaged(path, f"invalid JSON at line {error.lineno}: {error.msg}", remedy) from None
    if expect is not None and not isinstance(data, expect):
        raise damaged(path, f"a JSON {_json_type(expect)} was expected, it holds a "
                            f"{_json_type(type(data))}", remedy)
    return data


def require_fields(path: Path, data: dict, fields: dict[str, type], remedy: str = RERUN) -> dict:
    """``data`` (read from ``path``) with every field present and of its type, else damaged."""
    for name, kind in fields.items():
        if name not in data:
            raise damaged(path, f"no {name!r} field", remedy)
        if not isinstance(data[name], kind):
            raise damaged(path, f"{name!r} is a {_json_type(type(data[name]))}, not a "
                                f"{_json_type(kind)}", remedy)
    return data


def _json_type(kind: type) -> str:
    return {dict: "object", list: "list", str: "string", int: "integer", float: "number",
            bool: "boolean", type(None): "null"}.get(kind, kind.__name__)


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    """safetensors with string metadata; tensors are made contiguous and moved to the CPU."""
    ready, starts = {}, set()
    for name, tensor in tensors.items():
        tensor = tensor.detach().contiguous().cpu()
        # safetensors refuses two names for one memory (a state holding the same tensor under
        # two names); each name gets its own copy on disk anyway.
        if tensor.numel() and tensor.data_ptr() in starts:
            tensor = tensor.clone()
        starts.add(tensor.data_ptr())
        ready[name] = tensor
    with _atomic_path(Path(path)) as temporary:
        save_file(ready, str(temporary), metadata=metadata)


def load_tensors(path: Path, with_metadata: bool = False, remedy: str = RERUN):
    """``{name: tensor}``, or ``(tensors, metadata)`` when ``with_metadata``.

    A truncated or garbled file raises :class:`DamagedArtifactError` saying ``remedy``; a missing
    one, FileNotFoundError.
    """
    if not Path(path).exists():
        raise FileNotFoundError(path)
    try:
        with safe_open(str(path), framework="pt") as handle:
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
            metadata = handle.metadata() or {}
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:120]
        raise damaged(path, f"not a readable safetensors file: {reason}", remedy) from None
    return (tensors, metadata) if with_metadata else tensors


def require_tensors(path: Path, tensors: dict, names, remedy: str = RERUN) -> None:
    """Every tensor in ``names`` is in ``tensors`` (read from ``path``), else damaged."""
    missing = [name for name in names if name not in tensors]
    if missing:
        raise damaged(path, f"no tensor {missing[0]!r}", remedy)


def file_hash(path: Path) -> str:
    """The first 16 hex digits of the file's SHA-256: which artifact made another."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def json_digest(value: Any) -> str:
    """A 16-hex-digit fingerprint of a JSON-serialisable value, for cache keys and headers: its
    compact JSON (entry boundaries and order count) hashed with SHA-256. 64 bits is ample against
    accidental collisions among the few values one cache or folder ever compares."""
    payload = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


def versions() -> dict[str, str]:
    """Package versions recorded in every meta.json, so an artifact says what made it."""
    import open_clip

    return {
        "neuronattack": neuronattack.__version__,
        "torch": torch.__version__,
        "open_clip": open_clip.__version__,
        "python": platform.python_version(),
    }
