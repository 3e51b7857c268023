"""TextSpan (paper 1, method.md §2): each late head's outputs explained by a few texts.

For one head, C ``[images, out_dim]`` is its token-summed direct contribution over an image set and
R ``[texts, out_dim]`` the unit text embeddings of a pool. Centre C; project R onto the top
``rank`` principal directions of C (texts only matter through the span the head writes in); then
greedily, ``n_texts`` times: take the text whose projection has the largest standard deviation
over the images, add C's component along it to the reconstruction, and remove that direction from
C and from every text. The chosen directions are orthogonal, so the variance they explain adds up,
and the reconstruction of any contribution x is ``mean + Q Qᵀ (x − mean)`` with Q the chosen
directions, normalised: a head can be replaced by its texts on new images.

Artifacts in the output folder: ``heads.safetensors`` (per head: text indices, variance explained,
directions, mean) and ``heads.json`` (schema, model spec and fingerprints, image set, settings,
pool with roles, accuracies, versions).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from neuronattack.errors import NeuronAttackError
from neuronattack.heads.contributions import Contributions, Head, head_name

SCHEMA = "neuronattack.heads/1"
HEADS_TENSORS, HEADS_META = "heads.safetensors", "heads.json"


@dataclass(frozen=True)
class TextBasis:
    """One head's TextSpan result."""

    text_indices: Tensor  # [n_texts]  into the pool, in selection order
    variance_explained: Tensor  # [n_texts]  share of the head's centred variance, each text
    directions: Tensor  # [n_texts, out_dim]  orthonormal: the deflated texts, normalised
    mean: Tensor  # [out_dim]  the head's mean contribution
    variance: float  # mean squared norm of the centred contributions

    def reconstruct(self, contributions: Tensor) -> Tensor:
        """``[N, out_dim]`` contributions replaced by ``mean + Q Qᵀ (x − mean)``."""
        mean, directions = self.mean.to(contributions), self.directions.to(contributions)
        return mean + ((contributions - mean) @ directions.T) @ directions


def text_span(contributions: Tensor, texts: Tensor, n_texts: int = 10, rank: int = 80) -> TextBasis:
    """Greedy text basis of one head: ``contributions [N, out_dim]``, ``texts [T, out_dim]`` unit.

    Computed in float64; ``n_texts`` is capped by the rank of the centred contributions (after
    that there is no variance left to explain).
    """
    data = contributions.double()
    mean = data.mean(0)
    centred = data - mean
    total = float(centred.square().sum())
    _, singular, right = torch.linalg.svd(centred, full_matrices=False)
    keep = int((singular > singular[0] * 1e-6).sum()) if total > 0 else 0
    right = right[: min(rank, keep)]  # [r, out_dim]
    candidates = (texts.double() @ right.T) @ right  # [T, out_dim]
    steps = min(n_texts, right.shape[0])
    indices, shares, directions = [], [], []
    for _ in range(steps):
        spread = (centred @ candidates.T).std(0)  # [T]
        choice = int(spread.argmax())
        direction = candidates[choice]
        norm2 = float(direction @ direction)
        if norm2 <= 1e-20:
            break
        along = (centred @ direction) / norm2  # [N]
        piece = along[:, None] * direction
        indices.append(choice)
        shares.append(float(piece.square().sum()) / total)
        directions.append(direction / norm2**0.5)
        centred = centred - piece
        candidates = candidates - ((candidates @ direction) / norm2)[:, None] * direction
    out_dim = contributions.shape[1]
    return TextBasis(
        text_indices=torch.tensor(indices, dtype=torch.long),
        variance_explained=torch.tensor(shares, dtype=torch.float32),
        directions=(torch.stack(directions) if directions
                    else torch.zeros(0, out_dim, dtype=torch.float64)).float(),
        mean=mean.float(),
        variance=total / max(len(data), 1),
    )


def replaced_by_texts(contrib: Contributions, bases: dict[Head, TextBasis]) -> Tensor:
    """Embeddings ``[N, out_dim]`` with every head in ``bases`` replaced by its reconstruction."""
    embedding = contrib.total()
    for head, basis in bases.items():
        values = contrib.head(*head)
        embedding = embedding - values + basis.reconstruct(values)
    return embedding


