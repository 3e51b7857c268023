"""The loaded-model record every CLIP loader returns (open_clip, transformers, the toy world).

It lives apart from the loaders so that each of them, including the toy world's, can build one
without importing another loader.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

# A template is a format string with one ``{}`` or a callable, as open_clip accepts both.
Template = str | Callable[[str], str]


@dataclass(frozen=True)
class LoadedClip:
    """An open_clip CLIP ready for analysis: eval mode, float32, frozen, on the requested device.

    ``arch`` is the name open_clip itself understands for this model (``ViT-B-32``, or
    ``local-dir:/abs/path`` / ``hf-hub:org/name`` when the config came from a folder or repo), so it
    can be passed back to ``open_clip.create_model`` or ``open_clip.get_tokenizer``; for a
    transformers checkpoint (``hf:``), which open_clip has no name for, it is the spec.

    ``judge_templates``: the zero-shot templates the model is judged with when they are not
    OpenAI's 80 (the toy CLIP only knows its own world's captions); None for real models.
    """

    model: torch.nn.Module
    preprocess: Callable[..., torch.Tensor]
    tokenizer: Callable[..., torch.Tensor]
    spec: str
    arch: str
    judge_templates: Sequence[Template] | None = None
