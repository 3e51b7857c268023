"""Our render loop vs. a plain diffusers pipeline call: same pipeline, prompts, seeds and batches.

Prints images/s for
- plain:        ``pipeline(prompt=batch, generator=[one CPU generator per image], ...)`` with the
                pipeline's own PIL output, batch after batch, the floor;
- neuronattack: ``DiffusersGenerator.render`` (float output, NaN/blank checks, PIL conversion);
and their ratio (goal: >= 0.95), plus how far apart the two runs' pixels are. The two are timed
in alternating rounds and the median round of each is reported, so drift in machine load hits
both alike.

    python benchmarks/render.py                                  # tiny preset on the CPU
    python benchmarks/render.py --threads 1                      # steadier on a busy machine
    python benchmarks/render.py --preset sd-turbo --device cuda  # real weights, from the HF cache
    python benchmarks/render.py --preset sd-turbo --random-weights --device cuda
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from neuronattack.errors import NeuronAttackError
from neuronattack.models.generators import (
    PRESETS,
    DiffusersGenerator,
    RenderConfig,
    clip_tokenizer,
    load_generator,
)

SUBJECTS = ("a cat", "a red car", "an old lighthouse", "a bowl of ramen", "a violin", "a fox")
NOISE_NOTE = "random weights: the images are noise; throughput is what is measured"
TINY_NOTE = (
    "tiny networks: the pipeline itself costs so little that this measures the render loop's "
    "overhead, not diffusion speed"
)
STYLES = ("on a beach", "in the snow", "at night", "in a museum", "under water", "in a forest")


def prompts_for(count: int) -> list[str]:
    """Distinct sentences, so no batch is a repeat of one prompt."""
    return [
        f"a photo of {SUBJECTS[i % len(SUBJECTS)]} {STYLES[i // len(SUBJECTS) % len(STYLES)]}"
        for i in range(count)
    ]


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def plain_loop(generator: DiffusersGenerator, prompts: list[str], seeds: list[int]) -> list:
    """What a user would write with diffusers alone, with the settings our loop uses."""
    config, pipeline = generator.config, generator.pipeline
    images: list[Image.Image] = []
    for start in range(0, len(prompts), config.batch_size):
        batch = slice(start, start + config.batch_size)
        images += pipeline(
            prompt=prompts[batch],
            num_inference_steps=config.steps,
            guidance_scale=config.guidance,
            width=config.width,
            height=config.height,
            generator=[torch.Generator(device="cpu").manual_seed(s) for s in seeds[batch]],
        ).images
    return images


def our_loop(generator: DiffusersGenerator, prompts: list[str], seeds: list[int]) -> list:
    return generator.render(prompts, seeds)


def timed(run: Callable[[], list], device: str) -> tuple[float, list]:
    sync(device)
    start = time.perf_counter()
    out = run()
    sync(device)
    return time.perf_counter() - start, out


def random_sd_turbo(device: str, dtype: torch.dtype, batch_size: int) -> DiffusersGenerator | None:
    """Real-size SD-Turbo with random weights, from its component configs in the HF cache.

    Only the small config files are needed. The tokenizer is built offline from CLIP's BPE
    (SD-Turbo's OpenCLIP tokenizer has the same vocabulary; only its padding token differs, which
    changes no timing). Random weights make the images noise: throughput is what is measured.
    """
    import diffusers
    from huggingface_hub import hf_hub_download
    from transformers import CLIPTextConfig, CLIPTextModel

    repo_id = PRESETS["sd-turbo"].repo_id
    names = ("unet/config.json", "vae/config.json", "text_encoder/config.json",
             "scheduler/scheduler_config.json")  # fmt: skip
    try:
        paths = [hf_hub_download(repo_id, name, local_files_only=True) for name in names]
    # Any lookup failure means the same: the configs are not here.
    except Exception as error:
        print(
            f"--random-weights: the {repo_id} configs are not in the local Hugging Face cache "
            f"({type(error).__name__}); skipped. On a machine with network access, "
            f"'hf download {repo_id} --include \"*.json\"' fetches them."
        )
        return None
    unet_path, vae_path, text_path, scheduler_path = paths
    unet_config, vae_config, scheduler_config = (
        json.loads(Path(path).read_text()) for path in (unet_path, vae_path, scheduler_path)
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        pipeline = diffusers.StableDiffusionPipeline(
            vae=diffusers.AutoencoderKL.from_config(vae_config),
            text_encoder=CLIPTextModel(CLIPTextConfig.from_json_file(text_path)),
            tokenizer=clip_tokenizer(),
            unet=diffusers.UNet2DConditionModel.from_config(unet_config),
            scheduler=getattr(diffusers, scheduler_config["_class_name"]).from_config(
                scheduler_config
            ),
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
    if dtype != torch.float32:  # casting a float32 build to float32 only prints warnings
        pipeline.to(dtype=dtype)
    pipeline.to(device)
    pipeline.set_progress_bar_config(disable=True)
    preset = PRESETS["sd-turbo"]
    config = RenderConfig(preset.steps, preset.guidance, preset.size, preset.size, batch_size)
    return DiffusersGenerator(
        pipeline, "sd-turbo-random", config, repo_id, preset="sd-turbo", meaningless=True
    )


def build(args: argparse.Namespace) -> DiffusersGenerator | None:
    if args.random_weights:
        if args.preset != "sd-turbo":
            sys.exit("--random-weights is for --preset sd-turbo only")
        dtype = torch.float16 if args.device.startswith("cuda") else torch.float32
        batch = args.batch_size or PRESETS["sd-turbo"].batch_size
        return random_sd_turbo(args.device, dtype, batch)
    try:
        return load_generator(args.preset, device=args.device, batch_size=args.batch_size)
    except NeuronAttackError as error:
        sys.exit(f"error: {error}")


def level_gap(plain: list[Image.Image], ours: list) -> int:
    """The largest 8-bit difference between the two runs' images (0 means identical)."""
    gaps = [
        np.abs(np.asarray(a, np.int16) - np.asarray(b.image, np.int16)).max()
        for a, b in zip(plain, ours, strict=True)
        if b.image is not None
    ]
    return int(max(gaps, default=0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny", help="a preset or any generator spec")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads for torch (default: torch's choice); 1 is steadier on a busy machine",
    )
    parser.add_argument(
        "--random-weights",
        action="store_true",
        help="sd-turbo only: real-size random weights built from cached configs",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    generator = build(args)
    if generator is None:
        return
    prompts, seeds = prompts_for(args.images), list(range(args.images))
    config = generator.config
    warm = config.batch_size
    plain_loop(generator, prompts[:warm], seeds[:warm])
    our_loop(generator, prompts[:warm], seeds[:warm])

    plain_times, our_times = [], []
    for _ in range(args.rounds):
        seconds, plain_images = timed(lambda: plain_loop(generator, prompts, seeds), args.device)
        plain_times.append(seconds)
        seconds, our_results = timed(lambda: our_loop(generator, prompts, seeds), args.device)
        our_times.append(seconds)

    plain_rate = args.images / statistics.median(plain_times)
    our_rate = args.images / statistics.median(our_times)
    settings = generator.settings
    print(generator.describe())
    if settings["meaningless"]:
        print(f"  {NOISE_NOTE}")
    if settings["preset"] == "tiny":
        print(f"  {TINY_NOTE}")
    threads = torch.get_num_threads()
    print(f"  {args.images} images, {threads} CPU threads, median of {args.rounds} rounds")
    print(f"  plain diffusers : {plain_rate:8.2f} images/s")
    print(f"  neuronattack    : {our_rate:8.2f} images/s")
    print(f"  ratio           : {our_rate / plain_rate:8.3f}  (goal >= 0.95)")
    retried = sum(r.retried for r in our_results)
    failed = sum(r.failed for r in our_results)
    print(
        f"  pixels          : at most {level_gap(plain_images, our_results)} levels apart; "
        f"{retried} retried, {failed} failed"
    )


if __name__ == "__main__":
    main()
