"""Load an open_clip CLIP ViT from one spec string, with errors a user can act on.

A spec names where the weights come from (see :func:`load_clip`). Every source ends the same way:
open_clip builds the architecture, we check that its vision tower is open_clip's own
``VisionTransformer`` (the only tower neuronattack can decompose), and then we put the weights in
ourselves, so that no checkpoint is ever unpickled beyond plain tensors and so that a missing
download fails in milliseconds instead of after huggingface_hub's retries.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import open_clip
import torch
from huggingface_hub import get_hf_file_metadata, hf_hub_download, hf_hub_url
from huggingface_hub.errors import EntryNotFoundError
from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME
from open_clip.transformer import VisionTransformer
from safetensors.torch import load_file

from neuronattack.errors import NeuronAttackError
from neuronattack.models.hub import (
    HF_HUB_PREFIX,
    LOCAL_DIR_PREFIX,
    absolute_path,
    close_matches,
    first_line,
    fresh_rng,
    is_offline,
)
from neuronattack.models.loaded import LoadedClip
from neuronattack.models.plugins import clip_plugin
from neuronattack.validation import parser_refusal

RANDOM_PREFIX = "random:"
TRANSFORMERS_PREFIX = "hf:"  # a transformers CLIPModel: hub repo id or folder (models/hf_clip.py)
CONFIG_NAME = "open_clip_config.json"
CHECKPOINT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin")

# The names open_clip writes when it saves a model folder or pushes to the hub, safest first.
_STANDARD_WEIGHT_NAMES = (HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME)
_OPEN_CLIP_DIR = os.path.dirname(open_clip.__file__)
_LN_NOISE = 0.1
_BIAS_NOISE = 0.1
_SLUG_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_SLUG_MAX_LEN = 80

SourceKind = Literal["random", "tag", "file", "dir", "hub", "transformers"]


@dataclass(frozen=True)
class _Source:
    """A parsed spec: which kind of source, and the one string each kind needs.

    ``location`` is the pretrained tag (tag), the absolute checkpoint path (file), the absolute
    folder (dir) or the repo id (hub), or either of the last two (transformers); ``arch`` is empty
    for dir, hub and transformers, whose config travels with the weights.
    """

    kind: SourceKind
    spec: str
    arch: str = ""
    location: str = ""
    seed: int = 0


def load_clip(spec: str, device: str | torch.device = "cpu", seed: int = 0) -> LoadedClip:
    """Build the CLIP model a spec names; raise NeuronAttackError for anything the user can fix.

    Spec forms, in the order they are recognised:

    - ``NAME`` or ``NAME:REST`` where NAME is an installed plug-in's (``models.plugins``), such as
      ``toy`` (or ``toy:/path/weights.safetensors``): the small CLIP trained on the toy world and
      shipped in the package (``neuronattack.toy``).
    - ``random:ARCH`` or ``random:ARCH@SEED``: random weights with every LayerNorm scale and every
      bias perturbed, so tests exercise the scale and bias terms a fresh init leaves at 1 and 0.
      Without ``@SEED`` the ``seed`` argument is used.
    - ``hf-hub:org/name``: an open_clip repo on the Hugging Face hub (or in its local cache).
    - ``local-dir:/path`` or a bare folder path: a folder with ``open_clip_config.json`` and
      weights, as written by open_clip.
    - ``hf:org/name``, ``hf:/path`` or a bare folder with ``config.json`` and no open_clip config:
      a transformers ``CLIPModel`` (hub repo or ``save_pretrained`` folder), mapped exactly onto
      open_clip's architecture (``neuronattack.models.hf_clip``).
    - ``ARCH:TAG``: an open_clip pretrained tag such as ``ViT-B-32:openai``.
    - ``ARCH:/path/to/checkpoint`` (.safetensors/.pt/.pth/.bin): weights saved from an open_clip
      model of that architecture. Weights trained with QuickGELU need the ``-quickgelu`` arch name.

    Building happens under a private torch RNG seeded with ``seed``, so the same spec gives the
    same model and the caller's global RNG is left as it was.
    """
    plugin = clip_plugin(spec)
    if plugin is not None:
        return plugin.load_clip(spec.partition(":")[2] or None, device)
    source = _parse_spec(spec, seed)
    if source.kind == "transformers":
        from neuronattack.models.hf_clip import load_transformers_clip

        return load_transformers_clip(source, device)
    # Weights are located before the (slow) build so a missing download is reported at once.
    checkpoint = None if source.kind == "random" else _fetch_checkpoint(source)
    model, preprocess = _build(source)
    _require_vit_tower(model, source.spec)
    if checkpoint is None:
        _perturb_scales_and_biases(model, source.seed)
    else:
        _load_weights(model, _read_state_dict(checkpoint), source.spec, checkpoint)
    model.requires_grad_(False)  # nothing here trains: attacks need image gradients only
    model.to(device).eval()
    tokenizer_name = _open_clip_name(source)
    return LoadedClip(
        model=model,
        preprocess=preprocess,
        tokenizer=open_clip.get_tokenizer(tokenizer_name),
        spec=source.spec,
        arch=tokenizer_name,
    )


def clip_spec_problem(value: object) -> str | None:
    """What is wrong with a CLIP spec, found by the loader's own parser without loading anything
    (a plug-in's spec is its loader's business); None when nothing is."""
    if isinstance(value, str) and clip_plugin(value) is not None:
        return None
    return parser_refusal(lambda spec: _parse_spec(spec, 0), value)


# Tensors up to this size enter a weights fingerprint: every LayerNorm, bias and positional table,
# which any training or fine-tuning moves. Cheap enough to compute on every cache lookup: 13.5 MiB
# and 14 ms for ViT-B-32's text tower (its 512x512 matrices are small enough to count), 2 ms for
# ViT-L-14's.
FINGERPRINT_MAX_NUMEL = 300_000


def weights_fingerprint(module: torch.nn.Module, exclude_prefix: str | None = None) -> str:
    """A short hash of a module's small tensors (names, shapes, values).

    The spec names where weights came from, not what they are: a checkpoint replaced under the
    same path, or retrained toy weights, keep their spec. Caches and resumable runs compare this
    too, so they never serve results of other weights.
    """
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        if tensor.numel() > FINGERPRINT_MAX_NUMEL or (
                exclude_prefix is not None and name.startswith(exclude_prefix)):
            continue
        digest.update(f"{name}:{tuple(tensor.shape)}:".encode())
        digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def spec_slug(spec: str) -> str:
    """A folder name for a spec: only letters, digits, ``.``, ``_`` and ``-``; at most 80 chars.

    Pass ``LoadedClip.spec`` (the normalised form) so the same model always maps to one folder.
    Runs of other characters (the ``:`` and ``/`` of specs and paths) become one ``_``; overlong
    slugs keep their start plus a hash of the whole spec, so long checkpoint paths stay distinct.
    """
    slug = _SLUG_UNSAFE.sub("_", spec.strip()).strip("._-")
    if slug and len(slug) <= _SLUG_MAX_LEN:
        return slug
    digest = hashlib.sha256(spec.encode()).hexdigest()[:12]
    return f"{slug[: _SLUG_MAX_LEN - len(digest) - 1]}-{digest}".lstrip("-")


def _parse_spec(spec: str, seed: int) -> _Source:
    """Decide what a spec means; the one place that sets the precedence of the forms.

    Schema prefixes win, then an existing folder (a path may itself contain ``:``), then
    ``ARCH:REST`` where REST is a checkpoint path if it has a path separator or checkpoint suffix,
    otherwise a pretrained tag.
    """
    text = spec.strip()
    if not text:
        raise NeuronAttackError(
            "The model spec is empty; give one such as 'ViT-B-32:openai' or 'random:ViT-B-32'."
        )
    if text.startswith(RANDOM_PREFIX):
        return _parse_random(text[len(RANDOM_PREFIX) :], seed)
    if text.startswith(HF_HUB_PREFIX):
        return _parse_hub(text[len(HF_HUB_PREFIX) :])
    if text.startswith(TRANSFORMERS_PREFIX):
        return _parse_transformers(text[len(TRANSFORMERS_PREFIX) :])
    if text.startswith(LOCAL_DIR_PREFIX):
        return _parse_dir(text[len(LOCAL_DIR_PREFIX) :])
    if Path(text).expanduser().is_dir():
        return _parse_dir(text)
    if ":" not in text:
        raise _bare_name_error(text)
    arch_text, rest = text.split(":", 1)
    arch = _known_arch(arch_text)
    if _looks_like_path(rest):
        return _parse_file(arch, rest)
    return _parse_tag(arch, rest)


def _parse_random(rest: str, seed: int) -> _Source:
    arch_text, _, seed_text = rest.partition("@")
    if seed_text:
        try:
            seed = int(seed_text)
        except ValueError:
            raise NeuronAttackError(
                f"The seed in 'random:{rest}' is not an integer; write it as "
                f"'random:{arch_text}@0'."
            ) from None
    arch = _known_arch(arch_text)
    return _Source("random", f"{RANDOM_PREFIX}{arch}@{seed}", arch=arch, seed=seed)


def _parse_hub(repo_id: str) -> _Source:
    if not repo_id.strip("/"):
        raise NeuronAttackError("The spec 'hf-hub:' names no repo; write it as 'hf-hub:org/name'.")
    return _Source("hub", f"{HF_HUB_PREFIX}{repo_id}", location=repo_id)


def _parse_transformers(location: str) -> _Source:
    """``hf:X``: X is a folder if one exists there, else a hub repo id."""
    if Path(location).expanduser().is_dir():
        folder = str(absolute_path(location))
        return _Source("transformers", f"{TRANSFORMERS_PREFIX}{folder}", location=folder)
    if not location.strip("/"):
        raise NeuronAttackError("The spec 'hf:' names no repo; write it as 'hf:org/name'.")
    return _Source("transformers", f"{TRANSFORMERS_PREFIX}{location}", location=location)


def _parse_dir(path_text: str) -> _Source:
    folder = absolute_path(path_text)
    if (folder / "config.json").is_file() and not (folder / CONFIG_NAME).is_file():
        return _parse_transformers(str(folder))
    if not folder.is_dir():
        raise NeuronAttackError(
            f"The model folder {folder} does not exist; give a folder holding {CONFIG_NAME} "
            "and the weights, as written by open_clip."
        )
    if not (folder / CONFIG_NAME).is_file():
        raise NeuronAttackError(
            f"The folder {folder} has no {CONFIG_NAME}; a model folder needs open_clip's config "
            "next to the weights (for a bare checkpoint file use 'ARCH:/path/to/file')."
        )
    return _Source("dir", f"{LOCAL_DIR_PREFIX}{folder}", location=str(folder))


def _parse_file(arch: str, path_text: str) -> _Source:
    path = absolute_path(path_text)
    if not path.is_file():
        raise NeuronAttackError(
            f"The checkpoint file {path} does not exist; check the path in '{arch}:{path_text}'."
        )
    return _Source("file", f"{arch}:{path}", arch=arch, location=str(path))


def _parse_tag(arch: str, tag: str) -> _Source:
    if not open_clip.get_pretrained_cfg(arch, tag):
        raise NeuronAttackError(_unknown_tag_message(arch, tag))
    # open_clip matches tags case- and dash-insensitively; spell them its way so specs compare.
    clean_tag = tag.lower().replace("-", "_")
    return _Source("tag", f"{arch}:{clean_tag}", arch=arch, location=clean_tag)


def _bare_name_error(text: str) -> NeuronAttackError:
    """A spec with no ``:`` that is not a folder: say which part is missing."""
    arch = text.replace("/", "-")
    if arch in open_clip.list_models():
        tags = open_clip.list_pretrained_tags_by_model(arch)
        examples = " or ".join(f"'{arch}:{tag}'" for tag in tags[:2])
        weights = f"pretrained weights such as {examples}" if tags else "'ARCH:/path/to/weights'"
        return NeuronAttackError(
            f"The spec '{text}' names an architecture but no weights; use {weights}, "
            f"or 'random:{arch}' for random weights."
        )
    if Path(text).expanduser().is_file():
        return NeuronAttackError(
            f"The file {absolute_path(text)} is a bare checkpoint; name its architecture as in "
            f"'ViT-B-32:{text}'."
        )
    if os.sep in text or "/" in text:
        return NeuronAttackError(
            f"The model folder {absolute_path(text)} does not exist; give a folder holding "
            f"{CONFIG_NAME} and the weights, or a spec such as 'ViT-B-32:openai'."
        )
    return _unknown_arch_error(text)


def _known_arch(text: str) -> str:
    """The open_clip model name for ``text``, or an error suggesting the closest names.

    ``/`` is accepted for ``-`` because OpenAI spells its models ``ViT-B/32``.
    """
    arch = text.strip().replace("/", "-")
    if arch in open_clip.list_models():
        return arch
    raise _unknown_arch_error(text)


def _unknown_arch_error(text: str) -> NeuronAttackError:
    close = close_matches(text.strip().replace("/", "-"), open_clip.list_models())
    hint = f"did you mean {', '.join(close)}?" if close else "see open_clip.list_models()."
    return NeuronAttackError(f"Unknown CLIP architecture '{text}'; {hint}")


def _unknown_tag_message(arch: str, tag: str) -> str:
    tags = open_clip.list_pretrained_tags_by_model(arch)
    if not tags:
        return (
            f"open_clip has no pretrained weights for {arch}; use 'random:{arch}' or a checkpoint "
            f"file as '{arch}:/path/to/weights'."
        )
    close = close_matches(tag, tags) or tags[:5]
    return (
        f"Unknown pretrained tag '{tag}' for {arch}; did you mean "
        f"{', '.join(f'{arch}:{t}' for t in close)}?"
    )


def _looks_like_path(text: str) -> bool:
    return "/" in text or os.sep in text or text.lower().endswith(CHECKPOINT_SUFFIXES)


def _open_clip_name(source: _Source) -> str:
    if source.kind == "dir":
        return f"{LOCAL_DIR_PREFIX}{source.location}"
    if source.kind == "hub":
        return f"{HF_HUB_PREFIX}{source.location}"
    return source.arch


def _fetch_checkpoint(source: _Source) -> Path:
    """The local weights file for a non-random source, downloaded if need be."""
    if source.kind == "file":
        return Path(source.location)
    if source.kind == "dir":
        return _checkpoint_in_dir(Path(source.location))
    if source.kind == "hub":
        return hub_file(source.location, _STANDARD_WEIGHT_NAMES, source)
    repo_id, filenames = _tag_hub_location(source.arch, source.location)
    return hub_file(repo_id, filenames, source)


def _tag_hub_location(arch: str, tag: str) -> tuple[str, tuple[str, ...]]:
    """Where open_clip's registry keeps a tag's weights: a repo and the file names to try.

    Every tag in open_clip 3.x has an ``hf_hub`` entry; ``org/name/`` means open_clip's standard
    file names, ``org/name/file.bin`` a specific file, whose .safetensors twin is tried first.
    """
    repo_id, filename = os.path.split(open_clip.get_pretrained_cfg(arch, tag)["hf_hub"])
    if not filename:
        return repo_id, _STANDARD_WEIGHT_NAMES
    stem, suffix = os.path.splitext(filename)
    if suffix in (".bin", ".pth"):
        return repo_id, (f"{stem}.safetensors", filename)
    return repo_id, (filename,)


def hub_file(repo_id: str, filenames: tuple[str, ...], source: _Source) -> Path:
    """The first of ``filenames`` in a hub repo, from the local cache if it is there.

    The cache is tried before the network so a pre-populated cache works with no connection at
    all. The network try is one HEAD without retries: huggingface_hub's own download retries for
    about 45 s when the hub cannot be reached.
    """
    try:
        for name in filenames:
            try:
                return Path(hf_hub_download(repo_id, name, local_files_only=True))
            except EntryNotFoundError:
                continue
        for name in filenames:
            try:
                get_hf_file_metadata(hf_hub_url(repo_id, name))
            except EntryNotFoundError:
                continue
            return Path(hf_hub_download(repo_id, name))
        reason = f"{repo_id} has none of {', '.join(filenames)}"
    # The hub client raises many types (offline mode, DNS, HTTP, auth); all mean the same here.
    except Exception as error:
        reason = _hub_reason(error)
    local_copy = (
        f"a checkpoint file as '{source.arch}:/path/to/{HF_SAFE_WEIGHTS_NAME}'"
        if source.arch
        else f"a downloaded copy of the repo as '{_folder_prefix(source)}/path/to/repo'"
    )
    raise NeuronAttackError(
        f"The weights for '{source.spec}' could not be downloaded or found in the local Hugging "
        f"Face cache ({reason}); pass {local_copy}, or pre-populate the Hugging Face cache and "
        "set HF_HUB_OFFLINE=1."
    )


def _folder_prefix(source: _Source) -> str:
    return TRANSFORMERS_PREFIX if source.kind == "transformers" else LOCAL_DIR_PREFIX


def _checkpoint_in_dir(folder: Path) -> Path:
    """The weights file in a model folder: open_clip's standard name, else the only checkpoint."""
    for name in _STANDARD_WEIGHT_NAMES:
        if (folder / name).is_file():
            return folder / name
    candidates = sorted(p for p in folder.iterdir() if p.suffix in CHECKPOINT_SUFFIXES)
    if len(candidates) == 1:
        return candidates[0]
    found = ", ".join(p.name for p in candidates) if candidates else "none"
    raise NeuronAttackError(
        f"The folder {folder} must hold one checkpoint ({HF_SAFE_WEIGHTS_NAME} preferred) but "
        f"holds {found}; rename the one to use to {HF_SAFE_WEIGHTS_NAME}."
    )


