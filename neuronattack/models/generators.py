"""Text-to-image generators: one spec string gives a diffusers pipeline behind a small interface.

Every image is rendered from its own CPU ``torch.Generator`` seeded with the image's seed, so any
image of a batch can be re-rendered alone from its record. Broken outputs (NaN, blank) are
re-rendered once with a derived seed and otherwise reported as failed, never returned silently.

Weights are fetched the way :mod:`neuronattack.models.clip` fetches CLIP's: the local Hugging Face
cache first, then one request, and a :class:`NeuronAttackError` saying how to supply the weights
when neither works. diffusers and transformers are imported only when a pipeline is built: they take
seconds to import, and code that only needs :class:`RenderResult` should not pay for that.
"""

from __future__ import annotations

import gzip
import inspect
import json
import logging
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np
import torch
from open_clip.tokenizer import bytes_to_unicode, default_bpe
from PIL import Image

from neuronattack.errors import NeuronAttackError
from neuronattack.models.hub import (
    HF_HUB_PREFIX,
    LOCAL_DIR_PREFIX,
    HubUnavailable,
    absolute_path,
    cached_or_downloaded,
    close_matches,
    first_line,
    fresh_rng,
    resolve_device,
)
from neuronattack.models.plugins import find_plugin, plugins_with
from neuronattack.validation import parser_refusal

if TYPE_CHECKING:
    from diffusers import DiffusionPipeline, StableDiffusionPipeline
    from transformers import CLIPTokenizer

logger = logging.getLogger(__name__)

DEFAULT_PRESET = "sd-turbo"
TINY = "tiny"
# A failed image is re-rendered with seed + this, modulo MAX_SEED. A prime far above the small
# consecutive seeds callers use (range(n)) keeps a retry from repeating another image's seed.
RETRY_SEED_OFFSET = 1_000_003
# Seeds are stored as int64 in records and JSON everywhere, so they stay below 2**63.
MAX_SEED = 2**63
# An image whose pixels vary by less than one 8-bit level is blank: all black (the safety
# checker's replacement, an fp16 VAE overflow) or one flat colour.
BLANK_STD = 1 / 255
# Every preset's pipeline accepts multiples of 16 (FLUX packs 2x2 patches of its 8x VAE latents);
# other sizes would be silently rounded by some pipelines and the record would be wrong.
SIZE_MULTIPLE = 16
MODEL_INDEX = "model_index.json"

# CLIP keeps the first 48,894 merges so that 2 x 256 byte symbols + merges + 2 specials = 49,408.
_CLIP_MERGES = 49152 - 256 - 2
_CLIP_CONTEXT = 77
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_TINY_SEED = 0

SafetyChecker = Literal["absent", "disabled"]


class Generator(Protocol):
    """What the attack loop needs from an image generator (diffusers or the toy renderer)."""

    name: str

    @property
    def settings(self) -> dict:
        """What changes its images beside the prompts and seeds; recorded with every image."""
        ...

    def render(
        self, prompts: Sequence[str], seeds: Sequence[int], negative_prompt: str | None = None
    ) -> list[RenderResult]: ...


@dataclass(frozen=True)
class RenderResult:
    """One rendered prompt.

    ``seed`` is the seed the image (or the last failed try) was rendered with; it differs from
    ``requested_seed`` only when ``retried``. ``reason`` says why an image was retried or failed
    and is None for a clean first render; ``image`` is None exactly when ``failed``.
    """

    image: Image.Image | None
    seed: int
    requested_seed: int
    retried: bool
    failed: bool
    reason: str | None


@dataclass(frozen=True)
class Preset:
    """A named checkpoint with the settings it was distilled or tuned for.

    ``repo_id`` None means built locally (the tiny preset); ``size`` None means the pipeline's
    native size. ``cuda_dtype`` is the dtype on CUDA; everything runs in float32 elsewhere.
    """

    repo_id: str | None
    steps: int
    guidance: float
    size: int | None
    batch_size: int
    cuda_dtype: torch.dtype


