"""The cost of a heatmap relative to a plain forward pass, measured in the same run.

A heatmap is one traced pass that keeps every layer × token × head piece (``first_order=True``),
maps them to the output space (``first_order_pieces``) and projects the patch pieces on a text
direction (``explain``). The baseline is ``model.encode_image`` on the same pixels. Also timed:
writing why-maps (the traced pass plus the small overlay PNGs) per image, the cost the attack loop
pays for them.

    python benchmarks/heatmap.py [--models toy random:ViT-B-32] [--batch 1 8] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

from neuronattack.maps.heatmap import text_direction
from neuronattack.maps.patches import explain, grid_shape, traced_pieces
from neuronattack.maps.why import write_why_maps
from neuronattack.models.clip import load_clip


def seconds(function, repeats: int) -> float:
    """Median wall time of ``repeats`` calls after one warm-up call."""
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(clip, batch: int, repeats: int) -> tuple[float, float, float]:
    """Seconds for a plain forward, a heatmap and writing why-maps, on ``batch`` images."""
    visual = clip.model.visual
    size = int(visual.image_size[0])
    direction = text_direction(clip, "a bird", "a frog")
    grid = grid_shape(visual)
    pixels = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(0))
    images = [Image.new("RGB", (size, size), (40 * i % 255, 90, 160)) for i in range(batch)]

    def forward():
        with torch.no_grad():
            clip.model.encode_image(pixels)

    def heatmap():
        _, pieces = traced_pieces(visual, pixels)
        explain(pieces, direction, grid, per_norm=True)

    with tempfile.TemporaryDirectory() as folder:
        paths = [Path(folder) / f"{i}.png" for i in range(batch)]

        def why():
            write_why_maps(clip, images, paths, direction, torch.zeros_like(direction))

        return seconds(forward, repeats), seconds(heatmap, repeats), seconds(why, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["toy", "random:ViT-B-32"])
    parser.add_argument("--batch", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU")
    print(f"{'model':18} {'batch':>5} {'forward ms':>11} {'heatmap ms':>11} {'ratio':>6} "
          f"{'why-maps ms':>12} {'ratio':>6}   (ratios: against the forward, same batch)")
    for spec in args.models:
        clip = load_clip(spec)
        for batch in args.batch:
            plain, mapped, written = measure(clip, batch, args.repeats)
            print(f"{spec:18} {batch:>5} {1000 * plain:>11.1f} {1000 * mapped:>11.1f} "
                  f"{mapped / plain:>6.1f} {1000 * written:>12.1f} {written / plain:>6.1f}")


if __name__ == "__main__":
    main()