def _build(source: _Source) -> tuple[torch.nn.Module, Callable[..., torch.Tensor]]:
    """The architecture with random weights and open_clip's eval transform, on the CPU.

    Pretrained tags bring their QuickGELU flag and normalisation: open_clip 3.x only warns when
    a tag trained with QuickGELU meets a GELU config, so we pass ``force_quick_gelu`` ourselves.
    """
    kwargs: dict[str, object] = {}
    if source.kind == "tag":
        cfg = open_clip.get_pretrained_cfg(source.arch, source.location)
        kwargs = {
            "force_quick_gelu": bool(cfg.get("quick_gelu", False)),
            "image_mean": cfg.get("mean"),
            "image_std": cfg.get("std"),
            "image_interpolation": cfg.get("interpolation"),
            "image_resize_mode": cfg.get("resize_mode"),
        }
    if source.kind in ("dir", "hub"):
        # Hub repos are built from their cached config; weights are always loaded by us.
        config_dir = source.location if source.kind == "dir" else _cached_config_dir(source)
        name = f"{LOCAL_DIR_PREFIX}{config_dir}"
        kwargs["load_weights"] = False
    else:
        name = source.arch
    try:
        with fresh_rng(source.seed), _quiet_open_clip_logs():
            model, _, preprocess = open_clip.create_model_and_transforms(
                name, device="cpu", precision="fp32", **kwargs
            )
    except (ValueError, RuntimeError, KeyError, TypeError, OSError) as error:
        raise NeuronAttackError(
            f"open_clip could not build '{source.spec}' ({first_line(error)}); check that its "
            f"{CONFIG_NAME} or architecture name is a valid open_clip model config."
        ) from error
    return model, preprocess