PRESETS: dict[str, Preset] = {
    "sd-turbo": Preset("stabilityai/sd-turbo", 1, 0.0, 512, 8, torch.float16),
    "sdxl-turbo": Preset("stabilityai/sdxl-turbo", 1, 0.0, 512, 4, torch.float16),
    "sd15": Preset("stable-diffusion-v1-5/stable-diffusion-v1-5", 25, 7.5, 512, 4, torch.float16),
    # 256 px as in the paper; FLUX is released in bfloat16 and its activations overflow float16.
    "flux-schnell": Preset("black-forest-labs/FLUX.1-schnell", 4, 0.0, 256, 4, torch.bfloat16),
    # float32 on every device: tiny is for tests and trials, which want exactness, not speed.
    TINY: Preset(None, 2, 0.0, 64, 8, torch.float32),
}
# Hub repos and folders that are no preset: SD 1.x-style sampling at their native size.
_OTHER_REPOS = Preset(None, 25, 7.5, None, 4, torch.float16)


@dataclass(frozen=True)
class RenderConfig:
    """Everything a pipeline call takes besides prompts, seeds and the negative prompt."""

    steps: int
    guidance: float
    width: int
    height: int
    batch_size: int


@dataclass(frozen=True)
class _Source:
    """A parsed spec: where the pipeline comes from and the repo id or folder it is in."""

    kind: Literal["tiny", "hub", "dir"]
    name: str
    location: str = ""
    preset: str | None = None


class DiffusersGenerator:
    """A diffusers text-to-image pipeline rendering with per-image seeds and failure checks.

    ``pipeline`` is public so benchmarks can call it directly; ``settings`` is rebuilt on each read
    from the pipeline itself, so a record can never disagree with what was rendered.
    """

    def __init__(
        self,
        pipeline: DiffusionPipeline,
        name: str,
        config: RenderConfig,
        model: str,
        revision: str | None = None,
        preset: str | None = None,
        safety_checker: SafetyChecker = "absent",
        meaningless: bool = False,
    ) -> None:
        self.pipeline = pipeline
        self.name = name
        self.config = config
        # The attack loop passes the same negative prompt with every batch: say it is unused once.
        self._warned_negative = False
        self._record = {
            "model": model,
            "revision": revision,
            "preset": preset,
            "safety_checker": safety_checker,
            "meaningless": meaningless,
        }

    @property
    def settings(self) -> dict[str, Any]:
        """The per-run fields of a DiffusionDB-style record (the prompt and seed are per image)."""
        return {
            **self._record,
            "pipeline": type(self.pipeline).__name__,
            "steps": self.config.steps,
            "guidance": self.config.guidance,
            "size": (self.config.width, self.config.height),
            "batch_size": self.config.batch_size,
            "scheduler": type(self.pipeline.scheduler).__name__,
            "dtype": _dtype_name(self.pipeline.dtype),
            "device": str(self.pipeline.device),
            "retry_seed_offset": RETRY_SEED_OFFSET,
        }

    def describe(self) -> str:
        """One line for CLI output."""
        config, record = self.config, self._record
        source = str(record["model"])
        if record["revision"]:
            source += f"@{str(record['revision'])[:7]}"
        label = self.name if source == self.name else f"{self.name} ({source})"
        step_word = "step" if config.steps == 1 else "steps"
        line = (
            f"{label}: {config.steps} {step_word}, guidance {config.guidance:g}, "
            f"{config.width}x{config.height}, batch {config.batch_size}, "
            f"{_dtype_name(self.pipeline.dtype)} on {self.pipeline.device}, "
            f"{type(self.pipeline.scheduler).__name__}"
        )
        if record["meaningless"]:
            line += " [RANDOM WEIGHTS: images are noise]"
        return line

    def render(
        self, prompts: Sequence[str], seeds: Sequence[int], negative_prompt: str | None = None
    ) -> list[RenderResult]:
        """One result per prompt, in order, rendered ``batch_size`` prompts per pipeline call.

        The negative prompt applies to every prompt; pipelines ignore it at guidance <= 1 (the
        turbo and FLUX presets), which is logged once rather than refused so one CLI flag serves
        all generators.
        """
        prompts, seeds = list(prompts), [_checked_seed(seed) for seed in seeds]
        if len(prompts) != len(seeds):
            raise NeuronAttackError(
                f"render got {len(prompts)} prompts but {len(seeds)} seeds; give one seed per "
                "prompt."
            )
        if negative_prompt is not None:
            self._check_negative_prompt()
        size = self.config.batch_size
        results: list[RenderResult] = []
        for start in range(0, len(prompts), size):
            batch = slice(start, start + size)
            results += self._render_batch(prompts[batch], seeds[batch], negative_prompt)
        return results

    def _render_batch(
        self, prompts: list[str], seeds: list[int], negative_prompt: str | None
    ) -> list[RenderResult]:
        """Render a batch, then re-render its broken images together with derived seeds.

        Retrying in one call is safe because each image has its own generator: the result of a
        retry does not depend on which other images were retried with it.
        """
        images = self._call(prompts, seeds, negative_prompt)
        defects = image_defects(images)
        results = _first_try(images, defects, seeds)
        broken = [index for index, defect in enumerate(defects) if defect]
        if not broken:
            return results
        retry_seeds = [retry_seed(seeds[index]) for index in broken]
        retried = self._call([prompts[index] for index in broken], retry_seeds, negative_prompt)
        finals = _second_try(retried, [results[index] for index in broken])
        for index, result in zip(broken, finals, strict=True):
            results[index] = result
        return results

    def _call(
        self, prompts: list[str], seeds: list[int], negative_prompt: str | None
    ) -> torch.Tensor:
        """The pipeline's float images ``[b, 3, h, w]`` in [0, 1] on its device, NaNs kept.

        ``output_type="pt"`` skips the 8-bit conversion that would turn NaN into black, and
        lets the checks run on the GPU before anything is copied to the host.
        """
        kwargs: dict[str, Any] = {
            "prompt": prompts,
            "num_inference_steps": self.config.steps,
            "guidance_scale": self.config.guidance,
            "width": self.config.width,
            "height": self.config.height,
            # CPU generators give the same starting noise on every device.
            "generator": [torch.Generator(device="cpu").manual_seed(seed) for seed in seeds],
            "output_type": "pt",
        }
        if negative_prompt is not None:
            kwargs["negative_prompt"] = [negative_prompt] * len(prompts)
        return self.pipeline(**kwargs).images

    def _check_negative_prompt(self) -> None:
        if "negative_prompt" not in inspect.signature(self.pipeline.__call__).parameters:
            raise NeuronAttackError(
                f"The {type(self.pipeline).__name__} of '{self.name}' takes no negative prompt; "
                "leave it out for this generator."
            )
        if self.config.guidance <= 1 and not self._warned_negative:
            self._warned_negative = True
            logger.warning(
                "The negative prompt has no effect on '%s' at guidance %g (it needs guidance > 1).",
                self.name,
                self.config.guidance,
            )


