"""Zero-shot classification heads: class names, prompt templates, class embeddings, accuracy.

Class names and the 80 prompt templates are OpenAI's, as open_clip ships them, so zero-shot
accuracies are comparable with published ones. ImageNet folders are named by WordNet ID
(``n01440764``); timm ships the 1000 IDs in the standard class-index order, which is also the
order of open_clip's names, so the two lists zip into one table.

Class names need not be unique: OpenAI's ImageNet list names two classes "missile" and two
"sunglasses". Code that maps a name back to a class must work with indices, not names.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

import torch
from open_clip import IMAGENET_CLASSNAMES, OPENAI_IMAGENET_TEMPLATES
from timm.data import ImageNetInfo
from torch import Tensor

from neuronattack.errors import NeuronAttackError
from neuronattack.models.clip import spec_slug
from neuronattack.models.loaded import LoadedClip, Template
from neuronattack.models.text_encoding import (
    cached_text_encodings,
    encode_texts,
    text_tower_fingerprint,
    word_list_hash,
)

# Exported under our names so callers need not know which package ships them.
OPENAI_TEMPLATES: tuple[Callable[[str], str], ...] = tuple(OPENAI_IMAGENET_TEMPLATES)
IMAGENET_NAMES: tuple[str, ...] = tuple(IMAGENET_CLASSNAMES)
DEFAULT_LOGIT_SCALE = 100.0  # CLIP's learned temperature saturates at this value
CLASS_CACHE_SCHEMA = "neuronattack.class-embeddings/1"

_WNID = re.compile(r"n\d{8}")


class ImageNetClass(NamedTuple):
    index: int  # position in the 1000-way classifier
    wnid: str  # WordNet ID, the folder name in ImageNet's train/val layout
    name: str  # OpenAI's readable name, the one filled into the templates


@lru_cache(maxsize=1)
def _imagenet_table() -> tuple[ImageNetClass, ...]:
    wnids = ImageNetInfo("imagenet-1k").label_names()
    if len(wnids) != len(IMAGENET_NAMES):
        # Both lists are in the standard index order; a length mismatch means one package changed.
        raise NeuronAttackError(
            f"timm lists {len(wnids)} ImageNet WordNet IDs but open_clip {len(IMAGENET_NAMES)} "
            "class names; install versions of timm and open_clip_torch that agree."
        )
    return tuple(
        ImageNetClass(index, wnid, name)
        for index, (wnid, name) in enumerate(zip(wnids, IMAGENET_NAMES, strict=True))
    )


def imagenet_classes() -> list[ImageNetClass]:
    """The 1000 ImageNet classes in classifier index order."""
    return list(_imagenet_table())


def is_wnid(label: str) -> bool:
    """Whether a folder label looks like a WordNet noun ID (``n`` and eight digits)."""
    return _WNID.fullmatch(label) is not None


def judge_templates(clip: LoadedClip) -> tuple[Template, ...]:
    """The templates the model brought (the toy CLIP knows only its world's captions), else
    OpenAI's 80."""
    if clip.judge_templates is not None:
        return tuple(clip.judge_templates)
    return OPENAI_TEMPLATES


def text_embedding(clip: LoadedClip, text: str) -> Tensor:
    """The unit-normalised embedding ``[out_dim]`` of one bare prompt, used as written."""
    return torch.nn.functional.normalize(encode_texts(clip, [text])[0], dim=-1)


def class_embeddings(
    clip: LoadedClip,
    class_names: Sequence[str],
    templates: Sequence[Template] = OPENAI_TEMPLATES,
    batch_size: int = 256,
    show_progress: bool = False,
    cache_dir: Path | None = None,
) -> Tensor:
    """One unit vector per class, ``[classes, out_dim]``: the zero-shot classifier's rows.

    With ``cache_dir`` the class embeddings are kept on disk like the word dictionary's, keyed by
    the text tower's fingerprint and the exact prompts (so both the class set and the templates):
    1,000 ImageNet classes x 80 templates are 80,000 prompts to encode.

    Every template is filled with the class name and encoded; the unit-normalised prompt
    embeddings are averaged and the mean normalised again (open_clip's recipe, so accuracies match
    its zero-shot evaluation). Normalising before averaging keeps one prompt that happens to embed
    with a large norm from outweighing the others.
    """
    if not class_names:
        raise NeuronAttackError("There are no class names to embed; give at least one class.")
    if not templates:
        raise NeuronAttackError("There are no prompt templates; give at least one, e.g. '{}'.")
    prompts = [fill_template(template, name) for name in class_names for template in templates]

    def per_class(encoded: Tensor) -> Tensor:  # [classes * templates, out_dim] -> [classes, ...]
        per_prompt = torch.nn.functional.normalize(encoded, dim=-1)
        mean = per_prompt.reshape(-1, len(templates), per_prompt.shape[-1]).mean(dim=1)
        return torch.nn.functional.normalize(mean, dim=-1)

    if cache_dir is None:
        return per_class(encode_texts(clip, prompts, batch_size, show_progress=show_progress))
    identity = {
        "schema": CLASS_CACHE_SCHEMA,
        "model_spec": clip.spec,
        "text_fingerprint": text_tower_fingerprint(clip.model),
        "prompts_hash": word_list_hash(prompts),
        "classes_hash": word_list_hash(class_names),
        "templates": str(len(templates)),
    }
    path = class_cache_path(cache_dir, clip.spec, identity["prompts_hash"])
    return cached_text_encodings(clip, prompts, path, identity, group=len(templates),
                                 reduce=per_class, batch_size=batch_size,
                                 show_progress=show_progress)


def class_cache_path(cache_dir: Path, model_spec: str, prompts_hash: str) -> Path:
    """Where the class embeddings of one prompt list under a model live."""
    return Path(cache_dir) / f"{spec_slug(model_spec)}-classes-{prompts_hash}.safetensors"


def fill_template(template: Template, name: str) -> str:
    return template.format(name) if isinstance(template, str) else template(name)


def resolve_class_names(labels: Sequence[str], names_file: Path | None = None) -> list[str]:
    """Readable class names for an image set's class-folder labels, in the order given.

    A names file wins for every label it lists; other labels that are WordNet IDs get OpenAI's
    ImageNet names, and the rest are used as written with ``_`` read as a space (folders cannot
    hold some names, and ``great_white_shark`` should prompt as "great white shark").

    Names file format: UTF-8, one ``LABEL NAME`` per line, the label being the folder name (so
    it cannot contain spaces) and the name everything after the first run of whitespace (a tab or
    spaces; inner runs collapse to one space), e.g. ``n01440764<TAB>tench``; blank lines and lines
    starting with ``#`` are skipped. Labels the file lists but the image set lacks are ignored, so
    one file can serve several subsets.
    """
    overrides = read_names_file(names_file) if names_file is not None else {}
    by_wnid = {entry.wnid: entry.name for entry in _imagenet_table()}
    names = []
    for label in labels:
        if label in overrides:
            names.append(overrides[label])
        elif is_wnid(label):
            if label not in by_wnid:
                raise NeuronAttackError(
                    f"The class folder '{label}' looks like a WordNet ID but is not one of the "
                    "1000 ImageNet classes; name it in a class names file with the line "
                    f"'{label}<TAB>name'."
                )
            names.append(by_wnid[label])
        else:
            names.append(label.replace("_", " "))
    return names


def read_names_file(path: Path) -> dict[str, str]:
    """``{label: name}`` from a names file (format in :func:`resolve_class_names`)."""
    try:
        lines = Path(path).read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise NeuronAttackError(
            f"Cannot read the class names file {path} ({error}); give a UTF-8 text file with "
            "one 'LABEL<TAB>name' per line."
        ) from error
    names: dict[str, str] = {}
    for line in lines:
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        label, *words = fields
        if not words:
            raise NeuronAttackError(
                f"The line '{line}' in {path} has a label but no name; write 'LABEL<TAB>name'."
            )
        name = " ".join(words)
        if names.get(label, name) != name:
            raise NeuronAttackError(
                f"{path} names the label '{label}' twice ('{names[label]}' and '{name}'); "
                "keep one line per label."
            )
        names[label] = name
    return names


def find_class(name: str, choices: Sequence[str]) -> str:
    """The choice a user meant by ``name``: exact up to case, spacing and ``_`` for space.

    Fuzzy matches are only suggested, never taken: an attack on the wrong class would run for
    minutes before anyone noticed.
    """
    wanted = _normal(name)
    if name in choices:
        return name
    matches = sorted({choice for choice in choices if _normal(choice) == wanted})
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise NeuronAttackError(
            f"The class '{name}' matches {', '.join(matches)}, which differ only in case; "
            "write the one you mean exactly."
        )
    by_normal = {_normal(choice): choice for choice in choices}
    close = difflib.get_close_matches(wanted, list(by_normal), n=3, cutoff=0.6)
    hint = (
        f"did you mean {', '.join(by_normal[match] for match in close)}?"
        if close
        else f"choose one of the {len(by_normal)} class names (e.g. {', '.join(choices[:3])})."
    )
    raise NeuronAttackError(f"Unknown class '{name}'; {hint}")


def _normal(name: str) -> str:
    return " ".join(name.replace("_", " ").lower().split())


def zero_shot_logits(
    image_embeddings: Tensor, class_embeddings: Tensor, logit_scale: float = DEFAULT_LOGIT_SCALE
) -> Tensor:
    """Classifier logits ``[batch, classes]`` for image embeddings ``[batch, out_dim]``.

    Images are unit-normalised here, as CLIP does; class rows are used as given (unit vectors
    from :func:`class_embeddings`), so a caller may pass a rescaled classifier on purpose.
    """
    images = torch.nn.functional.normalize(image_embeddings.float(), dim=-1)  # [batch, out_dim]
    return logit_scale * images @ class_embeddings.float().T


def accuracy(logits: Tensor, labels: Tensor) -> float:
    """Top-1 accuracy in [0, 1] of logits ``[batch, classes]`` against class indices ``[batch]``."""
    if logits.shape[0] == 0 or logits.shape[0] != labels.shape[0]:
        raise ValueError(f"{logits.shape[0]} rows of logits for {labels.shape[0]} labels")
    return (logits.argmax(dim=-1) == labels.to(logits.device)).float().mean().item()