def _cached_config_dir(source: _Source) -> str:
    """The cache snapshot folder holding a hub repo's config, which open_clip reads as a folder."""
    return str(hub_file(source.location, (CONFIG_NAME,), source).parent)


@contextmanager
def _quiet_open_clip_logs() -> Iterator[None]:
    """Hide open_clip's below-error log records while it builds a model.

    It reports "No pretrained weights loaded ... initialized randomly" because we load the
    weights ourselves afterwards; shown to a user that line would be false.
    """
    root = logging.getLogger()

    def keep(record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR or not record.pathname.startswith(_OPEN_CLIP_DIR)

    root.addFilter(keep)
    try:
        yield
    finally:
        root.removeFilter(keep)


def _require_vit_tower(model: torch.nn.Module, spec: str) -> None:
    visual = getattr(model, "visual", None)
    if not isinstance(visual, VisionTransformer):
        tower = type(visual).__name__
        raise NeuronAttackError(
            f"The model '{spec}' has a {tower} vision tower, but neuronattack decomposes only "
            "open_clip's own ViT towers (VisionTransformer); pick a ViT such as 'ViT-B-32:openai'."
        )


@torch.no_grad()
def _perturb_scales_and_biases(model: torch.nn.Module, seed: int) -> None:
    """Set LayerNorm scales to 1 + 0.1 N(0,1) and every bias to 0.1 N(0,1), deterministically.

    A fresh init leaves these at exactly 1 and 0, which would hide any bug in how a
    decomposition handles them.
    """
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, torch.nn.LayerNorm) and module.weight is not None:
            noise = torch.randn(module.weight.shape, generator=generator)
            module.weight.copy_(1.0 + _LN_NOISE * noise)
    for name, param in model.named_parameters():
        if "bias" in name.rsplit(".", 1)[-1]:
            param.copy_(_BIAS_NOISE * torch.randn(param.shape, generator=generator))


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The weights in a checkpoint file, unwrapped from open_clip's training-checkpoint layout."""
    loaded = read_tensors(path)
    if isinstance(loaded, dict) and isinstance(loaded.get("state_dict"), dict):
        loaded = loaded["state_dict"]  # open_clip's training checkpoints wrap the weights
    if not isinstance(loaded, dict) or not loaded:
        raise NeuronAttackError(
            f"{path} does not hold a state dict; save it with torch.save(model.state_dict())."
        )
    # Checkpoints saved from DistributedDataParallel prefix every key with 'module.'.
    if all(key.startswith("module.") for key in loaded):
        loaded = {key[len("module.") :]: value for key, value in loaded.items()}
    return loaded


