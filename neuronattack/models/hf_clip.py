"""Hugging Face ``transformers`` CLIP checkpoints, rebuilt as open_clip models by an exact mapping.

A ``CLIPModel`` folder (``config.json`` + ``model.safetensors``, as ``save_pretrained`` writes it
and as most CLIPs on the hub are published) holds the same network as an open_clip ``CLIP``: only
names and layouts differ. We build open_clip's architecture from the config (widths, depths,
heads, MLP ratio, QuickGELU or GELU, LayerNorm eps) and move every tensor across, so the lens,
the atlas, attacks and judges see an ordinary open_clip ViT. No transformers model is ever
instantiated and no remote code runs.

Layout differences the mapping handles:

- attention: separate ``q_proj/k_proj/v_proj`` become one ``in_proj_weight [3·width, width]``
  (and bias), in q, k, v order as ``nn.MultiheadAttention`` expects;
- projections: ``visual_projection`` / ``text_projection`` are ``nn.Linear`` without bias,
  ``weight [embed_dim, width]``; open_clip multiplies ``x @ proj`` with ``proj [width, embed_dim]``,
  so they are transposed;
- ``pre_layrnorm`` (sic) / ``post_layernorm`` / ``final_layer_norm`` are ``ln_pre`` / ``ln_post`` /
  ``ln_final``; position tables are embeddings' weights, the class embedding a vector.

Text pooling agrees: transformers takes the first end-of-text token (or the argmax id for old
configs), open_clip the argmax id; with CLIP's BPE, end-of-text (49407) is the largest id, so both
pick the same position. The tokenizer is open_clip's copy of that BPE at the model's context length.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import open_clip
import torch
from open_clip.transform import image_transform
from torch import Tensor
from torchvision.transforms import InterpolationMode, Resize

from neuronattack.errors import NeuronAttackError
from neuronattack.models.clip import hub_file, read_tensors
from neuronattack.models.loaded import LoadedClip

TRANSFORMERS_CONFIG = "config.json"
PREPROCESSOR_CONFIG = "preprocessor_config.json"
# save_pretrained's names, safest first (.bin is read with weights_only=True).
WEIGHT_NAMES = ("model.safetensors", "pytorch_model.bin")

# CLIP's BPE: 49,408 tokens, end-of-text is the last one. Old configs say eos 2 (see module doc).
_CLIP_VOCAB = 49408
_CLIP_EOS_IDS = (2, 49407)
# transformers' activation names -> open_clip's quick_gelu flag (GELU is erf-exact in both).
_ACTIVATIONS = {"quick_gelu": True, "gelu": False}
# transformers' PIL resample codes for the two interpolations open_clip's transform offers.
_RESAMPLE = {2: "bilinear", 3: "bicubic"}

# Per block, transformers' names -> open_clip's (q/k/v are fused separately).
_BLOCK_RENAMES = {
    "layer_norm1": "ln_1",
    "layer_norm2": "ln_2",
    "mlp.fc1": "mlp.c_fc",
    "mlp.fc2": "mlp.c_proj",
    "self_attn.out_proj": "attn.out_proj",
}
_TOWER_RENAMES = {
    "vision_model.embeddings.class_embedding": "visual.class_embedding",
    "vision_model.embeddings.patch_embedding.weight": "visual.conv1.weight",
    "vision_model.embeddings.position_embedding.weight": "visual.positional_embedding",
    "vision_model.pre_layrnorm.weight": "visual.ln_pre.weight",
    "vision_model.pre_layrnorm.bias": "visual.ln_pre.bias",
    "vision_model.post_layernorm.weight": "visual.ln_post.weight",
    "vision_model.post_layernorm.bias": "visual.ln_post.bias",
    "text_model.embeddings.token_embedding.weight": "token_embedding.weight",
    "text_model.embeddings.position_embedding.weight": "positional_embedding",
    "text_model.final_layer_norm.weight": "ln_final.weight",
    "text_model.final_layer_norm.bias": "ln_final.bias",
    "logit_scale": "logit_scale",
}
_TRANSPOSED = {"visual_projection.weight": "visual.proj",
               "text_projection.weight": "text_projection"}
_TOWER_PREFIXES = {"vision_model.encoder.layers.": "visual.transformer.resblocks.",
                   "text_model.encoder.layers.": "transformer.resblocks."}
# Buffers older checkpoints saved; open_clip computes positions itself.
_IGNORED = re.compile(r".*embeddings\.position_ids$")

# Model types that are CLIP-like but whose towers the lens cannot decompose, and why.
_UNSUPPORTED_TYPES = {
    "siglip": "SigLIP pools the image with an attention-pooling head (a learned query), not a "
              "class token",
    "siglip2": "SigLIP 2 pools the image with an attention-pooling head (a learned query), not a "
               "class token",
    "clip_vision_model": "it holds a vision tower only, and attacks need CLIP's text tower too",
    "chinese_clip": "its text tower is a BERT, not CLIP's text transformer",
    "altclip": "its text tower is an XLM-R, not CLIP's text transformer",
}


def open_clip_config(config: dict, spec: str) -> dict:
    """open_clip's ``CLIP`` keyword arguments for a transformers ``CLIPConfig`` dict.

    Raises ``NeuronAttackError`` naming what is unsupported (another model type, an activation
    open_clip has no twin for, a tokenizer other than CLIP's BPE).
    """
    model_type = config.get("model_type", "")
    if model_type in _UNSUPPORTED_TYPES:
        raise NeuronAttackError(
            f"'{spec}' is a transformers {model_type} model, which neuronattack cannot decompose: "
            f"{_UNSUPPORTED_TYPES[model_type]}; use a CLIPModel (model_type 'clip')."
        )
    if model_type != "clip":
        raise NeuronAttackError(
            f"'{spec}' is a transformers {model_type or 'untyped'} model; neuronattack reads "
            "transformers CLIPModel checkpoints only (model_type 'clip')."
        )
    vision, text = config.get("vision_config", {}), config.get("text_config", {})
    quick_gelu = _quick_gelu(vision, text, spec)
    if text.get("vocab_size", _CLIP_VOCAB) != _CLIP_VOCAB or \
            text.get("eos_token_id", 2) not in _CLIP_EOS_IDS:
        raise NeuronAttackError(
            f"'{spec}' has a text vocabulary of {text.get('vocab_size')} tokens (end-of-text id "
            f"{text.get('eos_token_id')}); neuronattack supports CLIP's own BPE only "
            f"({_CLIP_VOCAB} tokens, end-of-text 49407)."
        )
    return {
        "embed_dim": config.get("projection_dim", 512),
        "quick_gelu": quick_gelu,
        "vision_cfg": {
            "image_size": vision.get("image_size", 224),
            "patch_size": vision.get("patch_size", 32),
            "width": vision.get("hidden_size", 768),
            "layers": vision.get("num_hidden_layers", 12),
            "head_width": _head_width(vision, 768, 12),
            "mlp_ratio": vision.get("intermediate_size", 3072) / vision.get("hidden_size", 768),
            "norm_kwargs": {"eps": vision.get("layer_norm_eps", 1e-5)},
        },
        "text_cfg": {
            "context_length": text.get("max_position_embeddings", 77),
            "vocab_size": _CLIP_VOCAB,
            "width": text.get("hidden_size", 512),
            "heads": text.get("num_attention_heads", 8),
            "layers": text.get("num_hidden_layers", 12),
            "mlp_ratio": text.get("intermediate_size", 2048) / text.get("hidden_size", 512),
            "norm_kwargs": {"eps": text.get("layer_norm_eps", 1e-5)},
        },
    }


def _quick_gelu(vision: dict, text: dict, spec: str) -> bool:
    """open_clip's one activation flag for both towers, from transformers' ``hidden_act``."""
    acts = {vision.get("hidden_act", "quick_gelu"), text.get("hidden_act", "quick_gelu")}
    unknown = sorted(acts - _ACTIVATIONS.keys())
    if unknown or len(acts) > 1:
        raise NeuronAttackError(
            f"'{spec}' uses the activation(s) {', '.join(sorted(acts))}; neuronattack supports "
            "quick_gelu or gelu, the same in both towers."
        )
    return _ACTIVATIONS[acts.pop()]


def _head_width(tower: dict, width: int, heads: int) -> int:
    return tower.get("hidden_size", width) // tower.get("num_attention_heads", heads)


def convert_state_dict(hf_state: dict[str, Tensor], spec: str) -> dict[str, Tensor]:
    """A transformers ``CLIPModel`` state dict in open_clip ``CLIP``'s names and layouts.

    Every input tensor is used exactly once (except position-id buffers); anything left over
    means the checkpoint has parts open_clip's CLIP lacks, and is refused by name.
    """
    remaining = {name: tensor for name, tensor in hf_state.items() if not _IGNORED.match(name)}
    out: dict[str, Tensor] = {}
    for hf_name, name in _TOWER_RENAMES.items():
        if hf_name in remaining:
            out[name] = remaining.pop(hf_name)
    for hf_name, name in _TRANSPOSED.items():
        if hf_name in remaining:
            out[name] = remaining.pop(hf_name).t().contiguous()
    for hf_prefix, prefix in _TOWER_PREFIXES.items():
        blocks = sorted({int(key[len(hf_prefix):].split(".", 1)[0])
                         for key in remaining if key.startswith(hf_prefix)})
        for block in blocks:
            out |= _convert_block(remaining, f"{hf_prefix}{block}.", f"{prefix}{block}.")
    if remaining:
        names = sorted(remaining)
        raise NeuronAttackError(
            f"'{spec}' has {len(names)} weight(s) open_clip's CLIP has no place for "
            f"(e.g. {names[0]}); neuronattack reads plain transformers CLIPModel checkpoints."
        )
    return out


def _convert_block(remaining: dict[str, Tensor], hf_prefix: str, prefix: str) -> dict[str, Tensor]:
    """One residual block; pops what it uses from ``remaining``."""
    out = {}
    for kind in ("weight", "bias"):
        parts = [remaining.pop(f"{hf_prefix}self_attn.{p}_proj.{kind}", None) for p in "qkv"]
        if any(part is not None for part in parts):
            if any(part is None for part in parts):
                missing = "qkv"[[part is None for part in parts].index(True)]
                raise NeuronAttackError(f"{hf_prefix}self_attn.{missing}_proj.{kind} is missing.")
            out[f"{prefix}attn.in_proj_{kind}"] = torch.cat(parts)  # [3·width, ...] q, k, v
        for hf_name, name in _BLOCK_RENAMES.items():
            key = f"{hf_prefix}{hf_name}.{kind}"
            if key in remaining:
                out[f"{prefix}{name}.{kind}"] = remaining.pop(key)
    return out


def preprocess_from_config(preprocessor: dict | None, image_size: int):
    """open_clip's eval transform matching a transformers ``CLIPImageProcessor`` config.

    Resize the shorter side to the processor's ``size.shortest_edge`` (the model's input size if
    absent), centre-crop to the input size, normalise with its mean and std. Without a processor
    config, OpenAI's mean and std (open_clip's defaults) are used.
    """
    preprocessor = preprocessor or {}
    interpolation = _RESAMPLE.get(preprocessor.get("resample", 3), "bicubic")
    transform = image_transform(
        image_size, is_train=False,
        mean=tuple(preprocessor["image_mean"]) if "image_mean" in preprocessor else None,
        std=tuple(preprocessor["image_std"]) if "image_std" in preprocessor else None,
        interpolation=interpolation, resize_mode="shortest",
    )
    size = preprocessor.get("size")
    shortest = size.get("shortest_edge") if isinstance(size, dict) else size
    if isinstance(shortest, int) and shortest != image_size:
        # open_clip resizes straight to the crop size; some fine-tuned CLIPs resize larger first.
        transform.transforms[0] = Resize(shortest, interpolation=InterpolationMode(interpolation),
                                         antialias=True)
    return transform


def build_from_transformers(
    config: dict, hf_state: dict[str, Tensor], spec: str,
) -> tuple[open_clip.CLIP, open_clip.tokenizer.SimpleTokenizer]:
    """The open_clip model (float32, eval, frozen) and tokenizer of a CLIPModel config + weights."""
    kwargs = open_clip_config(config, spec)
    state = {name: tensor.float() for name, tensor in convert_state_dict(hf_state, spec).items()}
    with torch.random.fork_rng(devices=[]):  # open_clip's init must not move the caller's RNG
        model = open_clip.CLIP(**kwargs)
    expected = {name for name, _ in model.named_parameters()}
    missing, unexpected = sorted(expected - state.keys()), sorted(state.keys() - expected)
    reshaped = sorted(name for name, param in model.named_parameters()
                      if name in state and state[name].shape != param.shape)
    if missing or unexpected or reshaped:
        example = (missing or unexpected or reshaped)[0]
        raise NeuronAttackError(
            f"The weights of '{spec}' do not fit its config.json ({len(missing)} missing, "
            f"{len(unexpected)} unexpected, {len(reshaped)} reshaped, e.g. {example})."
        )
    model.load_state_dict(state, strict=True)
    model.requires_grad_(False)
    tokenizer = open_clip.tokenizer.SimpleTokenizer(
        context_length=kwargs["text_cfg"]["context_length"])
    return model.eval(), tokenizer


def load_transformers_clip(source, device: str | torch.device = "cpu") -> LoadedClip:
    """``load_clip``'s branch for ``hf:`` specs (``source`` is its parsed spec)."""
    config_path, weights_path, preprocessor_path = _locate_files(source)
    config = _read_json_file(config_path)
    open_clip_config(config, source.spec)  # refuse unsupported models before reading weights
    model, tokenizer = build_from_transformers(config, read_tensors(weights_path), source.spec)
    preprocessor = _read_json_file(preprocessor_path) if preprocessor_path else None
    preprocess = preprocess_from_config(preprocessor, model.visual.image_size[0])
    return LoadedClip(model=model.to(device), preprocess=preprocess, tokenizer=tokenizer,
                      spec=source.spec, arch=source.spec)