def heads_mean_ablated(contrib: Contributions, heads: list[Head], means: Tensor | None = None
                       ) -> Tensor:
    """Embeddings ``[N, out_dim]`` with ``heads`` replaced by their means over ``contrib`` (or by
    ``means [len(heads), out_dim]`` from a reference set)."""
    embedding = contrib.total()
    for slot, head in enumerate(heads):
        values = contrib.head(*head)
        mean = values.mean(0) if means is None else means[slot]
        embedding = embedding - values + mean
    return embedding


@dataclass(frozen=True)
class HeadCard:
    """Everything the artifact knows about one head, ready to print or serialise."""

    layer: int
    head: int
    texts: list[tuple[str, str, float]]  # (text, role, variance explained), in selection order
    variance: float
    variance_explained: float  # by all its texts together

    @property
    def name(self) -> str:
        return head_name((self.layer, self.head))

    def as_dict(self) -> dict:
        return {"head": self.name, "layer": self.layer, "index": self.head,
                "variance": self.variance, "variance_explained": self.variance_explained,
                "texts": [{"text": text, "role": role, "variance_explained": share}
                          for text, role, share in self.texts]}


@dataclass(frozen=True)
class HeadRoles:
    """A loaded TextSpan artifact."""

    root: Path
    meta: dict
    heads: list[Head]
    bases: dict[Head, TextBasis]

    @classmethod
    def load(cls, root: Path) -> HeadRoles:
        from neuronattack.artifacts import load_tensors, read_json

        root = Path(root)
        for name in (HEADS_TENSORS, HEADS_META):
            if not (root / name).exists():
                raise NeuronAttackError(
                    f"{root} holds no head roles (no {name}); build them with `neuronattack heads "
                    f"build --images DIR --out {root}`."
                )
        meta = read_json(root / HEADS_META)
        if meta.get("schema") != SCHEMA:
            raise NeuronAttackError(f"{root / HEADS_META} has schema {meta.get('schema')!r}, not "
                                    f"{SCHEMA!r}; rebuild it with `neuronattack heads build`.")
        tensors = load_tensors(root / HEADS_TENSORS)
        heads = [(int(layer), int(head)) for layer, head in tensors["heads"].tolist()]
        counts = tensors["n_texts"].tolist()
        bases = {
            head: TextBasis(
                text_indices=tensors["text_indices"][row, : counts[row]],
                variance_explained=tensors["variance_explained"][row, : counts[row]],
                directions=tensors["directions"][row, : counts[row]],
                mean=tensors["mean"][row],
                variance=float(tensors["variance"][row]),
            )
            for row, head in enumerate(heads)
        }
        return cls(root, meta, heads, bases)

    @property
    def texts(self) -> list[str]:
        return self.meta["pool"]["texts"]

    @property
    def roles(self) -> list[str]:
        return self.meta["pool"]["roles"]

    @property
    def model(self) -> str:
        """The spec of the CLIP the roles were built on."""
        return self.meta["model"]

    @property
    def vision_fingerprint(self) -> str:
        return self.meta["vision_fingerprint"]

    @property
    def accuracy(self) -> dict:
        """Zero-shot accuracy plain, text-replaced and mean-ablated, as ``heads build`` measured."""
        return self.meta["accuracy"]

    @property
    def layers(self) -> tuple[int, ...]:
        return tuple(self.meta["settings"]["layers"])

    def check_head(self, head: Head) -> None:
        if head not in self.bases:
            layers = sorted({layer for layer, _ in self.heads})
            raise NeuronAttackError(
                f"Head {head_name(head)} is not in this artifact; it has layers "
                f"{', '.join(map(str, layers))} with heads 0..{max(h for _, h in self.heads)}."
            )

    def card(self, head: Head) -> HeadCard:
        self.check_head(head)
        basis = self.bases[head]
        texts = [(self.texts[i], self.roles[i], float(share))
                 for i, share in zip(basis.text_indices.tolist(), basis.variance_explained,
                                     strict=True)]
        return HeadCard(head[0], head[1], texts, basis.variance,
                        float(basis.variance_explained.sum()))

    def search(self, word: str) -> list[tuple[Head, str, int, float]]:
        """Heads with a text containing ``word`` (case-insensitive) or of role ``word``:
        ``(head, text, rank among its texts, variance explained)``, largest share first."""
        needle = word.strip().lower()
        if not needle:
            raise NeuronAttackError("Give a word to search for.")
        hits = []
        for head in self.heads:
            for rank, (text, role, share) in enumerate(self.card(head).texts):
                if needle in text.lower() or needle == role:
                    hits.append((head, text, rank, share))
        return sorted(hits, key=lambda hit: (-hit[3], hit[0]))

    def role_shares(self, query: str) -> dict[Head, float]:
        """Per head, the share of its texts' explained variance carried by texts matching
        ``query``: texts of that role, or containing it as a word."""
        needle = query.strip().lower()
        if not needle:
            raise NeuronAttackError("Give a role to match, e.g. --role background.")
        roles = {role for role in self.roles if role}
        if needle not in roles and not any(needle in text.lower().split()
                                           for text in self.texts):
            known = ", ".join(sorted(roles)) or "none (the pool has no [role] lines)"
            raise NeuronAttackError(
                f"No text of the pool matches {query!r}; roles of this pool: {known}."
            )
        shares = {}
        for head in self.heads:
            card = self.card(head)
            explained = sum(share for _, _, share in card.texts)
            matched = sum(share for text, role, share in card.texts
                          if role == needle or needle in text.lower().split())
            shares[head] = matched / explained if explained > 0 else 0.0
        return shares

    def role_heads(self, query: str, min_share: float = 0.5, count: int | None = None
                   ) -> list[Head]:
        """Heads whose texts match ``query`` for at least ``min_share`` of their explained
        variance, most specialised first; at most ``count``."""
        shares = self.role_shares(query)
        chosen = sorted((head for head, share in shares.items() if share >= min_share),
                        key=lambda head: (-shares[head], head))
        return chosen[:count] if count is not None else chosen


