"""Head roles (TextSpan) for the explorer, when a heads artifact is at hand.

The explorer reads one neutral shape, so it does not depend on how the heads analysis stores its
tensors: a JSON object ``{"heads": [HEAD, ...]}`` (or the bare list), each HEAD
``{"head": "L.H", "role": "colour" (optional), "texts": [{"text": ..., "variance": ...}, ...],
"accuracy": ... (optional)}``, texts in the order TextSpan chose them. ``heads.json`` next to the
atlas is picked up by ``neuronattack explore``; ``--heads PATH`` names another file.
"""

from __future__ import annotations

import json
from pathlib import Path

from neuronattack.errors import NeuronAttackError

HEADS_FILE = "heads.json"


def load_head_roles(path: Path) -> list[dict]:
    """The heads in ``path``, checked and normalised: ``[{"head", "layer", "index", "role",
    "texts": [[text, variance], ...], "accuracy"}]`` sorted by layer then head."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise NeuronAttackError(f"Could not read head roles from {path} ({error}).") from None
    heads = data.get("heads") if isinstance(data, dict) else data
    if not isinstance(heads, list):
        raise NeuronAttackError(f"{path} holds no list of heads; see neuronattack.explore.heads "
                                "for the expected shape.")
    return sorted((_head(path, entry) for entry in heads),
                  key=lambda head: (head["layer"], head["index"]))


def _head(path: Path, entry) -> dict:
    name = str(entry.get("head", "")) if isinstance(entry, dict) else ""
    layer, _, index = name.partition(".")
    texts = entry.get("texts") if isinstance(entry, dict) else None
    if not (layer.isdigit() and index.isdigit()) or not isinstance(texts, list):
        raise NeuronAttackError(f"{path}: each head needs \"head\": \"L.H\" and a \"texts\" list; "
                                f"got {str(entry)[:80]!r}.")
    try:
        pairs = [[str(t["text"]), float(t.get("variance", 0.0))] for t in texts]
    except (TypeError, KeyError, ValueError, AttributeError):
        raise NeuronAttackError(f"{path}: the texts of head {name} need \"text\" (and "
                                "\"variance\") fields.") from None
    accuracy = entry.get("accuracy")
    return {"head": name, "layer": int(layer), "index": int(index),
            "role": str(entry.get("role") or ""), "texts": pairs,
            "accuracy": float(accuracy) if isinstance(accuracy, int | float) else None}
