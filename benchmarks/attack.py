"""Where an attack's time goes: selection and bookkeeping, writing, rendering, judging, checking.

Wraps each component of a real ``run_attack`` in a timer (the library carries no instrumentation)
and prints seconds per stage and per image, plus the share of time outside the generator — the
overhead our loop adds around rendering. On a CPU the default is the tiny generator and the tiny
parity CLIP, so rendering is cheap and the overhead share is an upper bound; on a GPU use
``--generator sd-turbo --clip ViT-B-32:openai`` with real weights, or see benchmarks/render.py for
our render loop against a plain diffusers call.

    python benchmarks/attack.py [--n 16] [--generator tiny] [--device cpu]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image

PARITY = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "official-parity-tiny"


class Timed:
    """Forwards every call of one method to ``target`` and adds its duration to ``totals``."""

    def __init__(self, target, method: str, stage: str, totals: dict):
        self._target, self._method, self._stage, self._totals = target, method, stage, totals

    def __getattr__(self, name):
        attribute = getattr(self._target, name)
        if name != self._method:
            return attribute

        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return attribute(*args, **kwargs)
            finally:
                self._totals[self._stage] += time.perf_counter() - start

        return timed


def build_inputs(folder: Path) -> Path:
    rng = np.random.default_rng(0)
    images = folder / "images"
    for label in ("cat", "dog", "ship"):
        (images / label).mkdir(parents=True)
        for index in range(12):
            Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(
                images / label / f"{index}.png")
    return images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=16, help="images per arm")
    parser.add_argument("--clip", default=f"local-dir:{PARITY}")
    parser.add_argument("--generator", default="tiny")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()

    from neuronattack.attack.run import run_attack
    from neuronattack.attack.settings import AttackSettings
    from neuronattack.attack.setup import build_context
    from neuronattack.imagesets import scan_images
    from neuronattack.models import load_clip
    from neuronattack.models.generators import load_generator
    from neuronattack.neurons.analysis import AnalysisSettings, analyze
    from neuronattack.neurons.atlas import ensure_atlas
    from neuronattack.writing import load_writer

    totals: dict[str, float] = defaultdict(float)
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        clip = load_clip(args.clip, device=args.device)
        blocks = len(clip.model.visual.transformer.resblocks)
        atlas_dir = scratch / "atlas"
        analyze(clip, scan_images(build_inputs(scratch)), atlas_dir,
                AnalysisSettings(layers=(blocks - 3, blocks - 2), top_k=10), show_progress=False)
        atlas = ensure_atlas(atlas_dir, clip, "common:2000", 32, show_progress=False)
        context = build_context(clip, atlas, load_generator(args.generator, device=args.device),
                                load_writer("template"), ["cat", "dog", "ship", "bird"],
                                checker="none", device=args.device, render_batch=args.batch,
                                show_progress=False)
        context.generator = Timed(context.generator, "render", "render", totals)
        context.writer = Timed(context.writer, "write", "write", totals)
        context.judges = [Timed(judge, "judge", "judge", totals) for judge in context.judges]
        context.checker = Timed(context.checker, "check", "check", totals)
        settings = AttackSettings(source="cat", target="dog", n=args.n)
        start = time.perf_counter()
        records = run_attack(context, settings, scratch / "run", show_progress=False)
        wall = time.perf_counter() - start

    images = len(records)
    totals["selection, files, bookkeeping"] = wall - sum(totals.values())
    model = Path(args.clip).name if "local-dir" in args.clip else args.clip
    print(f"attack cat → dog, {images} images ({args.n} per arm, 4 arms), generator "
          f"{args.generator}, CLIP {model}, {args.device}")
    print(f"{'stage':<32}{'seconds':>10}{'ms/image':>10}{'share':>8}")
    for stage, seconds in sorted(totals.items(), key=lambda item: -item[1]):
        print(f"{stage:<32}{seconds:>10.3f}{1000 * seconds / images:>10.1f}"
              f"{seconds / wall:>8.1%}")
    print(f"{'total':<32}{wall:>10.3f}{1000 * wall / images:>10.1f}")
    print(f"time outside the generator: {1 - totals['render'] / wall:.1%} of the run")


if __name__ == "__main__":
    main()
