"""Second-order effects on random ViT-B-32: streaming path vs. brute force vs. a plain forward.

Prints seconds per image per analysed block for
- plain:       ``model.encode_image`` (no lens at all), the floor;
- streaming:   what ``neuronattack analyze`` does per image: two traced passes (mean, top-k) over
               blocks 8, 9, 10 at once, coordinates, and the streaming top-k updates;
- brute force: the explicit per-neuron formula, every later head (``lens/brute_force.py``; the
               papers' code works this way and also stores ``[images, neurons, out_dim]``);
and the ratios, plus the peak resident memory of each, each measured in its own subprocess.

    python benchmarks/second_order.py            # CPU, 32 images streamed, 1 image brute force
    python benchmarks/second_order.py --device cuda --images 512
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch

LAYERS = (8, 9, 10)


def build(device: str):
    import open_clip

    torch.manual_seed(0)
    return open_clip.create_model("ViT-B-32").eval().to(device)


def images_for(count: int, device: str) -> torch.Tensor:
    generator = torch.Generator().manual_seed(1)
    return torch.randn(count, 3, 224, 224, generator=generator).to(device)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def run_plain(device: str, count: int, batch: int) -> float:
    model = build(device)
    images = images_for(count, device)
    with torch.no_grad():
        model.encode_image(images[:batch])  # warm-up
        sync(device)
        start = time.perf_counter()
        for chunk in images.split(batch):
            model.encode_image(chunk)
        sync(device)
    return time.perf_counter() - start


def run_streaming(device: str, count: int, batch: int) -> float:
    from neuronattack.lens.neuron_effects import effect_basis, effect_coords
    from neuronattack.lens.traced_pass import trace
    from neuronattack.neurons.directions import RankOneFitter

    model = build(device)
    visual = model.visual
    images = images_for(count, device)
    with torch.no_grad():
        bases = {layer: effect_basis(visual, layer) for layer in LAYERS}
        fitters = {layer: RankOneFitter(basis, top_k=min(100, count)) for layer, basis in
                   bases.items()}
        trace(visual, images[:batch], mlp_layers=LAYERS)  # warm-up
        sync(device)
        start = time.perf_counter()
        for pass_index in range(2):
            for offset, chunk in zip(range(0, count, batch), images.split(batch), strict=True):
                record = trace(visual, chunk, mlp_layers=LAYERS)
                for layer, fitter in fitters.items():
                    coords = effect_coords(record, bases[layer])
                    if pass_index == 0:
                        fitter.add_to_mean(*coords)
                    else:
                        fitter.add_to_top_k(*coords, torch.arange(offset, offset + len(chunk)))
        for fitter in fitters.values():
            fitter.result()
        sync(device)
    return time.perf_counter() - start


def run_brute_force(device: str, count: int, layers: tuple[int, ...]) -> float:
    from neuronattack.lens.brute_force import second_order_brute_force

    model = build(device)
    images = images_for(count, device)
    with torch.no_grad():
        start = time.perf_counter()
        for layer in layers:
            second_order_brute_force(model.visual, images, layer)
        sync(device)
    return time.perf_counter() - start


def worker(args) -> None:
    torch.set_num_threads(args.threads)
    if args.worker == "plain":
        seconds = run_plain(args.device, args.images, args.batch)
    elif args.worker == "streaming":
        seconds = run_streaming(args.device, args.images, args.batch)
    else:
        seconds = run_brute_force(args.device, args.brute_images, tuple(args.brute_layers))
    peak_gpu = torch.cuda.max_memory_allocated() if args.device.startswith("cuda") else 0
    print(json.dumps({
        "seconds": seconds,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_gpu_mib": peak_gpu / 2**20,
    }))


def measure(name: str, args) -> dict:
    command = [sys.executable, __file__, "--worker", name, "--device", args.device,
               "--images", str(args.images), "--batch", str(args.batch),
               "--brute-images", str(args.brute_images), "--threads", str(args.threads),
               "--brute-layers", *map(str, args.brute_layers)]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--images", type=int, default=32, help="images for plain and streaming")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--brute-images", type=int, default=1)
    parser.add_argument("--brute-layers", type=int, nargs="+", default=[9],
                        help="blocks timed by brute force (9 has the median number of later heads)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--worker", choices=["plain", "streaming", "brute"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return

    plain = measure("plain", args)
    streaming = measure("streaming", args)
    brute = measure("brute", args)
    per_plain = plain["seconds"] / args.images
    per_stream = streaming["seconds"] / args.images / len(LAYERS)
    per_brute = brute["seconds"] / args.brute_images / len(args.brute_layers)
    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else \
        f"CPU, {args.threads} threads"
    print(f"random ViT-B-32, {device}; streaming over blocks {LAYERS} with both passes "
          f"({args.images} images, batch {args.batch}); brute force on block(s) "
          f"{args.brute_layers} ({args.brute_images} image(s))")
    print(f"{'':<34}{'s/image/block':>14}{'peak RSS MiB':>14}{'peak GPU MiB':>14}")
    print(f"{'plain encode_image (per image)':<34}{per_plain:>14.4f}"
          f"{plain['peak_rss_mib']:>14.0f}{plain['peak_gpu_mib']:>14.0f}")
    print(f"{'streaming (analyze, 2 passes)':<34}{per_stream:>14.4f}"
          f"{streaming['peak_rss_mib']:>14.0f}{streaming['peak_gpu_mib']:>14.0f}")
    print(f"{'brute force formula':<34}{per_brute:>14.4f}"
          f"{brute['peak_rss_mib']:>14.0f}{brute['peak_gpu_mib']:>14.0f}")
    print(f"speed-up over brute force: {per_brute / per_stream:,.0f}x per image per block")
    ratio = streaming["seconds"] / plain["seconds"]
    print(f"all {len(LAYERS)} blocks, both passes, cost {ratio:.2f}x a plain forward pass over "
          "the same images")
    stored = 3072 * 512 * 4 / 2**20
    print(f"brute force must also keep phi: {stored:.1f} MiB per image per block "
          f"({stored * 5124 / 1024:.1f} GiB per block for the paper's 5,124 images); "
          "streaming keeps only the per-neuron top-k")


if __name__ == "__main__":
    main()