def build_head_roles(
    clip, image_set, out_dir: Path, layers: tuple[int, ...], pool, n_texts: int = 10,
    rank: int = 80, names_file: Path | None = None, batch_size: int = 64, device="cpu",
    num_workers: int = 0, show_progress: bool = True,
) -> HeadRoles:
    """TextSpan for every head of ``layers`` over ``image_set``; writes and returns the artifact.

    With class folders, also the zero-shot accuracy with those heads replaced by their texts
    (and, for comparison, mean-ablated).
    """
    from neuronattack.artifacts import save_tensors, versions, write_json
    from neuronattack.heads.contributions import collect
    from neuronattack.models.clip import weights_fingerprint
    from neuronattack.neurons.text_dictionary import cached_encodings, text_tower_fingerprint
    from neuronattack.neurons.vocabulary import Vocabulary

    if n_texts < 1:
        raise NeuronAttackError(f"--texts-per-head must be 1 or more, not {n_texts}.")
    vocabulary = Vocabulary(words=pool.texts, source=pool.source, hash=pool.hash, info={})
    encoded = cached_encodings(clip, vocabulary, show_progress=show_progress)
    text_units = torch.nn.functional.normalize(encoded.float(), dim=-1)
    contrib = collect(clip, image_set, layers, batch_size, device, num_workers, show_progress)
    bases = {head: text_span(contrib.head(*head), text_units, n_texts, rank)
             for head in contrib.head_names()}
    accuracy = None
    if image_set.classes and all(label is not None for label in image_set.labels):
        accuracy = replacement_accuracy(clip, image_set, contrib, bases, names_file,
                                        show_progress)
    out_dir = Path(out_dir)
    heads = list(bases)
    width = max(len(basis.text_indices) for basis in bases.values())
    out_dim = contrib.embed.shape[1]

    def padded(values: Tensor, fill) -> Tensor:
        shape = (width, *values.shape[1:])
        return torch.cat([values, torch.full((shape[0] - len(values), *shape[1:]), fill,
                                             dtype=values.dtype)])

    tensors = {
        "heads": torch.tensor(heads, dtype=torch.long),
        "n_texts": torch.tensor([len(bases[h].text_indices) for h in heads], dtype=torch.long),
        "text_indices": torch.stack([padded(bases[h].text_indices, -1) for h in heads]),
        "variance_explained": torch.stack([padded(bases[h].variance_explained, 0.0)
                                           for h in heads]),
        "directions": torch.stack([padded(bases[h].directions, 0.0) for h in heads])
        if width else torch.zeros(len(heads), 0, out_dim),
        "mean": torch.stack([bases[h].mean for h in heads]),
        "variance": torch.tensor([bases[h].variance for h in heads]),
    }
    save_tensors(out_dir / HEADS_TENSORS, tensors, {"schema": SCHEMA})
    embedding = contrib.total()
    write_json(out_dir / HEADS_META, {
        "schema": SCHEMA,
        "model": clip.spec,
        "vision_fingerprint": weights_fingerprint(clip.model.visual),
        "text_fingerprint": text_tower_fingerprint(clip.model),
        "images": {"root": str(image_set.root), "fingerprint": image_set.fingerprint(),
                   "count": len(image_set), "used": len(contrib.indices)},
        "settings": {"layers": list(layers), "n_texts": n_texts, "rank": rank,
                     "convention": "centred"},
        "embedding_variance": float((embedding - embedding.mean(0)).square().sum(1).mean()),
        "pool": {"source": pool.source, "hash": pool.hash, "texts": list(pool.texts),
                 "roles": list(pool.roles)},
        "accuracy": accuracy,
        "versions": versions(),
    })
    return HeadRoles.load(out_dir)


