"""The one text-encoding path: every word, prompt and class name goes through :func:`encode_texts`.

Short context, exactly. CLIP tokenizers pad every text to the full context (77 tokens), but words
are 1-6 tokens long. In a tower with a causal attention mask, position ``i`` only attends to
positions ``<= i``; when the tower also pools at the end-of-text token (``argmax``/``eos``
pooling, OpenAI's and most open_clip text towers), the pooled features cannot depend on anything
after that token. So texts are sorted by where they pool, batched, and each batch is cut just
after its last pooled position, with the positional table and causal mask cut to match: the same
arithmetic on fewer positions (float32 results agree with ``encode_text`` to rounding, ~1e-6).

Whether a tower qualifies is read from the model object itself (its ``attn_mask`` buffer, its
pooling attribute, an appended class token), never from its name; any other tower (bidirectional
attention, first/last-token pooling, CoCa's class token, a Hugging Face text encoder) is encoded at
full context by its own ``encode_text``, unchanged.

Caching. Encodings are cached on disk by callers (word dictionary, class embeddings) through
:func:`cached_text_encodings`, which encodes in chunks and saves each chunk as it is done, so an
interrupted run resumes at the last finished chunk.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
from safetensors import SafetensorError
from torch import Tensor

from neuronattack.artifacts import json_digest, load_tensors, save_tensors
from neuronattack.errors import NeuronAttackError
from neuronattack.models.clip import weights_fingerprint
from neuronattack.models.loaded import LoadedClip
from neuronattack.progress import progress_bar

# Pooling rules that read the features of the end-of-text token (open_clip's ``text_global_pool``).
END_OF_TEXT_POOLS = ("argmax", "eos")
# Texts per saved chunk of a cached encoding: a few seconds of work on a CPU, so little is redone.
CHUNK_TEXTS = 2048
_ROWS = "embeddings"


@dataclass(frozen=True)
class ShortContext:
    """Where a text tower keeps what a short-context pass slices, and how it pools.

    ``prefix`` is the tower's module path inside the CLIP (``""`` for open_clip's ``CLIP``, whose
    text tower is inlined, ``"text."`` for ``CustomTextCLIP``).
    """

    prefix: str
    pool: str
    eos_id: int | None


def short_context_plan(model: torch.nn.Module) -> tuple[ShortContext | None, str]:
    """``(plan, "")`` if cutting at the pooled token is exact for this tower, else ``(None, why)``.

    Read from the model object: where its positional table and attention mask live, how it pools.
    """
    text = getattr(model, "text", None)
    if isinstance(text, torch.nn.Module):
        tower, prefix = text, "text."
        pool, eos_id = getattr(tower, "pool_type", None), getattr(tower, "eos_id", None)
    else:
        tower, prefix = model, ""
        pool, eos_id = getattr(model, "text_pool_type", None), getattr(model, "text_eos_id", None)
    positions = getattr(tower, "positional_embedding", None)
    mask = getattr(tower, "attn_mask", None)
    if not isinstance(positions, Tensor) or positions.ndim != 2:
        return None, "the text tower has no open_clip positional table"
    if getattr(tower, "cls_emb", None) is not None:
        return None, "the text tower pools a class token appended after the padding"
    if getattr(tower, "use_pad_mask", False):
        return None, "the text tower masks padding itself"
    if not isinstance(mask, Tensor):
        return None, "the text tower attends in both directions, so padding changes every token"
    if not _is_causal(mask, len(positions)):
        return None, "the text tower's attention mask is not causal"
    if pool not in END_OF_TEXT_POOLS:
        return None, f"the text tower pools '{pool}', not at the end-of-text token"
    if pool == "eos" and eos_id is None:
        return None, "the text tower pools at 'eos' but names no end-of-text id"
    return ShortContext(prefix, pool, eos_id), ""


def _is_causal(mask: Tensor, context_length: int) -> bool:
    """Whether an additive mask ``[context, context]`` hides each later position from each query."""
    if mask.shape != (context_length, context_length):
        return False
    future = torch.ones(context_length, context_length, dtype=torch.bool,
                        device=mask.device).triu(1)
    return bool(torch.isneginf(mask[future]).all())


def pooled_positions(tokens: Tensor, plan: ShortContext) -> Tensor:
    """Where each text pools, ``[texts]``: the same rule as open_clip's ``text_global_pool``.

    ``argmax`` pools at the highest token id (the end-of-text token in CLIP's vocabulary); ``eos``
    at the first end-of-text id (position 0 when a text has none).
    """
    if plan.pool == "argmax":
        return tokens.argmax(dim=-1)
    return (tokens == plan.eos_id).int().argmax(dim=-1)


class _EncodeText(torch.nn.Module):
    """``encode_text`` as a forward, so ``functional_call`` can swap the sliced tables in."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, tokens: Tensor) -> Tensor:
        return self.model.encode_text(tokens)


def encode_short(model: torch.nn.Module, tokens: Tensor, plan: ShortContext) -> Tensor:
    """``model.encode_text(tokens)`` computed on the first ``length`` positions only.

    tokens ``[batch, context]`` -> ``[batch, out_dim]``; ``length`` is one past the batch's last
    pooled position. The positional table and causal mask are sliced for this call only
    (``torch.func.functional_call``): the model itself is never modified.
    """
    length = int(pooled_positions(tokens, plan).max()) + 1
    tower = model.get_submodule(plan.prefix.rstrip(".")) if plan.prefix else model
    sliced = {
        f"model.{plan.prefix}positional_embedding": tower.positional_embedding[:length],
        f"model.{plan.prefix}attn_mask": tower.attn_mask[:length, :length].contiguous(),
    }
    return torch.func.functional_call(_EncodeText(model), sliced, (tokens[:, :length],))


def encode_tokens(
    model: torch.nn.Module,
    tokens: Tensor,
    batch_size: int = 256,
    advance: Callable[[int], None] | None = None,
) -> Tensor:
    """Text-tower outputs ``[texts, out_dim]`` float32 on the CPU for tokens ``[texts, context]``.

    Towers that qualify (:func:`short_context_plan`) run in batches of similar pooled position,
    each cut after its longest text; others run ``encode_text`` at full context in the order
    given. Rows come back in the order of ``tokens``. ``advance(n)`` is called after each batch.
    """
    plan, _ = short_context_plan(model)
    if plan is None:
        order = torch.arange(len(tokens))
    else:  # on the CPU, like the output it indexes
        order = torch.argsort(pooled_positions(tokens, plan).cpu(), stable=True)
    out = None
    with torch.no_grad():
        for batch in order.split(batch_size):
            chunk = tokens[batch]
            encoded = (model.encode_text(chunk) if plan is None
                       else encode_short(model, chunk, plan)).float().cpu()  # [batch, out_dim]
            if out is None:
                out = torch.empty(len(tokens), encoded.shape[1])
            out[batch] = encoded
            if advance is not None:
                advance(len(batch))
    return out


def encode_texts(
    clip: LoadedClip,
    texts: Sequence[str],
    batch_size: int = 256,
    device: str | torch.device | None = None,
    show_progress: bool = False,
) -> Tensor:
    """Raw text-tower outputs ``[texts, out_dim]`` float32 on the CPU, in the order given.

    No template and no normalisation: callers decide both. ``device`` is where the tokens go and
    defaults to the model's own device; the model is not moved. Results go to the CPU batch by
    batch so a long list never piles up on a GPU.
    """
    _check_request(texts, batch_size)
    with _progress(show_progress, len(texts)) as advance:
        return encode_tokens(clip.model, _tokens(clip, texts, device), batch_size, advance)


def text_tower_fingerprint(model: torch.nn.Module) -> str:
    """:func:`weights_fingerprint` of everything but the vision tower."""
    return weights_fingerprint(model, exclude_prefix="visual.")


def cached_text_encodings(
    clip: LoadedClip,
    texts: Sequence[str],
    path: Path,
    identity: dict[str, str],
    *,
    extra_metadata: dict[str, str] | None = None,
    group: int = 1,
    reduce: Callable[[Tensor], Tensor] | None = None,
    batch_size: int = 256,
    show_progress: bool = False,
) -> Tensor:
    """Encodings of ``texts`` from the cache file ``path``, else encoded and saved there.

    ``identity`` is string metadata that must match for a file to be used (schema, fingerprint,
    what the texts are); the row count is checked too; ``extra_metadata`` is written, not checked.
    ``reduce`` maps the encodings of each run
    of ``group`` consecutive texts ``[chunk, out_dim]`` to the rows kept ``[chunk / group, ...]``
    (class embeddings keep one row per class, not 80 prompts). Work is saved chunk by chunk in
    ``PATH.parts/``, so an interrupted encoding resumes; the folder is removed once ``path``
    is written (atomically).
    """
    _check_request(texts, batch_size)
    if len(texts) % group:
        raise ValueError(f"{len(texts)} texts do not split into groups of {group}")
    rows = len(texts) // group
    cached = read_rows(path, identity, rows)
    if cached is not None:
        return cached
    parts = path.with_name(path.name + ".parts")
    chunk = group * max(1, CHUNK_TEXTS // group)
    done = {}
    for start in range(0, len(texts), chunk):
        part = read_rows(_part_path(parts, start), identity | {"part": str(start)},
                         min(chunk, len(texts) - start) // group)
        if part is not None:
            done[start] = part
    with _progress(show_progress, len(texts)) as advance:
        advance(sum(len(part) for part in done.values()) * group)
        for start in range(0, len(texts), chunk):
            if start in done:
                continue
            tokens = _tokens(clip, texts[start : start + chunk], None)
            encoded = encode_tokens(clip.model, tokens, batch_size, advance)
            done[start] = encoded if reduce is None else reduce(encoded)
            save_tensors(_part_path(parts, start), {_ROWS: done[start]},
                         identity | {"part": str(start)})
    result = torch.cat([done[start] for start in sorted(done)])
    save_tensors(path, {_ROWS: result}, identity | (extra_metadata or {}))
    shutil.rmtree(parts, ignore_errors=True)
    return result


def read_rows(path: Path, identity: dict[str, str], rows: int) -> Tensor | None:
    """The float32 tensor saved at ``path`` if its metadata holds ``identity`` and it has ``rows``
    rows; None for a missing, unreadable or foreign file (it is then rewritten)."""
    if not path.is_file():
        return None
    try:
        tensors, metadata = load_tensors(path, with_metadata=True)
    except (SafetensorError, OSError):
        return None
    found = tensors.get(_ROWS)
    if any(metadata.get(key) != value for key, value in identity.items()):
        return None
    if found is None or found.ndim != 2 or found.shape[0] != rows:
        return None
    return found.float()


def _part_path(parts: Path, start: int) -> Path:
    return parts / f"from-{start:09d}.safetensors"


def _check_request(texts: Sequence[str], batch_size: int) -> None:
    if not texts:
        raise NeuronAttackError("There are no texts to encode; give at least one word or prompt.")
    if batch_size < 1:
        raise NeuronAttackError(f"The text batch size is {batch_size}; use 1 or more.")


def _tokens(clip: LoadedClip, texts: Sequence[str], device: str | torch.device | None) -> Tensor:
    target = torch.device(device) if device is not None else next(clip.model.parameters()).device
    return clip.tokenizer(list(texts)).to(target)  # [texts, context_length]


@contextmanager
def _progress(show: bool, total: int) -> Iterator[Callable[[int], None]]:
    """A rich bar on stderr; yields ``advance(n)``."""
    columns = (TextColumn("encoding texts"), BarColumn(), MofNCompleteColumn(),
               TimeRemainingColumn())
    with progress_bar(*columns, disable=not show) as bar:
        task = bar.add_task("texts", total=total)
        yield lambda n: bar.advance(task, n)


def word_list_hash(words: Sequence[str]) -> str:
    """A 16-hex-digit fingerprint of the ordered list, for cache keys: as a JSON array, so entry
    boundaries are unambiguous (["ab", "c"] and ["a", "bc"] differ) and order matters, since
    embedding row i belongs to word i."""
    return json_digest(list(words))
