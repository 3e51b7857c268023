"""Batched torch OMP (``neuronattack.neurons.omp``) vs. scikit-learn's ``orthogonal_mp``.

Both solve the same random problem: a dictionary of unit rows with a power-law spectrum (so atoms
are correlated, like word embeddings), centred, and Gaussian targets. scikit-learn solves each
target independently, so it is timed on the first ``--sklearn-targets`` and scaled linearly to
all of them; ours runs on all targets. Each solver runs in its own subprocess, which reports
wall and CPU seconds and its resident memory: the peak, and the solver's increment over the
resident size just before the call (Linux ``VmHWM`` after resetting it through
``/proc/self/clear_refs``; ``tracemalloc`` would miss torch's and BLAS's C allocations). The
problem is written to .npy files first so neither child pays for generating it. Finally the two
answers are compared on the shared targets.

    python benchmarks/sparse_coding.py             # 3,072 targets × 30,000 atoms, d=512, m=128
    python benchmarks/sparse_coding.py --quick     # small problem, seconds
    python benchmarks/sparse_coding.py --device cuda --dtype float32
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

MIB = 2**20


def make_problem(atoms: int, dim: int, targets: int, decay: float, seed: int):
    """``dictionary [atoms, dim]`` and ``targets [targets, dim]``.

    Dictionary rows are unit vectors with spectrum ``i^-decay``, then centred, which leaves them
    off unit norm, as for the real centred word embeddings.
    """
    rng = np.random.default_rng(seed)
    rows = rng.standard_normal((atoms, dim)) * np.arange(1, dim + 1) ** -decay
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    rows -= rows.mean(axis=0)
    return rows, rng.standard_normal((targets, dim))


def memory_kib(field: str) -> int:
    """One ``Vm*`` line of ``/proc/self/status`` in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def reset_peak() -> int:
    """Reset the resident high-water mark; return the resident size now, in bytes."""
    Path("/proc/self/clear_refs").write_text("5")
    return memory_kib("VmRSS") * 1024


def measured(run) -> dict:
    """Run ``run()`` and report its wall/CPU seconds and resident memory."""
    before = reset_peak()
    wall, cpu = time.perf_counter(), time.process_time()
    run()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    peak = memory_kib("VmHWM") * 1024
    load = os.getloadavg()[0]
    return {
        "seconds": wall,
        "cpu_seconds": cpu,
        "peak": peak,
        "increment": peak - before,
        "load": load,
    }


def child_sklearn(args: argparse.Namespace) -> dict:
    from sklearn.linear_model import orthogonal_mp
    from threadpoolctl import threadpool_info

    dictionary = np.load(args.workdir / "dictionary.npy")
    targets = np.load(args.workdir / "targets.npy")[: args.sklearn_targets]
    result = {}

    def run() -> None:
        # precompute=False is orthogonal_mp's default (and "auto" picks it too, since d < atoms).
        result["coef"] = orthogonal_mp(dictionary.T, targets.T, n_nonzero_coefs=args.nonzeros)

    report = measured(run)
    np.save(args.workdir / "sklearn_coef.npy", np.atleast_2d(result["coef"].T))
    blas = {
        f"{p['internal_api']} x {p['num_threads']} threads"
        for p in threadpool_info()
        if p["user_api"] == "blas"
    }
    return report | {"blas": ", ".join(sorted(blas))}


def child_ours(args: argparse.Namespace) -> dict:
    import torch

    from neuronattack.neurons.omp import _screen_available, omp

    device = torch.device(args.device)
    dictionary = torch.from_numpy(np.load(args.workdir / "dictionary.npy")).to(device)
    targets = torch.from_numpy(np.load(args.workdir / "targets.npy")).to(device)
    dtype = getattr(torch, args.dtype)
    result = {}

    def run() -> None:
        result["codes"] = omp(
            dictionary, targets, args.nonzeros, dtype=dtype, chunk_size=args.chunk_size
        )
        if device.type == "cuda":
            torch.cuda.synchronize()

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    report = measured(run)
    codes = result["codes"]
    np.save(args.workdir / "ours_indices.npy", codes.indices.cpu().numpy())
    np.save(args.workdir / "ours_coefficients.npy", codes.coefficients.double().cpu().numpy())
    report["threads"] = torch.get_num_threads()
    report["screen"] = _screen_available(device)
    if device.type == "cuda":
        report["gpu_peak"] = torch.cuda.max_memory_allocated()
    return report