def load_generator(
    spec: str = DEFAULT_PRESET,
    device: str = "auto",
    dtype: torch.dtype | str | None = None,
    *,
    steps: int | None = None,
    guidance: float | None = None,
    size: int | tuple[int, int] | None = None,
    batch_size: int | None = None,
) -> Generator:
    """The generator a spec names, on ``device``; raise NeuronAttackError for anything fixable.

    Spec forms, in the order they are recognised:

    - an installed plug-in's name (``models.plugins``), such as ``toy``, the toy world's renderer:
      its own generator, which keeps its own settings (the options below are for diffusers);
    - a preset name (see :data:`PRESETS`): ``sd-turbo``, ``sdxl-turbo``, ``sd15``, ``flux-schnell``,
      or ``tiny`` (random weights, no download; for tests and offline trials only);
    - ``local-dir:/path`` or an existing folder: a diffusers pipeline folder (``model_index.json``);
    - ``hf-hub:org/name`` or ``org/name``: a hub repo, from the local cache first. A preset's repo
      gets the preset's settings.

    ``device="auto"`` is CUDA when available, else the CPU. Without ``dtype``, CUDA runs the
    preset's half-precision dtype (float16 for repos that are no preset) and other devices float32.
    ``steps``, ``guidance``, ``size`` (one int for square) and ``batch_size`` override the preset;
    repos that are no preset start from 25 steps, guidance 7.5 and their native size.
    Remote code is never run (no ``trust_remote_code``).
    """
    plugin = find_plugin(spec)
    if plugin is not None and plugin.make_generator is not None:
        return plugin.make_generator(device)
    source = _parse_spec(spec)
    preset = PRESETS[source.preset] if source.preset else _OTHER_REPOS
    checked_size = _checked_size(steps, guidance, size, batch_size)
    target = resolve_device(device)
    torch_dtype = _resolve_dtype(dtype, target, preset)
    if source.kind == "tiny":
        logger.warning(
            "TINY GENERATOR: random weights, its images are noise; use it for tests and offline "
            "trials only, never for attacks."
        )
        pipeline = build_tiny_pipeline()
        if torch_dtype != torch.float32:  # casting a built pipeline warns, so only when asked to
            pipeline.to(dtype=torch_dtype)
        folder, safety = None, "absent"
    else:
        folder = _locate(source)
        pipeline, safety = _load_pipeline(folder, source, torch_dtype)
    pipeline.to(target)
    pipeline.set_progress_bar_config(disable=True)  # the CLI shows one bar for the whole run
    config = _render_config(pipeline, preset, steps, guidance, checked_size, batch_size)
    return DiffusersGenerator(
        pipeline,
        name=source.name,
        config=config,
        model=source.location or TINY,
        revision=_cache_revision(folder),
        preset=source.preset,
        safety_checker=safety,
        meaningless=source.kind == "tiny",
    )


