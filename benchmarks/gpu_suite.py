"""Every real-size figure neuronattack claims, on one GPU, in one run of a few minutes: one JSON.

GPU time is lent rarely and briefly, so this script needs nothing but the checkout and its
packages: every model has random weights at its real size (no hub, no internet), and each
section writes the JSON as soon as it is done, so a run cut short keeps what it measured. Each
figure is a ratio against a baseline timed in the same run; the goals are the issue's.

1. ``analysis``: second-order analysis of 3 blocks (both passes, what ``analyze`` does per batch)
   vs a plain ``encode_image`` forward; ViT-B-32 and ViT-L-14, fp32 and bf16. Goal <= 2x.
2. ``text``: 30,000 words, the exact short-context path vs ``encode_text`` at full context
   (``benchmarks/text_encoding.py``). Goal >= 8x.
3. ``omp``: OMP of 3 x 3,072 neurons (ViT-B-32's 3 blocks) over 30,000 word atoms, 128 words
   each. Goal < 10 s.
4. ``render``: SD-Turbo at 512 px (random weights, real architecture: UNet 865.9 M, text encoder
   340.4 M, VAE 83.7 M parameters), our render loop vs a bare diffusers call, batch 1 and 16
   (``benchmarks/render.py``'s two loops). Goal >= 0.95x.
5. ``campaign``: images/s of attacks over 2 pairs, every arm (render, judge with the attacked
   CLIP, check with a second CLIP, write records and PNGs) vs rendering the same prompts alone.
   Goal >= 0.9x.

Run it (about 5 minutes on an H100/H200-class GPU)::

    python benchmarks/gpu_suite.py --out gpu_suite.json

Without CUDA it stops at once with a one-line reason; ``--smoke`` runs every section at toy sizes
on the CPU instead (the tests do that), which checks the script, not the figures.

An offline GPU machine: it needs this checkout and the wheels of the packages it lacks, carried
beside the checkout. On a machine with internet and the same Python and platform::

    pip download -d wheels torch --index-url https://download.pytorch.org/whl/cu124
    pip download -d wheels -e ".[dev]"      # open_clip_torch, diffusers, transformers,
                                             # accelerate, timm, safetensors, rich, click, ...

then on the GPU machine ``pip install --no-index --find-links wheels -e .``. The tokenizers are
open_clip's BPE, shipped inside open_clip_torch; no model file is read.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import platform
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # the other benchmarks' loops are reused, not copied

PARITY = HERE.parent / "tests" / "fixtures" / "official-parity-tiny"
SECTIONS = ("analysis", "text", "omp", "render", "campaign")
GOALS = {"analysis": "ratio <= 2", "text": "ratio >= 8", "omp": "seconds < 10",
         "render": "ratio >= 0.95", "campaign": "ratio >= 0.9"}

# SD-Turbo is Stable Diffusion 2.1-base's architecture (stabilityai/sd-turbo's configs); the
# parameter counts above are what these build. Only what differs from diffusers' defaults.
SD_TURBO_UNET = {
    "sample_size": 64, "cross_attention_dim": 1024, "attention_head_dim": [5, 10, 20, 20],
    "use_linear_projection": True, "block_out_channels": [320, 640, 1280, 1280],
    "down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
    "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3,
}
SD_TURBO_VAE = {
    "block_out_channels": [128, 256, 512, 512], "latent_channels": 4, "sample_size": 512,
    "down_block_types": ["DownEncoderBlock2D"] * 4, "up_block_types": ["UpDecoderBlock2D"] * 4,
}
SD_TURBO_TEXT = {  # OpenCLIP ViT-H/14's text tower, penultimate layer: 23 layers
    "vocab_size": 49408, "hidden_size": 1024, "intermediate_size": 4096,
    "num_hidden_layers": 23, "num_attention_heads": 16, "max_position_embeddings": 77,
    "hidden_act": "gelu", "projection_dim": 512,
}
SD_TURBO_SCHEDULER = {
    "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
    "timestep_spacing": "trailing", "prediction_type": "epsilon",
}

# Sizes per section: real, and --smoke (toy, CPU, seconds).
REAL = {
    "analysis": {"archs": ("ViT-B-32", "ViT-L-14"), "images": {"ViT-B-32": 512, "ViT-L-14": 256},
                 "batch": {"ViT-B-32": 128, "ViT-L-14": 64}, "precisions": ("fp32", "bf16")},
    "text": {"arch": "ViT-B-32", "words": 30000},
    "omp": {"atoms": 30000, "dim": 512, "targets": 3 * 3072, "nonzeros": 128},
    "render": {"batches": (1, 16), "images": {1: 8, 16: 48}, "rounds": 3},
    "campaign": {"clip": "random:ViT-B-32", "n": 16, "batch": 16, "checker": "auto",
                 "words": "common:3000", "nonzeros": 24,
                 "pairs": (("cat", "dog"), ("ship", "airplane")), "warm_up": True},
}
SMOKE = {
    "analysis": {"archs": (f"local-dir:{PARITY}",), "images": {f"local-dir:{PARITY}": 8},
                 "batch": {f"local-dir:{PARITY}": 4}, "precisions": ("fp32", "bf16")},
    "text": {"arch": None, "words": 300},
    "omp": {"atoms": 500, "dim": 32, "targets": 3 * 16, "nonzeros": 8},
    "render": {"batches": (1, 2), "images": {1: 1, 2: 2}, "rounds": 1},
    "campaign": {"clip": f"local-dir:{PARITY}", "n": 1, "batch": 2, "checker": "none",
                 "words": "common:200", "nonzeros": 8, "pairs": (("cat", "dog"),),
                 "warm_up": False},
}


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(function, device: str) -> tuple[float, object]:
    sync(device)
    start = time.perf_counter()
    result = function()
    sync(device)
    return time.perf_counter() - start, result


# -- 1. analysis -------------------------------------------------------------------------------

def analysis_section(sizes: dict, device: str, scratch: Path) -> dict:
    """Seconds: a plain forward vs both passes of the analysis over 3 blocks, same images."""
    from neuronattack.models.clip import load_clip
    from neuronattack.neurons.analysis import PRECISIONS
    from neuronattack.neurons.analysis import default_layers as three_blocks

    rows = {}
    for arch in sizes["archs"]:
        spec = arch if arch.startswith("local-dir:") else f"random:{arch}"
        visual = load_clip(spec, device=device).model.visual
        count, batch = sizes["images"][arch], sizes["batch"][arch]
        layers = three_blocks(len(visual.transformer.resblocks))
        size = visual.image_size[0]
        images = torch.randn(count, 3, size, size, generator=torch.Generator().manual_seed(0))
        for precision in sizes["precisions"]:
            row = _analysis_row(visual, images.to(device), batch, layers, PRECISIONS[precision],
                                device, scratch)
            rows[f"{arch.rsplit('/', 1)[-1]} {precision}"] = row
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
    return {"rows": rows, "ratio": max(row["ratio"] for row in rows.values())}


def _analysis_row(visual, images, batch: int, layers: tuple[int, ...], dtype: torch.dtype,
                  device: str, scratch: Path) -> dict:
    """What ``analyze`` does per batch (its own streaming state), images already on the device."""
    from neuronattack.lens.traced_pass import trace
    from neuronattack.neurons.analysis import AnalysisSettings, _StreamingState

    run_visual = visual if dtype == torch.float32 else _cast(visual, dtype)
    count = len(images)

    def plain():
        with torch.no_grad():
            for chunk in images.split(batch):
                run_visual(chunk.to(dtype))

    settings = AnalysisSettings(layers=layers, top_k=min(100, count))
    state = None

    def setup():  # once per analysis, whatever its size: the effect bases of the blocks
        nonlocal state
        state = _StreamingState(visual, settings, scratch / "unused.safetensors", (0, count),
                                batch, {})

    def passes():  # per image: what grows with the image set
        for pass_index in range(2):
            if pass_index == 1:
                state.merge_means([])
            for offset, chunk in zip(range(0, count, batch), images.split(batch), strict=True):
                with torch.no_grad():
                    record = trace(run_visual, chunk.to(dtype),
                                   mlp_layers=layers).to(torch.float32)
                state.add(pass_index, record, torch.arange(offset, offset + len(chunk)), ())

    def fit():  # once per analysis: the rank-one fits of the top-k
        for fitter in state.fitters.values():
            fitter.result()

    plain()  # warm-up: kernels, allocator
    plain_s, _ = timed(plain, device)
    setup_s, _ = timed(setup, device)
    passes_s, _ = timed(passes, device)
    fit_s, _ = timed(fit, device)
    # The goal is about what grows with the images (both passes per batch); the fixed costs are
    # reported beside it, since on a few hundred images they dominate the total.
    return {"images": count, "batch": batch, "blocks": list(layers), "plain_seconds": plain_s,
            "setup_seconds": setup_s, "passes_seconds": passes_s, "fit_seconds": fit_s,
            "analysis_seconds": setup_s + passes_s + fit_s, "ratio": passes_s / plain_s,
            "total_ratio": (setup_s + passes_s + fit_s) / plain_s}


def _cast(visual: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    import copy

    return copy.deepcopy(visual).to(dtype)


# -- 2. text -----------------------------------------------------------------------------------

def text_section(sizes: dict, device: str) -> dict:
    import text_encoding as text_bench

    if sizes["arch"] is None:  # smoke: the parity CLIP's tiny text tower
        return _smoke_text(sizes["words"], device)
    return text_bench.measure(sizes["arch"], sizes["words"], 0, 256, device)


def _smoke_text(words: int, device: str) -> dict:
    import text_encoding as text_bench

    from neuronattack.models.clip import load_clip
    from neuronattack.models.text_encoding import encode_texts
    from neuronattack.neurons.vocabulary import load_vocabulary

    clip = load_clip(f"local-dir:{PARITY}", device=device)
    texts = list(load_vocabulary(f"common:{words}").words)
    ours_s, ours = timed(lambda: encode_texts(clip, texts), device)
    base_s, base = timed(lambda: text_bench.baseline(clip, texts, 256, device), device)
    return {"words": words, "ours_seconds": ours_s, "baseline_seconds": base_s,
            "ratio": base_s / ours_s, "max_abs_difference": float((ours - base).abs().max())}


# -- 3. omp ------------------------------------------------------------------------------------

def omp_section(sizes: dict, device: str) -> dict:
    from sparse_coding import make_problem

    from neuronattack.neurons.omp import omp

    atoms, targets = make_problem(sizes["atoms"], sizes["dim"], sizes["targets"], 0.5, 0)
    dictionary = torch.from_numpy(atoms).float().to(device)
    targets = torch.from_numpy(targets).float().to(device)
    omp(dictionary, targets[:64], sizes["nonzeros"], dtype=torch.float32)  # warm-up
    seconds, codes = timed(lambda: omp(dictionary, targets, sizes["nonzeros"],
                                       dtype=torch.float32), device)
    return {**sizes, "seconds": seconds, "dtype": "float32",
            "mean_nonzeros": float((codes.coefficients != 0).sum(1).float().mean())}


# -- 4. render ---------------------------------------------------------------------------------

def random_sd_turbo(device: str, batch_size: int):
    """SD-Turbo at real size with random weights, built on the device from the configs above."""
    import diffusers
    from transformers import CLIPTextConfig, CLIPTextModel

    from neuronattack.models.generators import (
        PRESETS,
        DiffusersGenerator,
        RenderConfig,
        clip_tokenizer,
    )

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        with torch.device(device):  # the weights are built on the device (fast)...
            vae = diffusers.AutoencoderKL.from_config(SD_TURBO_VAE)
            text_encoder = CLIPTextModel(CLIPTextConfig(**SD_TURBO_TEXT))
            unet = diffusers.UNet2DConditionModel.from_config(SD_TURBO_UNET)
        pipeline = diffusers.StableDiffusionPipeline(
            vae=vae, text_encoder=text_encoder, tokenizer=clip_tokenizer(), unet=unet,
            # ...the scheduler's tables stay on the CPU, as from_pretrained leaves them: its
            # set_timesteps reads them with numpy.
            scheduler=diffusers.EulerDiscreteScheduler.from_config(SD_TURBO_SCHEDULER),
            safety_checker=None, feature_extractor=None, requires_safety_checker=False,
        )
    pipeline.to(device=device, dtype=torch.float16)
    pipeline.set_progress_bar_config(disable=True)
    preset = PRESETS["sd-turbo"]
    config = RenderConfig(preset.steps, preset.guidance, preset.size, preset.size, batch_size)
    return DiffusersGenerator(pipeline, "sd-turbo-random", config, preset.repo_id,
                              preset="sd-turbo", meaningless=True)


@functools.cache
def _generator(smoke: bool, device: str):
    """Built once for the render and campaign sections (SD-Turbo takes a while to build)."""
    if smoke:
        from neuronattack.models.generators import load_generator

        return load_generator("tiny", device=device)
    return random_sd_turbo(device, 1)


def generator_for(smoke: bool, device: str, batch_size: int):
    generator = _generator(smoke, device)
    generator.config = dataclasses.replace(generator.config, batch_size=batch_size)
    return generator


def _compare_loops(generator, prompts: list[str], seeds: list[int], rounds: int,
                   device: str) -> dict:
    """Images/s of a bare diffusers call and of our loop, timed in alternating rounds."""
    from render import our_loop, plain_loop

    batch = generator.config.batch_size
    plain_loop(generator, prompts[:batch], seeds[:batch])  # warm-up
    our_loop(generator, prompts[:batch], seeds[:batch])
    plain_times, our_times = [], []
    for _ in range(rounds):  # alternating, so drift in load hits both alike
        plain_times.append(timed(lambda: plain_loop(generator, prompts, seeds), device)[0])
        our_times.append(timed(lambda: our_loop(generator, prompts, seeds), device)[0])
    plain_rate = len(prompts) / statistics.median(plain_times)
    our_rate = len(prompts) / statistics.median(our_times)
    return {"images": len(prompts), "plain_images_per_s": plain_rate,
            "ours_images_per_s": our_rate, "ratio": our_rate / plain_rate}


def render_section(sizes: dict, device: str, smoke: bool) -> dict:
    from render import prompts_for

    rows = {}
    generator = generator_for(smoke, device, max(sizes["batches"]))
    parameters = {name: sum(p.numel() for p in getattr(generator.pipeline, name).parameters())
                  for name in ("unet", "text_encoder", "vae")}
    for batch in sizes["batches"]:
        generator = generator_for(smoke, device, batch)
        count = sizes["images"][batch]
        rows[f"batch {batch}"] = _compare_loops(generator, prompts_for(count),
                                                list(range(count)), sizes["rounds"], device)
    return {"rows": rows, "parameters": parameters,
            "size": generator.config.width, "steps": generator.config.steps,
            "ratio": min(row["ratio"] for row in rows.values())}


# -- 5. campaign -------------------------------------------------------------------------------

def campaign_section(sizes: dict, device: str, smoke: bool, scratch: Path) -> dict:
    """``run_attack`` over pairs x 4 arms vs ``generator.render`` of the very same prompts."""
    from PIL import Image

    from neuronattack.attack.records import RESULTS, AttackRecord, read_records
    from neuronattack.attack.run import run_attack
    from neuronattack.attack.settings import AttackSettings
    from neuronattack.attack.setup import build_context, load_class_names
    from neuronattack.imagesets import scan_images
    from neuronattack.models.clip import load_clip
    from neuronattack.neurons.analysis import AnalysisSettings, analyze
    from neuronattack.neurons.atlas import Atlas, ensure_atlas
    from neuronattack.writing import load_writer

    clip = load_clip(sizes["clip"], device=device)
    rng = np.random.default_rng(0)
    folder = scratch / "atlas-images"
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(16):
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(
            folder / f"{index}.png")
    atlas_dir = scratch / "atlas"
    blocks = len(clip.model.visual.transformer.resblocks)
    analyze(clip, scan_images(folder), atlas_dir,
            AnalysisSettings(layers=tuple(range(blocks - 4, blocks - 1)), top_k=4),
            device=device, show_progress=False)
    ensure_atlas(atlas_dir, clip, sizes["words"], sizes["nonzeros"], show_progress=False)
    generator = generator_for(smoke, device, sizes["batch"])
    classes = load_class_names("cifar10")
    context = build_context(clip, Atlas.load(atlas_dir), generator, load_writer("template"),
                            classes, checker=sizes["checker"], device=device,
                            render_batch=sizes["batch"], show_progress=False)
    pairs = sizes["pairs"]

    def attacks(out: Path):
        for source, target in pairs:
            run_attack(context, AttackSettings(source, target, n=sizes["n"]),
                       out / f"{source}-{target}", show_progress=False)

    if sizes["warm_up"]:  # first-call costs (kernels, text caches) are not the campaign's
        attacks(scratch / "warm")
    campaign_s, _ = timed(lambda: attacks(scratch / "timed"), device)
    records = [record for source, target in pairs
               for record in read_records(scratch / "timed" / f"{source}-{target}" / RESULTS)]
    # The same prompts and seeds, rendered alone in the same batches (arm by arm, as run_attack).
    groups: dict[tuple[str, str], list[AttackRecord]] = {}
    for record in records:
        groups.setdefault((record.source, record.arm), []).append(record)

    def render_only():
        for group in groups.values():
            for start in range(0, len(group), sizes["batch"]):
                chunk = group[start:start + sizes["batch"]]
                generator.render([r.prompt for r in chunk], [r.requested_seed for r in chunk])

    render_s, _ = timed(render_only, device)
    images = len(records)
    return {"images": images, "batch": sizes["batch"], "checker": sizes["checker"],
            "campaign_images_per_s": images / campaign_s,
            "render_only_images_per_s": images / render_s, "ratio": render_s / campaign_s}


# -- driver ------------------------------------------------------------------------------------

def environment(device: str) -> dict:
    from neuronattack.artifacts import versions

    info = {"device": device, "python": platform.python_version(), "versions": versions(),
            "torch_threads": torch.get_num_threads()}
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name()
    return info


def run(sections: tuple[str, ...], smoke: bool, device: str, out: Path) -> dict:
    sizes = SMOKE if smoke else REAL
    report = {"schema": "neuronattack.gpu-suite/1", "smoke": smoke, "goals": GOALS,
              "environment": environment(device), "sections": {}}
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        for name in sections:
            start = time.perf_counter()
            print(f"[{name}] ...", file=sys.stderr, flush=True)
            try:
                if name == "analysis":
                    result = analysis_section(sizes[name], device, scratch)
                elif name == "text":
                    result = text_section(sizes[name], device)
                elif name == "omp":
                    result = omp_section(sizes[name], device)
                elif name == "render":
                    result = render_section(sizes[name], device, smoke)
                else:
                    result = campaign_section(sizes[name], device, smoke, scratch / name)
            except Exception as error:  # one failed section must not lose the others' figures
                result = {"error": f"{type(error).__name__}: {error}",
                          "traceback": traceback.format_exc(limit=8)}
            result["wall_seconds"] = time.perf_counter() - start
            report["sections"][name] = result
            out.write_text(json.dumps(report, indent=2) + "\n")
            shown = {key: value for key, value in result.items() if key != "traceback"}
            print(f"[{name}] {json.dumps(shown)}", file=sys.stderr, flush=True)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("gpu_suite.json"))
    parser.add_argument("--smoke", action="store_true",
                        help="toy sizes on the CPU: checks the script, not the figures")
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    args = parser.parse_args()
    if not args.smoke and not torch.cuda.is_available():
        sys.exit("error: the GPU suite needs a CUDA GPU and torch sees none "
                 f"(torch {torch.__version__}, CUDA build {torch.version.cuda}); use --smoke "
                 "for a CPU check of the script.")
    device = "cpu" if args.smoke else "cuda"
    report = run(tuple(args.sections), args.smoke, device, args.out)
    failed = [name for name, result in report["sections"].items() if "error" in result]
    print(f"wrote {args.out}" + (f"; failed: {', '.join(failed)}" if failed else ""))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