def read_tensors(path: Path) -> object:
    """A checkpoint's contents, never unpickling anything but tensors and plain containers.

    open_clip's own loader retries ``torch.load`` without ``weights_only`` when it sees a
    TypeError, which would run arbitrary pickled code, so checkpoints are read here.
    """
    try:
        if path.suffix == ".safetensors":
            return load_file(path)
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        # torch's own message goes on to explain how to load the file unsafely. It says "weights
        # only load failed" for random bytes too: only an unsupported global is a pickled object.
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(error))
        reason = (f"it pickles objects other than tensors ({found[1]})" if found else
                  "it is not a PyTorch checkpoint: the file is damaged or of another format")
    # Bad files also make torch.load raise RuntimeError (TorchScript), KeyError or EOFError.
    except Exception as error:
        reason = first_line(error)
    raise NeuronAttackError(
        f"Could not read {path} as a plain-tensor checkpoint ({reason}); save the weights with "
        "safetensors or torch.save(model.state_dict()) (TorchScript archives such as OpenAI's "
        "original .pt files are refused)."
    )


def _load_weights(
    model: torch.nn.Module, state_dict: dict[str, torch.Tensor], spec: str, path: Path
) -> None:
    """Copy the checkpoint into the model, or say which keys do not fit."""
    expected = model.state_dict()
    missing = sorted(expected.keys() - state_dict.keys())
    unexpected = sorted(state_dict.keys() - expected.keys())
    reshaped = sorted(
        key
        for key in expected.keys() & state_dict.keys()
        if expected[key].shape != state_dict[key].shape
    )
    problems = [
        f"{len(keys)} {what} (e.g. {keys[0]})"
        for what, keys in (("missing", missing), ("unexpected", unexpected), ("reshaped", reshaped))
        if keys
    ]
    if problems:
        raise NeuronAttackError(
            f"The checkpoint {path} does not fit '{spec}': {', '.join(problems)} keys; check that "
            "the architecture before ':' is the one the weights were trained with."
        )
    model.load_state_dict(state_dict, strict=True)


def _hub_reason(error: BaseException) -> str:
    """Why the hub gave nothing, without the hub client's advice to unset HF_HUB_OFFLINE: here
    the cache is what is missing, not the network."""
    if is_offline(error):
        return "HF_HUB_OFFLINE is set and the cache does not hold them"
    return first_line(error)