def generator_spec_problem(value: object) -> str | None:
    """What is wrong with a generator spec, found by :func:`load_generator`'s own parser (presets
    with typo hints, hub ids, pipeline folders) without loading anything; None when nothing is."""
    plugin = find_plugin(value) if isinstance(value, str) else None
    if plugin is not None and plugin.make_generator is not None:
        return None
    return parser_refusal(_parse_spec, value)


def retry_seed(seed: int) -> int:
    """The seed a broken image is re-rendered with: ``(seed + 1_000_003) mod 2**63``."""
    return (seed + RETRY_SEED_OFFSET) % MAX_SEED


def image_defects(images: torch.Tensor) -> list[str | None]:
    """For each float image of a batch ``[b, ...]`` in [0, 1]: why it is unusable, or None.

    Unusable means a non-finite pixel, or a pixel std (over all pixels and channels) below 1/255.
    Both are checked on the float output, since 8-bit conversion turns NaN into black.
    """
    flat = images.detach().flatten(1).float()
    finite = torch.isfinite(flat).all(dim=1).tolist()
    spreads = flat.std(dim=1, correction=0).tolist()
    return [_defect(ok, spread) for ok, spread in zip(finite, spreads, strict=True)]


def _defect(finite: bool, spread: float) -> str | None:
    if not finite:
        return "non-finite pixels (NaN or inf)"
    if spread < BLANK_STD:
        return f"a blank image (pixel std {spread:.2g} < 1/255)"
    return None


def to_pil(images: torch.Tensor) -> list[Image.Image]:
    """8-bit PIL images from a float batch ``[b, 3, h, w]`` in [0, 1].

    Converted and rounded exactly as diffusers makes its own PIL output, so our images equal a
    plain pipeline call's.
    """
    array = images.detach().cpu().permute(0, 2, 3, 1).float().numpy()
    return [Image.fromarray(image) for image in (array * 255).round().astype(np.uint8)]


def clip_tokenizer() -> CLIPTokenizer:
    """CLIP's BPE tokenizer, as shipped with SD 1.x/2.x, built offline from open_clip's merges file.

    The hub's ``vocab.json`` and ``merges.txt`` are derived from the same file in the order CLIP
    defines: the 256 byte symbols, the same with ``</w>``, one token per merge, then
    ``<|startoftext|>`` and ``<|endoftext|>`` (ids 49406, 49407). Token ids match open_clip's.
    """
    from transformers import CLIPTokenizer

    with gzip.open(default_bpe(), "rt", encoding="utf-8") as file:
        lines = file.read().split("\n")
    merges = [tuple(line.split()) for line in lines[1 : 1 + _CLIP_MERGES]]  # line 0: version
    symbols = list(bytes_to_unicode().values())
    words = symbols + [f"{symbol}</w>" for symbol in symbols] + ["".join(m) for m in merges]
    words += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {word: index for index, word in enumerate(words)}
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=_CLIP_CONTEXT)


