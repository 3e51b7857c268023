"""The rank-one fits at the end of an analysis: on the GPU vs on the host's CPU, same inputs.

Each neuron's fit is a QR of its ``[out_dim, K]`` basis and an SVD of a ``[k, K]`` matrix, K a few
dozen (the later heads). cuSOLVER factors a batch of such small matrices one at a time, so the
library runs them on the CPU (``neurons.directions.FIT_DEVICE``); this script times both on the
sizes of ViT-B-32's and ViT-L-14's three analysed blocks (random inputs, float64, top-k 100) and
prints the ratio and the largest difference between the two results.

    python benchmarks/rank_one_fit.py            # needs CUDA for the comparison
"""

from __future__ import annotations

import json
import time

import torch

from neuronattack.neurons.directions import fit_rank_one

# (neurons per block, later heads K per analysed block, out_dim): the three blocks before the last.
SIZES = {"ViT-B-32": (3072, (36, 24, 12), 512), "ViT-L-14": (4096, (48, 32, 16), 768)}
TOP_K = 100


def timed_fits(blocks, device: torch.device) -> tuple[float, list]:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    results = [fit_rank_one(coefficients, basis, shared, device=device)
               for coefficients, basis, shared in blocks]
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start, results


def measure(arch: str, where: torch.device) -> dict:
    neurons, heads, out_dim = SIZES[arch]
    generator = torch.Generator().manual_seed(0)
    blocks = [(torch.randn(neurons, TOP_K, k, generator=generator, dtype=torch.float64).to(where),
               torch.randn(neurons, k, out_dim, generator=generator,
                           dtype=torch.float64).to(where),
               torch.zeros(0, out_dim, dtype=torch.float64, device=where))
              for k in heads]
    timed_fits([(c[:256], b[:256], s) for c, b, s in blocks], where)  # warm-up
    timed_fits([(c[:256], b[:256], s) for c, b, s in blocks], torch.device("cpu"))
    on_gpu_s, on_gpu = timed_fits(blocks, where)
    on_cpu_s, on_cpu = timed_fits(blocks, torch.device("cpu"))
    difference = max(float((a.cpu() - b).abs().max())
                     for one, other in zip(on_gpu, on_cpu, strict=True)
                     for a, b in zip(one, other, strict=True))
    return {"arch": arch, "neurons": len(heads) * neurons, "later_heads": heads, "top_k": TOP_K,
            "gpu_seconds": on_gpu_s, "cpu_seconds": on_cpu_s, "ratio": on_gpu_s / on_cpu_s,
            "max_abs_difference": difference, "cpu_threads": torch.get_num_threads()}


def main() -> None:
    if not torch.cuda.is_available():
        raise SystemExit("error: this comparison needs a CUDA GPU; on a CPU-only machine the fits "
                         "run on the CPU anyway.")
    for arch in SIZES:
        row = measure(arch, torch.device("cuda"))
        print(json.dumps(row))
        print(f"{arch}: fits of {row['neurons']} neurons on the GPU {row['gpu_seconds']:.2f} s, "
              f"on the CPU ({row['cpu_threads']} threads) {row['cpu_seconds']:.2f} s: "
              f"{row['ratio']:.1f}x; largest difference {row['max_abs_difference']:.1e}")


if __name__ == "__main__":
    main()