def _locate_files(source) -> tuple[Path, Path, Path | None]:
    """config.json, the weights and (if any) preprocessor_config.json of a folder or hub repo."""
    folder = Path(source.location)
    if folder.is_dir():
        weights = next((folder / name for name in WEIGHT_NAMES if (folder / name).is_file()), None)
        if not (folder / TRANSFORMERS_CONFIG).is_file() or weights is None:
            raise NeuronAttackError(
                f"The folder {folder} is not a transformers CLIPModel folder: it needs "
                f"{TRANSFORMERS_CONFIG} and one of {', '.join(WEIGHT_NAMES)} (save_pretrained "
                "writes them)."
            )
        preprocessor = folder / PREPROCESSOR_CONFIG
        found = preprocessor if preprocessor.is_file() else None
        return folder / TRANSFORMERS_CONFIG, weights, found
    config = hub_file(source.location, (TRANSFORMERS_CONFIG,), source)
    weights = hub_file(source.location, WEIGHT_NAMES, source)
    # The processor config is optional: a snapshot downloaded without it gets OpenAI's defaults.
    preprocessor = config.parent / PREPROCESSOR_CONFIG
    if not preprocessor.is_file():
        try:
            preprocessor = hub_file(source.location, (PREPROCESSOR_CONFIG,), source)
        except NeuronAttackError:
            preprocessor = None
    return config, weights, preprocessor


def _read_json_file(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise NeuronAttackError(f"Could not read {path} as JSON ({error}).") from None