def build_tiny_pipeline(seed: int = _TINY_SEED) -> StableDiffusionPipeline:
    """A real StableDiffusionPipeline with tiny random weights: a 64x64 image in ~20 ms on a CPU.

    Built under a private RNG so the same seed gives the same weights and the caller's RNG is
    untouched. The VAE halves the resolution once (two blocks), so a 32x32 latent gives 64 px.
    """
    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel

    tokenizer = clip_tokenizer()
    width = 32
    with fresh_rng(seed):
        unet = UNet2DConditionModel(
            sample_size=32,
            block_out_channels=(32, 64),
            layers_per_block=1,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            cross_attention_dim=width,
            attention_head_dim=(2, 4),
            norm_num_groups=8,
        )
        vae = AutoencoderKL(
            sample_size=64,
            block_out_channels=(32, 64),
            down_block_types=("DownEncoderBlock2D",) * 2,
            up_block_types=("UpDecoderBlock2D",) * 2,
            latent_channels=4,
            norm_num_groups=8,
        )
        text_encoder = CLIPTextModel(
            CLIPTextConfig(
                vocab_size=len(tokenizer),
                hidden_size=width,
                intermediate_size=64,
                num_hidden_layers=2,
                num_attention_heads=4,
                max_position_embeddings=_CLIP_CONTEXT,
                projection_dim=width,
                bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
            )
        )
    # SD's beta schedule, sampled by Euler on trailing timesteps as few-step (turbo) models are;
    # steps_offset=1 because diffusers warns about SD schedulers without it.
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        timestep_spacing="trailing",
        steps_offset=1,
    )
    return StableDiffusionPipeline(
        vae=vae.eval(),
        text_encoder=text_encoder.eval(),
        tokenizer=tokenizer,
        unet=unet.eval(),
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def _first_try(
    images: torch.Tensor, defects: list[str | None], seeds: list[int]
) -> list[RenderResult]:
    """A first render's results; broken images are marked retried, with the reason, pending retry.

    Only usable images are converted: casting NaN to 8 bits is undefined.
    """
    good = [index for index, defect in enumerate(defects) if defect is None]
    pictures = dict(zip(good, to_pil(images[good]), strict=True))
    return [
        RenderResult(pictures.get(index), seed, seed, defect is not None, False, defect)
        for index, (defect, seed) in enumerate(zip(defects, seeds, strict=True))
    ]


def _second_try(images: torch.Tensor, firsts: list[RenderResult]) -> list[RenderResult]:
    """The final results of retried images: usable now, or failed with both reasons."""
    results = []
    for image, defect, first in zip(images, image_defects(images), firsts, strict=True):
        seed = retry_seed(first.requested_seed)
        before = f"{first.reason} with seed {first.requested_seed}"
        if defect is None:
            reason = f"{before}; re-rendered with seed {seed}"
            picture = to_pil(image[None])[0]
            results.append(RenderResult(picture, seed, first.requested_seed, True, False, reason))
        else:
            reason = f"{before}, then {defect} with seed {seed}"
            results.append(RenderResult(None, seed, first.requested_seed, True, True, reason))
    return results


def _checked_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise NeuronAttackError(f"Seeds must be integers; got {seed!r}.")
    if not 0 <= seed < MAX_SEED:
        raise NeuronAttackError(f"Seeds must lie in [0, 2**63); got {seed}.")
    return int(seed)


def _parse_spec(spec: str) -> _Source:
    """Decide what a spec means; presets win, then prefixes, then an existing folder, then repos."""
    text = spec.strip()
    if not text:
        raise NeuronAttackError(
            f"The generator spec is empty; give a preset such as '{DEFAULT_PRESET}', a hub repo "
            "id or a pipeline folder."
        )
    if text.lower() in PRESETS:
        return _preset_source(text.lower())
    if text.startswith(HF_HUB_PREFIX):
        return _hub_source(text[len(HF_HUB_PREFIX) :].strip("/"), text)
    if text.startswith(LOCAL_DIR_PREFIX):
        return _dir_source(text[len(LOCAL_DIR_PREFIX) :])
    if Path(text).expanduser().is_dir():
        return _dir_source(text)
    if _REPO_ID.match(text):
        return _hub_source(text, text)
    if "/" in text or os.sep in text:
        raise NeuronAttackError(
            f"The pipeline folder {absolute_path(text)} does not exist; give a folder written by "
            "a diffusers pipeline's save_pretrained(), a hub repo id or a preset."
        )
    names = [*PRESETS, *(plugin.name for plugin in plugins_with("make_generator"))]
    close = close_matches(text, names)
    hint = f"did you mean {', '.join(close)}?" if close else f"presets: {', '.join(names)}."
    raise NeuronAttackError(f"Unknown generator '{text}'; {hint}")


def _preset_source(name: str) -> _Source:
    repo_id = PRESETS[name].repo_id
    if repo_id is None:
        return _Source("tiny", name, preset=name)
    return _Source("hub", name, location=repo_id, preset=name)


def _hub_source(repo_id: str, name: str) -> _Source:
    if not _REPO_ID.match(repo_id):
        raise NeuronAttackError(
            f"'{name}' is not a hub repo id; write it as 'org/name' or 'hf-hub:org/name'."
        )
    preset = next((key for key, value in PRESETS.items() if value.repo_id == repo_id), None)
    return _Source("hub", name, location=repo_id, preset=preset)


def _dir_source(path_text: str) -> _Source:
    folder = absolute_path(path_text)
    if not folder.is_dir():
        raise NeuronAttackError(
            f"The pipeline folder {folder} does not exist; give a folder written by a diffusers "
            "pipeline's save_pretrained() or a downloaded repo snapshot."
        )
    if not (folder / MODEL_INDEX).is_file():
        raise NeuronAttackError(
            f"The folder {folder} is not a diffusers pipeline (it has no {MODEL_INDEX}); give a "
            "folder written by a pipeline's save_pretrained() or a downloaded repo snapshot."
        )
    return _Source("dir", str(folder), location=str(folder))


def _resolve_dtype(dtype: torch.dtype | str | None, device: str, preset: Preset) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype is not None:
        return _parse_dtype(dtype)
    if not device.startswith("cuda"):
        return torch.float32  # half precision on CPU is slow and some kernels lack it
    return preset.cuda_dtype


def _parse_dtype(text: str) -> torch.dtype:
    names = {
        "float32": torch.float32, "fp32": torch.float32, "float": torch.float32,
        "float16": torch.float16, "fp16": torch.float16, "half": torch.float16,
        "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
    }  # fmt: skip
    key = text.lower().removeprefix("torch.")
    if key not in names:
        raise NeuronAttackError(
            f"Unknown dtype '{text}'; use float32, float16 or bfloat16 (fp32, fp16, bf16)."
        )
    return names[key]


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _locate(source: _Source) -> Path:
    """The local pipeline folder for a source: as given, or a hub cache snapshot."""
    if source.kind == "dir":
        return Path(source.location)
    return _hub_snapshot(source)


def _hub_snapshot(source: _Source) -> Path:
    """A hub repo's cache snapshot, downloaded if need be, or a NeuronAttackError at once (the
    cache first, then one probe of the hub: ``models.hub.cached_or_downloaded``)."""
    from diffusers import DiffusionPipeline

    repo_id = source.location
    try:
        return cached_or_downloaded(repo_id, MODEL_INDEX,
                                    partial(DiffusionPipeline.download, repo_id))
    except HubUnavailable as unavailable:
        reason = str(unavailable)
    label = f"'{repo_id}'" if source.name == repo_id else f"'{source.name}' ({repo_id})"
    raise NeuronAttackError(
        f"The pipeline for {label} could not be downloaded or found in the local Hugging Face "
        f"cache ({reason}); on a machine with network access run 'hf download {repo_id}' and "
        "copy its Hugging Face cache here, then set HF_HUB_OFFLINE=1, or run 'hf download "
        f"{repo_id} --local-dir DIR' there and pass DIR as the generator."
    )


def _load_pipeline(
    folder: Path, source: _Source, dtype: torch.dtype
) -> tuple[DiffusionPipeline, SafetyChecker]:
    """The text-to-image pipeline in a local folder, without its safety checker.

    A checker replaces images it flags with black ones, which would pass for render failures and
    hide attack candidates, so it is never loaded; ``settings`` says "disabled" when the
    checkpoint ships one (sd15) and "absent" when it does not (the turbo and FLUX checkpoints).
    """
    from diffusers import AutoPipelineForText2Image

    index = _read_model_index(folder, source)
    kwargs, safety = _without_safety_checker(index)
    try:
        pipeline = AutoPipelineForText2Image.from_pretrained(
            folder, dtype=dtype, local_files_only=True, **kwargs
        )
    # diffusers and transformers raise many types for an incomplete or foreign folder.
    except Exception as error:
        raise NeuronAttackError(
            f"diffusers could not load a text-to-image pipeline for '{source.name}' from {folder} "
            f"({first_line(error)}); check that the folder or cached download is complete and "
            "holds a text-to-image pipeline that needs no custom code."
        ) from error
    return pipeline, safety


def _read_model_index(folder: Path, source: _Source) -> dict[str, Any]:
    try:
        index = json.loads((folder / MODEL_INDEX).read_text())
    except (OSError, ValueError) as error:
        raise NeuronAttackError(
            f"Could not read {folder / MODEL_INDEX} for '{source.name}' ({first_line(error)}); "
            "the download may be incomplete: fetch it again."
        ) from error
    if not isinstance(index, dict) or not isinstance(index.get("_class_name"), str):
        # A list here names a custom pipeline class, whose code we would have to run.
        raise NeuronAttackError(
            f"{folder / MODEL_INDEX} does not name a built-in diffusers pipeline; neuronattack "
            "runs no custom pipeline code."
        )
    return index


def _without_safety_checker(index: Mapping[str, Any]) -> tuple[dict[str, Any], SafetyChecker]:
    """from_pretrained arguments that skip the safety checker, and what the record should say.

    ``requires_safety_checker=False`` goes only to pipelines that take it, to avoid diffusers'
    warning about an unexpected argument (and its other warning about a disabled checker).
    """
    if "safety_checker" not in index:
        return {}, "absent"
    kwargs: dict[str, Any] = {"safety_checker": None}
    if _takes_argument(str(index["_class_name"]), "requires_safety_checker"):
        kwargs["requires_safety_checker"] = False
    shipped = index["safety_checker"] not in (None, [None, None])
    return kwargs, "disabled" if shipped else "absent"


def _takes_argument(class_name: str, argument: str) -> bool:
    import diffusers

    pipeline_class = getattr(diffusers, class_name, None)
    return pipeline_class is not None and argument in inspect.signature(pipeline_class).parameters


def _checked_size(
    steps: int | None,
    guidance: float | None,
    size: int | tuple[int, int] | None,
    batch_size: int | None,
) -> tuple[int, int] | None:
    """Refuse bad overrides before a load that may take minutes; the size as (width, height)."""
    if (steps is not None and steps < 1) or (batch_size is not None and batch_size < 1):
        raise NeuronAttackError(
            f"steps and batch_size must be at least 1; got {steps}, {batch_size}."
        )
    if guidance is not None and guidance < 0:
        raise NeuronAttackError(f"guidance must be >= 0; got {guidance}.")
    if size is None:
        return None
    width, height = (size, size) if isinstance(size, int) else size
    if min(width, height) < SIZE_MULTIPLE or width % SIZE_MULTIPLE or height % SIZE_MULTIPLE:
        raise NeuronAttackError(
            f"Image size {width}x{height} is not a positive multiple of {SIZE_MULTIPLE} in both "
            f"sides; use e.g. {max(SIZE_MULTIPLE, width // SIZE_MULTIPLE * SIZE_MULTIPLE)}."
        )
    return int(width), int(height)


def _render_config(
    pipeline: DiffusionPipeline,
    preset: Preset,
    steps: int | None,
    guidance: float | None,
    size: tuple[int, int] | None,
    batch_size: int | None,
) -> RenderConfig:
    """The preset's settings with the caller's (already checked) overrides."""
    if size is None:
        side = preset.size or _native_size(pipeline)
        size = (side, side)
    return RenderConfig(
        steps=int(preset.steps if steps is None else steps),
        guidance=float(preset.guidance if guidance is None else guidance),
        width=size[0],
        height=size[1],
        batch_size=int(preset.batch_size if batch_size is None else batch_size),
    )


def _native_size(pipeline: DiffusionPipeline) -> int:
    """The size a pipeline renders by default: its latent sample size times the VAE's factor."""
    latent = getattr(pipeline, "default_sample_size", None)
    unet = getattr(pipeline, "unet", None)
    if latent is None and unet is not None:
        latent = unet.config.sample_size
    if not isinstance(latent, int):
        raise NeuronAttackError(
            f"Cannot tell the native image size of {type(pipeline).__name__}; pass size= "
            "(--size) explicitly."
        )
    return latent * pipeline.vae_scale_factor


def _cache_revision(folder: Path | None) -> str | None:
    """The commit hash of a Hugging Face cache snapshot folder (``.../snapshots/<hash>``)."""
    if folder is None or folder.parent.name != "snapshots":
        return None
    return folder.name if re.fullmatch(r"[0-9a-f]{40}", folder.name) else None
