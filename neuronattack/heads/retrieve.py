"""Property-specific retrieval (paper 1, §5): nearest images by what a group of heads writes.

Heads chosen by role (e.g. the heads whose texts are colours) write mostly that property, so
comparing images by the sum of those heads' mean-centred contributions finds images that share
the property, where the whole embedding finds images that share everything (mostly the class).
A text query is compared with the same vectors: its unit text embedding, minus the mean unit
embedding of a reference list of texts (the pool the roles came from) when one is given, against
each image's group vector. Image vectors are centred over the set; the text is centred over texts
for the same reason: what every text shares says nothing about the property.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from neuronattack.errors import NeuronAttackError
from neuronattack.heads.contributions import Contributions, Head


def group_vectors(contrib: Contributions, heads: list[Head] | None) -> Tensor:
    """``[N, out_dim]``: the heads' summed contributions, mean-centred over the set; the whole
    embedding (centred) when ``heads`` is None."""
    values = contrib.total() if heads is None else contrib.group(heads)
    return values - values.mean(0)


def nearest(query: Tensor, keys: Tensor, count: int, exclude: int | None = None
            ) -> tuple[Tensor, Tensor]:
    """The ``count`` rows of ``keys [N, out_dim]`` most cosine-similar to ``query [out_dim]``,
    skipping row ``exclude``: ``(indices [count], similarities [count])``."""
    similarity = torch.nn.functional.normalize(keys.float(), dim=-1) @ \
        torch.nn.functional.normalize(query.float(), dim=-1)
    if exclude is not None:
        similarity[exclude] = -float("inf")
    count = min(count, len(keys) - (exclude is not None))
    values, indices = similarity.topk(count)
    return indices, values


def precision_at_k(keys: Tensor, attribute: list[str], k: int = 10) -> float:
    """Every row as a query against all others: mean share of its ``k`` nearest rows (cosine)
    whose ``attribute`` equals its own."""
    if len(keys) <= k:
        raise NeuronAttackError(f"precision@{k} needs more than {k} images, not {len(keys)}.")
    unit = torch.nn.functional.normalize(keys.float(), dim=-1)
    similarity = unit @ unit.T
    similarity.fill_diagonal_(-float("inf"))
    neighbours = similarity.topk(k, dim=1).indices  # [N, k]
    codes = {value: i for i, value in enumerate(sorted(set(attribute)))}
    labels = torch.tensor([codes[value] for value in attribute])
    return float((labels[neighbours] == labels[:, None]).float().mean())


@dataclass(frozen=True)
class Retrieval:
    query: str
    heads: list[str]  # empty: the whole embedding
    images: list[str]
    similarities: list[float]

    def as_dict(self) -> dict:
        return {"query": self.query, "heads": self.heads,
                "results": [{"image": image, "similarity": score}
                            for image, score in zip(self.images, self.similarities, strict=True)]}


def mean_text(clip, texts: list[str]) -> Tensor:
    """The mean unit embedding ``[out_dim]`` of ``texts`` (encodings cached on disk)."""
    from neuronattack.neurons.text_dictionary import cached_encodings
    from neuronattack.neurons.vocabulary import Vocabulary, word_list_hash

    vocabulary = Vocabulary(words=tuple(texts), source="retrieval reference",
                            hash=word_list_hash(texts), info={})
    return torch.nn.functional.normalize(cached_encodings(clip, vocabulary), dim=-1).mean(0)


def run_retrieve(
    clip, image_set, query: str, heads: list[Head], count: int = 10, batch_size: int = 64,
    device="cpu", show_progress: bool = True, text_reference: list[str] | None = None,
) -> tuple[Retrieval, Retrieval]:
    """Nearest images of ``image_set`` to ``query`` (an image file, else a text) by ``heads`` and
    by the whole embedding; a text query is centred by ``text_reference``'s mean embedding."""
    from pathlib import Path

    from PIL import Image

    from neuronattack.heads.contributions import collect, contributions, head_name
    from neuronattack.models.zeroshot import text_embedding

    if not heads:
        raise NeuronAttackError("No heads to retrieve with; name some with --heads or choose a "
                                "role that matches at least one head.")
    layers = tuple(sorted({layer for layer, _ in heads}))
    contrib = collect(clip, image_set, layers, batch_size, device, show_progress=show_progress)
    by_heads, whole = contrib.group(heads), contrib.total()
    path = Path(query).expanduser()
    exclude = None
    if path.is_file():
        try:
            image = Image.open(path).convert("RGB")
        except OSError as error:
            raise NeuronAttackError(f"Cannot read the query image {path} ({error}).") from error
        pixels = clip.preprocess(image)[None].to(device)
        with torch.no_grad():
            own = contributions(clip.model.visual.to(device), pixels, layers)
        queries = (own.group(heads)[0].cpu() - by_heads.mean(0),
                   own.total()[0].cpu() - whole.mean(0))
        same = [i for i, index in enumerate(contrib.indices.tolist())
                if image_set.image_path(index).resolve() == path.resolve()]
        exclude = same[0] if same else None
    else:
        text = text_embedding(clip, query).cpu()
        if text_reference:
            text = text - mean_text(clip, text_reference)
        queries = (text, text)
    results = []
    for keys, vector, names in ((by_heads - by_heads.mean(0), queries[0], heads),
                                (whole - whole.mean(0), queries[1], [])):
        indices, scores = nearest(vector, keys, count, exclude)
        results.append(Retrieval(
            query=query, heads=[head_name(head) for head in names],
            images=[str(image_set.image_path(int(contrib.indices[i]))) for i in indices],
            similarities=scores.tolist()))
    return results[0], results[1]
