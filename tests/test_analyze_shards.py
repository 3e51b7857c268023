"""Sharded analysis: the merge of N shards equals one process bit for bit, and shards resume.

The pieces are tested against slow obvious references first (a float64 sum, a sort by key), then
whole analyses are compared with ``torch.equal`` on every tensor: shards run as two OS processes
through the CLI, and as two threads of this process when a shard must be killed mid-pass.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import PARITY_DIR
from PIL import Image

from neuronattack.cli import main
from neuronattack.errors import NeuronAttackError
from neuronattack.imagesets import scan_images
from neuronattack.models import load_clip
from neuronattack.neurons import analysis
from neuronattack.neurons.analysis import AnalysisSettings, analyze, load_directions
from neuronattack.neurons.directions import top_k_order
from neuronattack.neurons.sharding import Shard, TreeSum, launched_shard, parse_shard

SPEC = f"local-dir:{PARITY_DIR}"
SETTINGS = AnalysisSettings(layers=(1, 2), top_k=4)
BATCH = 2


@pytest.fixture(scope="module")
def clip():
    return load_clip(SPEC)


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(1)
    for index in range(13):
        pixels = rng.integers(0, 255, (36, 36, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{index:03d}.png")
    (folder / "007b.png").write_bytes(b"not an image")  # unreadable, inside shard 1's range
    return folder


@pytest.fixture(scope="module")
def single(clip, image_dir, tmp_path_factory):
    """The reference: one process over every image."""
    out = tmp_path_factory.mktemp("single")
    return analyze(clip, scan_images(image_dir), out, SETTINGS, batch_size=BATCH,
                   show_progress=False)


def assert_identical(result, reference) -> None:
    assert sorted(result.directions) == sorted(reference.directions)
    for layer, fit in reference.directions.items():
        for name, value in vars(fit).items():
            other = getattr(result.directions[layer], name)
            if isinstance(value, torch.Tensor):
                assert torch.equal(other, value), f"{layer}.{name} differs"
            else:
                assert other == value
    for key in ("images_used", "images_skipped", "mean_embedding_norm", "summary"):
        assert result.meta[key] == reference.meta[key], key


# -- pieces ------------------------------------------------------------------------------------

def test_tree_sum_is_the_same_however_positions_are_split_and_ordered():
    generator = torch.Generator().manual_seed(0)
    # float64 over 8 decades: adding the same numbers in another grouping changes the last bits
    # (checked below), so only a grouping fixed by the positions can agree bit for bit.
    values = {i: torch.randn(5, generator=generator, dtype=torch.float64) * 10 ** float(i % 9 - 4)
              for i in range(100) if i != 41}  # one missing position, like an unreadable image
    whole = TreeSum()
    for position in sorted(values):
        whole.add(position, {"x": values[position]})
    expected = whole.total()["x"]
    reference = torch.stack([value.double() for value in values.values()]).sum(0)
    torch.testing.assert_close(expected, reference, rtol=1e-12, atol=0)
    rng = random.Random(0)
    naive_differs = 0
    for _ in range(20):
        cuts = sorted(rng.sample(range(1, 100), rng.randint(1, 6)))
        parts = []
        for start, stop in zip([0, *cuts], [*cuts, 100], strict=True):
            part = TreeSum()
            for position in range(start, stop):
                if position in values:
                    part.add(position, {"x": values[position]})
            parts.append(part)
        merged = TreeSum()
        for part in rng.sample(parts, len(parts)):
            merged.merge(TreeSum.from_state_dict(part.state_dict()))
        assert torch.equal(merged.total()["x"], expected)
        assert len(merged.nodes) <= 2 * 7  # O(log n) nodes, not one per image
        naive = sum(sum((values[i] for i in range(start, stop) if i in values),
                        torch.zeros(5, dtype=torch.float64))
                    for start, stop in zip([0, *cuts], [*cuts, 100], strict=True))
        naive_differs += not torch.equal(naive, expected)
    assert naive_differs > 10  # the test data would catch a plain running sum


def test_tree_sum_refuses_a_position_added_twice():
    tree = TreeSum()
    tree.add(3, {"x": torch.ones(1)})
    with pytest.raises(ValueError, match="twice"):
        tree.add(3, {"x": torch.ones(1)})


def test_top_k_order_is_norm_then_lower_image_index():
    norms = torch.tensor([[1.0, 3.0, 3.0, 2.0, 3.0, -torch.inf]])
    images = torch.tensor([[9, 7, 2, 4, 5, -1]])
    keep = top_k_order(norms, images, 4)
    assert images.gather(1, keep).tolist() == [[2, 5, 7, 4]]
    generator = torch.Generator().manual_seed(3)
    norms = torch.randint(0, 4, (50, 30), generator=generator).double()
    images = torch.stack([torch.randperm(30, generator=generator) for _ in range(50)])
    keep = top_k_order(norms, images, 10)
    for row in range(50):
        slow = sorted(zip(norms[row].tolist(), images[row].tolist(), strict=True),
                      key=lambda pair: (-pair[0], pair[1]))[:10]
        assert images[row, keep[row]].tolist() == [image for _, image in slow]


def test_shards_own_whole_batches_and_cover_every_image():
    for images in (1, 9, 13, 64):
        for count in (1, 2, 3, 5, 8):
            ranges = [Shard(index, count).batch_range(images, 4) for index in range(count)]
            assert ranges[0][0] == 0 and ranges[-1][1] == images
            for (_, stop), (start, _) in zip(ranges, ranges[1:], strict=False):
                assert stop == start and start % 4 == 0


def test_parse_shard_and_the_launched_shard(monkeypatch):
    assert parse_shard("1/4") == Shard(1, 4) and parse_shard(" 0 / 1 ") == Shard()
    for bad in ("4/4", "1", "a/b", "-1/2", "0/0"):
        with pytest.raises(NeuronAttackError, match="--shard"):
            parse_shard(bad)
    monkeypatch.setenv("WORLD_SIZE", "3")
    monkeypatch.setenv("RANK", "2")
    assert launched_shard() == Shard(2, 3)
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert launched_shard() == Shard()


# -- whole analyses ----------------------------------------------------------------------------

def run_shard_process(image_dir: Path, out: Path, shard: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "neuronattack", "analyze", "--clip", SPEC, "--images",
               str(image_dir), "--layers", "1", "2", "--top-k", "4", "--batch-size", str(BATCH),
               "--device", "cpu", "--words", "none", "--out", str(out), "--shard", shard]
    threads = str(torch.get_num_threads())  # as this process: same kernels, same rounding
    env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def test_two_processes_equal_one_bit_for_bit(clip, image_dir, single, tmp_path):
    """Shard 1 through the CLI in a process of its own, shard 0 here (one import fewer)."""
    out = tmp_path / "sharded"
    process = run_shard_process(image_dir, out, "1/2")
    try:
        result = analyze(clip, scan_images(image_dir), out, SETTINGS, batch_size=BATCH,
                         show_progress=False, shard=Shard(0, 2))
    finally:
        _, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr[-2000:]
    assert_identical(result, single)
    stored = analysis.Analysis(out, json.loads((out / "meta.json").read_text()),
                               load_directions(out))
    assert_identical(stored, single)
    assert result.meta["shards"] == 2 and result.meta["images_skipped"] == ["007b.png"]
    assert sorted(path.name for path in out.iterdir()) == ["directions.safetensors",
                                                           "images.json", "meta.json"]


def run_in_threads(clip, image_dir, out, shards: list[Shard]) -> list:
    results: dict[int, object] = {}

    def one(shard: Shard) -> None:
        try:
            results[shard.index] = analyze(clip, scan_images(image_dir), out, SETTINGS,
                                           batch_size=BATCH, show_progress=False, shard=shard)
        except BaseException as error:  # reported in the main thread
            results[shard.index] = error

    threads = [threading.Thread(target=one, args=(shard,)) for shard in shards]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    for result in results.values():
        if isinstance(result, BaseException):
            raise result
    return [results[shard.index] for shard in shards]


def test_a_shard_killed_mid_pass_resumes_and_the_merge_is_unchanged(
        clip, image_dir, single, tmp_path, monkeypatch):
    out = tmp_path / "killed"
    shard = Shard(1, 2)
    start, stop = shard.batch_range(14, BATCH)  # 13 images + the unreadable file
    traced: list[tuple[str, int]] = []
    original = analysis.trace

    def dies_on_the_third_batch(visual, pixels, **kwargs):
        if len(traced) == 2:
            raise KeyboardInterrupt
        traced.append((threading.current_thread().name, len(pixels)))
        return original(visual, pixels, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(analysis, "trace", dies_on_the_third_batch)
        with pytest.raises(KeyboardInterrupt):
            analyze(clip, scan_images(image_dir), out, SETTINGS, batch_size=BATCH,
                    show_progress=False, shard=shard)
    checkpoint = out / "shards" / "1-of-2" / "checkpoint.safetensors"
    progress = json.loads(analysis.load_tensors(checkpoint, with_metadata=True)[1]["progress"])
    assert progress["pass"] == 0 and progress["next_index"] == start + 2 * BATCH

    traced.clear()

    def counted(visual, pixels, **kwargs):
        traced.append((threading.current_thread().name, len(pixels)))
        return original(visual, pixels, **kwargs)

    monkeypatch.setattr(analysis, "trace", counted)
    results = run_in_threads(clip, image_dir, out, [Shard(0, 2), shard])
    for result in results:
        assert_identical(result, single)
    # Shard 1 traced its range twice (two passes) less the two batches it had done.
    shard_batches = -(-(stop - start) // BATCH)
    assert len(traced) == 2 * -(-start // BATCH) + 2 * shard_batches - 2


def test_sharded_and_unsharded_runs_do_not_mix(clip, image_dir, tmp_path, monkeypatch):
    out = tmp_path / "mixed"
    original = analysis.trace

    def dies(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(analysis, "trace", dies)
    with pytest.raises(KeyboardInterrupt):
        analyze(clip, scan_images(image_dir), out, SETTINGS, batch_size=BATCH,
                show_progress=False, shard=Shard(1, 2))
    monkeypatch.setattr(analysis, "trace", original)
    assert (out / "shards" / "1-of-2" / "checkpoint.safetensors").exists()
    with pytest.raises(NeuronAttackError, match="split into shards"):
        analyze(clip, scan_images(image_dir), out, SETTINGS, batch_size=BATCH,
                show_progress=False)
    with pytest.raises(NeuronAttackError, match="split another way"):
        analyze(clip, scan_images(image_dir), out, SETTINGS, batch_size=BATCH,
                show_progress=False, shard=Shard(0, 3))
    with pytest.raises(NeuronAttackError, match="--overwrite cannot be combined"):
        analyze(clip, scan_images(image_dir), out, SETTINGS, batch_size=BATCH,
                show_progress=False, shard=Shard(0, 2), overwrite=True)


def test_a_shard_with_another_batch_size_is_refused(clip, image_dir, tmp_path, monkeypatch):
    out = tmp_path / "batch"

    def dies(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(analysis, "trace", dies)
        with pytest.raises(KeyboardInterrupt):
            analyze(clip, scan_images(image_dir), out, SETTINGS, batch_size=BATCH,
                    show_progress=False, shard=Shard(1, 2))
    with pytest.raises(NeuronAttackError, match="same batch size"):
        analyze(clip, scan_images(image_dir), out, SETTINGS, batch_size=BATCH + 1,
                show_progress=False, shard=Shard(1, 2))


def test_cli_shard_option_is_checked_before_any_model_loads(tmp_path, image_dir):
    result = CliRunner().invoke(main, ["analyze", "--clip", SPEC, "--images", str(image_dir),
                                       "--out", str(tmp_path / "x"), "--shard", "2/2"])
    assert result.exit_code == 2 and "--shard" in result.output