def replacement_accuracy(clip, image_set, contrib: Contributions, bases: dict[Head, TextBasis],
                         names_file: Path | None, show_progress: bool) -> dict:
    """Zero-shot accuracy: plain, heads replaced by their texts, heads mean-ablated."""
    from neuronattack.heads.zeroshot import accuracy, classifier, folder_labels

    names, labels = folder_labels(image_set, names_file)
    classes = classifier(clip, names, show_progress=show_progress)
    labels = labels[contrib.indices]
    return {
        "baseline": accuracy(contrib.total(), classes, labels),
        "text_replaced": accuracy(replaced_by_texts(contrib, bases), classes, labels),
        "mean_ablated": accuracy(heads_mean_ablated(contrib, list(bases)), classes, labels),
        "classes": len(names),
    }


def check_model(roles: HeadRoles, clip) -> None:
    """Refuse a model other than the one the roles were computed for."""
    from neuronattack.models.clip import weights_fingerprint

    if roles.vision_fingerprint != weights_fingerprint(clip.model.visual):
        raise NeuronAttackError(
            f"The head roles in {roles.root} were computed for other weights of "
            f"{roles.model}; rebuild them with `neuronattack heads build`."
        )


def roles_and_clip(roles_dir: Path | None, clip_spec: str | None, device="cpu"):
    """``(HeadRoles or None, LoadedClip)``: the artifact's model unless ``clip_spec`` names
    another, which must then have the same vision weights."""
    from neuronattack.models import load_clip

    roles = HeadRoles.load(roles_dir) if roles_dir is not None else None
    spec = clip_spec or (roles.model if roles else None)
    if spec is None:
        raise NeuronAttackError("Name the CLIP with --clip, or pass --roles (a `neuronattack heads "
                                "build` folder) to use its model.")
    clip = load_clip(spec, device=device)
    if roles is not None:
        check_model(roles, clip)
    return roles, clip


def select_heads(roles: HeadRoles | None, names: str | None, role: str | None,
                 min_share: float = 0.5) -> list[Head]:
    """Heads named ``"10.3,11.7"``, or those of ``role`` in ``roles``; exactly one of the two."""
    from neuronattack.heads.contributions import parse_head

    if (names is None) == (role is None):
        raise NeuronAttackError("Give exactly one of --heads (e.g. --heads 10.3,11.7) and --role "
                                "(e.g. --role background).")
    if names is not None:
        return [parse_head(name) for name in names.split(",") if name.strip()]
    if roles is None:
        raise NeuronAttackError("--role needs --roles, a folder written by `neuronattack heads "
                                "build`.")
    return roles.role_heads(role, min_share)
