"""The toy CLIP: a small open_clip ViT registered with open_clip, and its compact weights file.

The architecture is an ordinary open_clip config (``neuronattack-toy-ViT.json`` next to this file:
64-pixel images, 8-pixel patches, CLS pooling, standard attention blocks), so the lens applies to
it unchanged, and the tokenizer is open_clip's own BPE tokenizer, used as is.

Why the weights file is not a plain state dict: the standard tokenizer brings a 49,408-row token
table, which at any useful text width would dominate the file (49,408 x 128 in fp16 is 12.6 MB),
although captions of the toy world use a few hundred of those tokens. So every row outside the
world's tokens starts at exactly zero and stays there (it never gets a gradient, and neither
AdamW's update nor its weight decay moves a zero parameter with zero gradient), and the file
stores only the rows that are not zero, with their token ids. Loading puts the full table back,
so in memory the model is a plain open_clip CLIP. A side effect we want: every word outside the
world embeds as the same empty token, so the toy CLIP has no opinion about "elephant", rather
than a random one.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import open_clip
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import save_file

from neuronattack.errors import NeuronAttackError
from neuronattack.models.loaded import LoadedClip, Template
from neuronattack.toy.vocabulary import caption_words

MODEL_NAME = "neuronattack-toy-ViT"
TOY_SPEC = "toy"
CONFIG_PATH = Path(__file__).with_name(f"{MODEL_NAME}.json")
WEIGHTS_PATH = Path(__file__).parent / "weights" / "toy_clip.safetensors"
FILE_FORMAT = "neuronattack-toy-clip/1"
TOKEN_TABLE = "token_embedding.weight"
TOKEN_IDS = "token_embedding.ids"
TOKEN_ROWS = "token_embedding.rows"
# What the toy CLIP learnt to match class names with; it is judged with the same sentences.
ZERO_SHOT_TEMPLATES = (
    "a photo of {}", "a picture of {}", "an image of {}", "a drawing of {}", "{}"
)
# Per-channel statistics of the training images (3,000 samples, rounded): normalising with the
# world's own statistics rather than ImageNet's keeps the first layer's inputs near unit scale.
MEAN = (0.48, 0.53, 0.55)
STD = (0.32, 0.28, 0.31)
TOKEN_INIT_STD = 0.02  # open_clip's own init for token embeddings


def register_toy_config() -> None:
    """Make ``neuronattack-toy-ViT`` an open_clip model name (idempotent).

    Afterwards ``open_clip.create_model`` and ``open_clip.get_tokenizer`` accept the name.
    """
    if MODEL_NAME not in open_clip.list_models():
        open_clip.add_model_config(CONFIG_PATH)


def toy_config() -> dict:
    """The open_clip model config, as registered."""
    return json.loads(CONFIG_PATH.read_text())


def toy_tokenizer() -> open_clip.tokenizer.SimpleTokenizer:
    """open_clip's BPE tokenizer with the toy context length (32 tokens)."""
    register_toy_config()
    return open_clip.get_tokenizer(MODEL_NAME)


def toy_preprocess():
    """open_clip's eval transform with the toy statistics: ToTensor and normalise at 64 pixels.

    Its resize and centre crop leave the world's 64-pixel images untouched and make any other
    image usable too.
    """
    return open_clip.image_transform(
        toy_config()["vision_cfg"]["image_size"], is_train=False, mean=MEAN, std=STD
    )


def to_pixels(images: Sequence[Image.Image]) -> torch.Tensor:
    """A batch of world-sized RGB images as the model's input [batch, 3, 64, 64].

    Equal to stacking ``toy_preprocess()`` outputs, without its per-image PIL round trips, which
    matter when the training loop draws every batch afresh.
    """
    array = np.stack([np.asarray(image, dtype=np.uint8) for image in images])
    pixels = torch.from_numpy(array).permute(0, 3, 1, 2).float().div_(255)
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    return (pixels - mean) / std


def world_token_ids(tokenizer: open_clip.tokenizer.SimpleTokenizer) -> torch.Tensor:
    """Sorted ids of every token a toy caption or prompt can contain, start and end included."""
    tokens = tokenizer(list(caption_words()))
    return torch.unique(tokens[tokens != 0])