def spawn(role: str, args: argparse.Namespace) -> dict:
    command = [sys.executable, __file__, "--role", role, "--workdir", str(args.workdir)]
    for name in ("atoms", "dim", "nonzeros", "sklearn_targets", "chunk_size", "device", "dtype"):
        command += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def compare(workdir: Path, atoms: int, count: int) -> tuple[int, float, float]:
    """Supports identical (as sets) on the shared targets, max |Δcoef|, max |coef|."""
    expected = np.load(workdir / "sklearn_coef.npy")  # [count, atoms]
    indices = np.load(workdir / "ours_indices.npy")[:count]
    coefficients = np.load(workdir / "ours_coefficients.npy")[:count]
    ours = np.zeros((count, atoms))
    for row in range(count):
        valid = indices[row] >= 0
        ours[row, indices[row, valid]] = coefficients[row, valid]
    same = sum(
        set(np.flatnonzero(ours[row])) == set(np.flatnonzero(expected[row])) for row in range(count)
    )
    return same, float(np.abs(ours - expected).max()), float(np.abs(expected).max())


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", type=int, default=3072)
    parser.add_argument("--atoms", type=int, default=30000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--nonzeros", type=int, default=128)
    parser.add_argument("--sklearn-targets", type=int, default=32)
    parser.add_argument("--chunk-size", type=int, default=512)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float64", choices=("float64", "float32"))
    parser.add_argument("--decay", type=float, default=0.5, help="dictionary spectrum exponent")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="3,000 atoms, d=128, 256 targets")
    parser.add_argument("--role", choices=("sklearn", "ours"), help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.targets, args.atoms, args.dim, args.nonzeros = 256, 3000, 128, 32
        args.sklearn_targets = min(args.sklearn_targets, 16)
    args.sklearn_targets = min(args.sklearn_targets, args.targets)
    return args


def main() -> None:
    args = parse()
    if args.role is not None:
        child = child_sklearn if args.role == "sklearn" else child_ours
        print(json.dumps(child(args)))
        return
    with tempfile.TemporaryDirectory() as workdir:
        args.workdir = Path(workdir)
        dictionary, targets = make_problem(
            args.atoms, args.dim, args.targets, args.decay, args.seed
        )
        np.save(args.workdir / "dictionary.npy", dictionary)
        np.save(args.workdir / "targets.npy", targets)
        del dictionary, targets
        theirs = spawn("sklearn", args)
        ours = spawn("ours", args)
        same, max_difference, max_coefficient = compare(
            args.workdir, args.atoms, args.sklearn_targets
        )
    report(args, theirs, ours, same, max_difference, max_coefficient)


def report(args, theirs: dict, ours: dict, same: int, difference: float, largest: float) -> None:
    import sklearn
    import torch

    subset, total = args.sklearn_targets, args.targets
    scaled = theirs["seconds"] * total / subset
    # Only the dense [atoms, targets] float64 coefficient array grows with the target count.
    projected = theirs["increment"] + (total - subset) * args.atoms * 8
    print(
        f"Problem: {total} targets, {args.atoms} atoms, d={args.dim}, m={args.nonzeros}; "
        f"unit rows with spectrum i^-{args.decay}, centred; seed {args.seed}"
    )
    print(
        f"scikit-learn {sklearn.__version__} orthogonal_mp, precompute=False (its default; "
        f"'auto' also picks it as d < atoms) -> _cholesky_omp per target; BLAS {theirs['blas']}"
    )
    print(
        f"  measured : {subset} targets in {theirs['seconds']:.2f} s "
        f"({theirs['seconds'] / subset:.4f} s/target), CPU {theirs['cpu_seconds']:.2f} s, "
        f"load {theirs['load']:.2f}"
    )
    print(
        f"  scaled   : {total} targets -> {scaled:.1f} s "
        f"(linear: every target is an independent solve)"
    )
    print(
        f"  memory   : peak RSS {theirs['peak'] / MIB:.0f} MiB, "
        f"solver +{theirs['increment'] / MIB:.0f} MiB; projected for {total} targets "
        f"+{projected / MIB:.0f} MiB (adds the dense {args.atoms}x{total} float64 coefficients)"
    )
    print(
        f"neuronattack omp: torch {torch.__version__}, {args.device}, {args.dtype}, "
        f"chunk {args.chunk_size}, bf16 screen {'on' if ours['screen'] else 'off'}, "
        f"{ours['threads']} threads"
    )
    print(
        f"  measured : {total} targets in {ours['seconds']:.2f} s "
        f"({ours['seconds'] / total * 1e3:.2f} ms/target), CPU {ours['cpu_seconds']:.2f} s, "
        f"load {ours['load']:.2f}"
    )
    gpu = f", GPU peak {ours['gpu_peak'] / MIB:.0f} MiB" if "gpu_peak" in ours else ""
    print(
        f"  memory   : peak RSS {ours['peak'] / MIB:.0f} MiB, "
        f"solver +{ours['increment'] / MIB:.0f} MiB{gpu}"
    )
    print(f"speed-up: {scaled / ours['seconds']:.1f}x (scaled scikit-learn seconds / ours)")
    print(
        f"agreement on the {subset} shared targets: supports identical {same}/{subset}, "
        f"max |coef difference| {difference:.2e} (max |coef| {largest:.2f})"
    )


if __name__ == "__main__":
    main()
