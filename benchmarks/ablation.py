"""The ablation curve (`neuronattack ablate`) against a plain forward pass, on the same images.

Prints seconds per image for
- plain:  ``model.encode_image``, the floor;
- curve:  what ``ablate`` does: one traced pass recording the per-layer × token × head pieces
          (``lens.decompose``), reduced to ``Contributions``, then both series of the curve
          (2 × (layers + 1) points) by arithmetic;
and the ratio curve / plain, next to 2 × (layers + 1): what re-running the forward once per point
(the obvious way to ablate) would cost at the very least.

    python benchmarks/ablation.py                       # toy CLIP and random ViT-B-32, CPU
    python benchmarks/ablation.py --models ViT-B-32 --images 64 --device cuda
"""

from __future__ import annotations

import argparse
import time

import torch


def build(name: str, device: str):
    if name == "toy":
        from neuronattack.toy.model import load_toy_clip

        return load_toy_clip(device=device).model, 64
    import open_clip

    torch.manual_seed(0)
    model = open_clip.create_model(name).eval().to(device)
    return model, model.visual.image_size[0]


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(function, repeats: int, device: str) -> float:
    """Best of ``repeats`` wall-clock times (the machine is shared; the best is the cost)."""
    best = float("inf")
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        function()
        sync(device)
        best = min(best, time.perf_counter() - start)
    return best


def measure(name: str, count: int, batch: int, repeats: int, device: str) -> None:
    from neuronattack.heads.ablation import ablation_curve
    from neuronattack.heads.contributions import concatenate, contributions

    model, size = build(name, device)
    layers = len(model.visual.transformer.resblocks)
    images = torch.randn(count, 3, size, size,
                         generator=torch.Generator().manual_seed(1)).to(device)
    out_dim = model.visual.proj.shape[1]
    classes = torch.nn.functional.normalize(
        torch.randn(10, out_dim, generator=torch.Generator().manual_seed(2)), dim=-1).to(device)
    labels = torch.arange(count, device=device) % 10

    def plain():
        with torch.no_grad():
            for chunk in images.split(batch):
                model.encode_image(chunk)

    def curve():
        with torch.no_grad():
            parts = [contributions(model.visual, chunk) for chunk in images.split(batch)]
            return ablation_curve(concatenate(parts), classes, labels)

    plain()  # warm-up
    curve()
    plain_s = timed(plain, repeats, device) / count
    curve_s = timed(curve, repeats, device) / count
    points = 2 * (layers + 1)
    print(f"{name:10s} plain {plain_s * 1e3:8.2f} ms/image   curve {curve_s * 1e3:8.2f} "
          f"ms/image   curve/plain {curve_s / plain_s:5.2f}x   "
          f"(a forward per point: >= {points}x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["toy", "ViT-B-32"])
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    print(f"torch threads {torch.get_num_threads()}, device {args.device}, "
          f"{args.images} images, batches of {args.batch}, best of {args.repeats}")
    for name in args.models:
        measure(name, args.images, args.batch, args.repeats, args.device)


if __name__ == "__main__":
    main()