def build_toy_clip(seed: int = 0) -> open_clip.CLIP:
    """A freshly initialised toy CLIP for training, float32 on the CPU.

    Token rows outside :func:`world_token_ids` are zeroed (see the module docstring); the caller's
    global RNG is left as it was.
    """
    register_toy_config()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        # The class itself rather than create_model: same module for a plain config, without
        # the factory's "no pretrained weights loaded" warning on every build.
        model = open_clip.CLIP(**toy_config())
        table = model.token_embedding.weight
        with torch.no_grad():
            ids = world_token_ids(toy_tokenizer())
            rows = torch.randn(len(ids), table.shape[1]) * TOKEN_INIT_STD
            table.zero_()
            table[ids] = rows
    return model


def save_toy_weights(model: open_clip.CLIP, path: Path, metadata: dict[str, str]) -> None:
    """Write the model as fp16 safetensors with the token table stored by its non-zero rows."""
    state = {name: tensor.detach().cpu() for name, tensor in model.state_dict().items()}
    table = state.pop(TOKEN_TABLE)
    ids = torch.nonzero(table.abs().sum(dim=1)).flatten()
    state[TOKEN_IDS] = ids.to(torch.int32)
    state[TOKEN_ROWS] = table[ids]
    tensors = {
        name: tensor.half().contiguous() if tensor.is_floating_point() else tensor.contiguous()
        for name, tensor in state.items()
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata={"format": FILE_FORMAT, "model": MODEL_NAME, **metadata})


def read_toy_weights(path: Path) -> dict[str, torch.Tensor]:
    """The full float32 state dict of a toy weights file, token table restored."""
    if not path.is_file():
        raise NeuronAttackError(
            f"The toy CLIP weights {path} are missing; train them with "
            f"'python -m neuronattack.toy.train --out {path}' (about 20 minutes on a CPU)."
        )
    try:
        with safe_open(str(path), framework="pt") as file:
            fmt = (file.metadata() or {}).get("format")
            state = {name: file.get_tensor(name) for name in file.keys()}  # noqa: SIM118
    except Exception as error:
        raise NeuronAttackError(
            f"Could not read {path} as safetensors ({str(error).splitlines()[0][:200]}); "
            "retrain it with 'python -m neuronattack.toy.train'."
        ) from error
    if fmt != FILE_FORMAT:
        raise NeuronAttackError(
            f"{path} is not a toy CLIP weights file (format {fmt!r}, expected {FILE_FORMAT!r}); "
            "write one with 'python -m neuronattack.toy.train'."
        )
    ids, rows = state.pop(TOKEN_IDS).long(), state.pop(TOKEN_ROWS)
    vocab_size = toy_config()["text_cfg"]["vocab_size"]
    table = torch.zeros(vocab_size, rows.shape[1], dtype=torch.float32)
    table[ids] = rows.float()
    state[TOKEN_TABLE] = table
    return {name: tensor.float() for name, tensor in state.items()}


def load_toy_clip(weights: Path | None = None, device: str | torch.device = "cpu") -> LoadedClip:
    """The trained toy CLIP, ready for analysis: eval mode, float32, frozen, on ``device``.

    ``weights`` defaults to the file shipped in the package; the spec is ``"toy"`` for it and
    ``"toy:/abs/path"`` for any other file, so results from different weights never share a folder.
    """
    path = WEIGHTS_PATH if weights is None else Path(weights).expanduser().absolute()
    state = read_toy_weights(path)
    model = build_toy_clip()
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise NeuronAttackError(
            f"The weights {path} do not fit {MODEL_NAME} ({str(error).splitlines()[0][:200]}); "
            "they were trained for another toy config, so retrain them."
        ) from error
    model.requires_grad_(False)
    model.to(device).eval()
    spec = TOY_SPEC if weights is None else f"{TOY_SPEC}:{path}"
    return LoadedClip(model, toy_preprocess(), toy_tokenizer(), spec=spec, arch=MODEL_NAME,
                      judge_templates=toy_judge_templates())


def with_article(name: str) -> str:
    """The toy captions always say "a cat", "an apple"."""
    return ("an " if name[:1] in "aeiou" else "a ") + name


def toy_judge_templates() -> tuple[Template, ...]:
    """:data:`ZERO_SHOT_TEMPLATES` applied to a class name with its article."""
    return tuple((lambda name, t=template: t.format(with_article(name)))
                 for template in ZERO_SHOT_TEMPLATES)

