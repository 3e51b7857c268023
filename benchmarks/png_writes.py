"""Writing an attack batch's PNGs: one by one vs ``attack.run.save_pngs`` (parallel threads).

PNG encoding is the largest cost of a campaign outside the generator on a GPU (a profile on an
H200: 17 of 73 s). zlib lets go of the GIL while it compresses, so the images of a batch are
written in parallel. This script times both ways on the same images, in the same run: 16 images of
512 px, noise (what random-weight pipelines draw, incompressible) and smooth gradients with mild
noise (closer to photographs).

    python benchmarks/png_writes.py
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from neuronattack.attack.records import AttackRecord
from neuronattack.attack.run import save_png, save_pngs

COUNT, SIZE, ROUNDS = 16, 512, 3


def images(kind: str) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    if kind == "noise":
        return [Image.fromarray(rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8))
                for _ in range(COUNT)]
    y, x = np.mgrid[0:SIZE, 0:SIZE] / SIZE
    return [Image.fromarray(np.clip(np.stack(
        [np.sin(3 * x + i + c) * 60 + np.cos(5 * x * y + c) * 50 + 120 for c in range(3)], -1)
        + rng.normal(0, 4, (SIZE, SIZE, 3)), 0, 255).astype(np.uint8)) for i in range(COUNT)]


def record(index: int) -> AttackRecord:
    return AttackRecord(id=f"cat-dog/s0/method/{index:04d}", arm="method", index=index,
                        source="cat", target="dog", prompt="a cat", words=(), seed=index,
                        negative_prompt=None, failed=False, model="bench", run_seed=0,
                        generator={"name": "bench"}, neurons=(), atlas=None)


def main() -> None:
    print(f"{COUNT} PNGs of {SIZE} px per round, median of {ROUNDS} rounds, "
          f"{os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        for kind in ("noise", "smooth"):
            pngs = [(image, folder / f"{kind}-{i}.png", record(i))
                    for i, image in enumerate(images(kind))]
            one_by_one, parallel = [], []
            for _ in range(ROUNDS):
                start = time.perf_counter()
                for png in pngs:
                    save_png(*png)
                one_by_one.append(time.perf_counter() - start)
                start = time.perf_counter()
                save_pngs(pngs)
                parallel.append(time.perf_counter() - start)
            serial_s, parallel_s = sorted(one_by_one)[ROUNDS // 2], sorted(parallel)[ROUNDS // 2]
            print(f"{kind}: one by one {1000 * serial_s / COUNT:.1f} ms/image, save_pngs "
                  f"{1000 * parallel_s / COUNT:.1f} ms/image: {serial_s / parallel_s:.2f}x")


if __name__ == "__main__":
    main()
