"""Image sets: scan order, subsampling, class labels, fingerprints and fault-tolerant loading."""

from __future__ import annotations

import io
import random
import shutil
import warnings
from pathlib import Path

import pytest
import torch
from PIL import Image
from torchvision import transforms

from neuronattack.errors import NeuronAttackError
from neuronattack.imagesets import ImageBatch, ImageSet, iter_batches, scan_images

TO_16PX = transforms.Compose([transforms.Resize((16, 16)), transforms.ToTensor()])

# Relative path -> (PIL mode, size); odd sizes and modes so Resize and the RGB conversion matter.
GOOD_IMAGES = {
    "cat/a.JPG": ("RGB", (20, 30)),
    "cat/b.png": ("RGBA", (12, 12)),
    "cat/sub/c.webp": ("RGB", (40, 10)),
    "cat/g.gif": ("P", (9, 7)),
    "dog/d.jpeg": ("RGB", (16, 16)),
    "dog/e.PNG": ("L", (8, 24)),
    "dog/f.TIFF": ("RGB", (10, 10)),
    "dog/h.bmp": ("RGB", (5, 5)),
}
CORRUPT = ("bird/broken.jpg", "bird/trunc.png")


def write_image(path: Path, mode: str = "RGB", size: tuple[int, int] = (8, 8), seed: int = 0):
    """Write a small noise image; noise keeps PNGs large enough to truncate meaningfully."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = Image.frombytes("RGB", size, random.Random(seed).randbytes(size[0] * size[1] * 3))
    rgb.convert(mode).save(path)


def truncated_png(size: tuple[int, int] = (64, 64)) -> bytes:
    buffer = io.BytesIO()
    noise = Image.frombytes("RGB", size, random.Random(1).randbytes(size[0] * size[1] * 3))
    noise.save(buffer, format="PNG")
    data = buffer.getvalue()
    return data[: len(data) // 2]


def build_tree(root: Path, reverse: bool = False) -> Path:
    """Class-folder tree with images, corrupt files, a non-image and hidden entries."""
    good = sorted(GOOD_IMAGES.items(), reverse=reverse)
    for seed, (rel, (mode, size)) in enumerate(good):
        write_image(root / rel, mode, size, seed)
    (root / "bird").mkdir(parents=True, exist_ok=True)
    (root / "bird/broken.jpg").write_bytes(random.Random(2).randbytes(1000))
    (root / "bird/trunc.png").write_bytes(truncated_png())
    (root / "dog/notes.txt").write_text("not an image")
    write_image(root / "dog/.hidden.png")
    write_image(root / ".cache/x.png")
    return root


def flat_folder(root: Path, n: int) -> Path:
    for i in range(n):
        write_image(root / f"img{i:02d}.png", seed=i)
    return root


@pytest.fixture()
def tree(tmp_path: Path) -> Path:
    return build_tree(tmp_path / "tree")


def collect(batches) -> tuple[list[int], list[torch.Tensor]]:
    indices, pixels = [], []
    for batch in batches:
        indices.extend(batch.indices.tolist())
        pixels.extend(batch.pixels)
    return indices, pixels


# --- scanning ---------------------------------------------------------------------------------


def test_scan_finds_images_sorted_skipping_hidden_and_non_images(tree: Path):
    image_set = scan_images(tree)
    expected = sorted([*GOOD_IMAGES, *CORRUPT])
    assert image_set.paths == tuple(expected)
    assert len(image_set) == len(expected)
    assert image_set.root == tree
    assert image_set.sizes == tuple((tree / p).stat().st_size for p in expected)


def test_scan_order_does_not_depend_on_creation_order(tmp_path: Path):
    forward = scan_images(build_tree(tmp_path / "forward"))
    backward = scan_images(build_tree(tmp_path / "backward", reverse=True))
    assert forward.paths == backward.paths


def test_every_keeps_every_kth_then_limit_keeps_first_n(tmp_path: Path):
    root = flat_folder(tmp_path / "flat", 10)
    names = [f"img{i:02d}.png" for i in range(10)]
    assert scan_images(root, every=3).paths == tuple(names[i] for i in (0, 3, 6, 9))
    assert scan_images(root, limit=4).paths == tuple(names[:4])
    assert scan_images(root, every=3, limit=2).paths == (names[0], names[3])
    assert scan_images(root, limit=100).paths == tuple(names)


@pytest.mark.parametrize("settings", [{"every": 0}, {"limit": 0}, {"limit": -1}])
def test_invalid_subsampling_raises(tmp_path: Path, settings: dict):
    with pytest.raises(NeuronAttackError):
        scan_images(flat_folder(tmp_path / "flat", 2), **settings)


def test_class_folders_give_labels(tree: Path):
    image_set = scan_images(tree)
    assert image_set.classes == ("bird", "cat", "dog")
    labels = dict(zip(image_set.paths, image_set.labels, strict=True))
    assert labels["cat/sub/c.webp"] == "cat"
    assert labels["dog/e.PNG"] == "dog"
    assert labels["bird/broken.jpg"] == "bird"


def test_flat_folder_has_no_labels(tmp_path: Path):
    image_set = scan_images(flat_folder(tmp_path / "flat", 3))
    assert image_set.labels == (None, None, None)
    assert image_set.classes == ()


def test_one_image_at_top_level_means_no_class_layout_even_when_subsampled_away(tree: Path):
    write_image(tree / "zzz_top.png")
    assert set(scan_images(tree).labels) == {None}
    # `limit` drops the top-level file, but the layout is a property of the folder, not the sample.
    assert set(scan_images(tree, limit=2).labels) == {None}


def test_empty_folder_raises_a_helpful_error(tmp_path: Path):
    root = tmp_path / "empty"
    root.mkdir()
    (root / "readme.txt").write_text("no images here")
    write_image(root / ".hidden.png")
    with pytest.raises(NeuronAttackError, match="No .*jpg.* images found under") as info:
        scan_images(root)
    assert str(root) in str(info.value)


def test_missing_folder_raises_a_helpful_error(tmp_path: Path):
    with pytest.raises(NeuronAttackError, match="does not exist") as info:
        scan_images(tmp_path / "nowhere")
    assert "nowhere" in str(info.value)


def test_file_as_root_raises(tmp_path: Path):
    path = tmp_path / "one.png"
    write_image(path)
    with pytest.raises(NeuronAttackError, match="is not a folder"):
        scan_images(path)


# --- fingerprint ------------------------------------------------------------------------------


def test_fingerprint_is_stable_for_the_same_set(tree: Path, tmp_path: Path):
    fingerprint = scan_images(tree).fingerprint()
    assert fingerprint == scan_images(tree).fingerprint()
    assert len(fingerprint) == 16
    int(fingerprint, 16)
    # The root is not part of it: a moved folder is still the same set.
    moved = shutil.copytree(tree, tmp_path / "moved")
    assert scan_images(moved).fingerprint() == fingerprint


def test_fingerprint_changes_with_files_and_settings(tree: Path):
    base = scan_images(tree).fingerprint()
    assert scan_images(tree, every=2).fingerprint() != base
    assert scan_images(tree, limit=3).fingerprint() != base
    assert scan_images(tree, every=2).fingerprint() != scan_images(tree, every=3).fingerprint()

    write_image(tree / "cat/new.png")
    added = scan_images(tree).fingerprint()
    assert added != base

    write_image(tree / "cat/new.png", size=(30, 30))  # same name, different size
    assert scan_images(tree).fingerprint() != added


# --- describe ---------------------------------------------------------------------------------


def synthetic_set(n: int, n_classes: int, every: int = 1, limit: int | None = None) -> ImageSet:
    return ImageSet(
        root=Path("/data/imgs"),
        paths=tuple(f"c{i % n_classes}/{i}.png" for i in range(n)),
        labels=tuple(f"c{i % n_classes}" for i in range(n)),
        sizes=(100,) * n,
        every=every,
        limit=limit,
    )


def test_describe_reads_like_a_sentence(tmp_path: Path):
    assert (
        str(synthetic_set(1234, 10, every=2, limit=1000))
        == "1,234 images in 10 classes under /data/imgs (every 2nd, first 1,000)"
    )
    assert synthetic_set(1, 1).describe() == "1 image in 1 class under /data/imgs"
    flat = scan_images(flat_folder(tmp_path / "flat", 3))
    assert flat.describe() == f"3 images under {tmp_path / 'flat'}"


@pytest.mark.parametrize(
    ("every", "words"), [(3, "every 3rd"), (11, "every 11th"), (21, "every 21st"), (4, "every 4th")]
)
def test_describe_ordinals(every: int, words: str):
    assert synthetic_set(5, 1, every=every).describe().endswith(f"({words})")


def test_imageset_rejects_mismatched_fields():
    with pytest.raises(ValueError):
        ImageSet(root=Path("."), paths=("a.png",), labels=(), sizes=(1,))


# --- loading ----------------------------------------------------------------------------------


def test_batches_have_expected_shapes_and_rgb_pixels(tmp_path: Path):
    root = tmp_path / "good"
    for seed, (rel, (mode, size)) in enumerate(GOOD_IMAGES.items()):
        write_image(root / rel, mode, size, seed)
    image_set = scan_images(root)
    batches = list(iter_batches(image_set, TO_16PX, batch_size=3))
    assert [len(b) for b in batches] == [3, 3, 2]
    for batch in batches:
        assert isinstance(batch, ImageBatch)
        assert batch.indices.dtype == torch.long
        assert batch.pixels.shape == (len(batch), 3, 16, 16)
        assert batch.pixels.dtype == torch.float32
    assert collect(batches)[0] == list(range(len(image_set)))


def test_corrupt_files_are_skipped_and_counted(tree: Path):
    image_set = scan_images(tree)
    batches = iter_batches(image_set, TO_16PX, batch_size=2)
    yielded = list(batches)
    # The two corrupt files sort first and fill batch 0, which is therefore not yielded at all.
    assert image_set.paths[:2] == CORRUPT
    assert batches.num_skipped == 2
    assert batches.skipped == CORRUPT
    assert all(len(batch) > 0 for batch in yielded)
    assert collect(yielded)[0] == list(range(2, len(image_set)))


def test_partial_batch_when_one_file_in_it_is_corrupt(tree: Path):
    image_set = scan_images(tree)
    batches = iter_batches(image_set, TO_16PX, batch_size=3)
    first = next(batches)
    assert first.indices.tolist() == [2]  # indices 0 and 1 are the corrupt files
    assert first.pixels.shape == (1, 3, 16, 16)
    assert batches.skipped == CORRUPT


def test_start_resumes_exactly_at_the_tail(tree: Path):
    image_set = scan_images(tree)
    full_indices, full_pixels = collect(iter_batches(image_set, TO_16PX, batch_size=3))
    full = dict(zip(full_indices, full_pixels, strict=True))
    for start in range(len(image_set) + 1):
        batches = iter_batches(image_set, TO_16PX, batch_size=3, start=start)
        indices, pixels = collect(batches)
        assert indices == [i for i in full_indices if i >= start]
        assert all(torch.equal(p, full[i]) for i, p in zip(indices, pixels, strict=True))
        # Files before `start` are never opened, so they cannot be counted as skipped.
        assert batches.skipped == CORRUPT[start:]


@pytest.mark.parametrize(("start", "batch_size"), [(-1, 2), (99, 2), (0, 0)])
def test_bad_start_or_batch_size_raises(tree: Path, start: int, batch_size: int):
    with pytest.raises(NeuronAttackError):
        iter_batches(scan_images(tree), TO_16PX, batch_size=batch_size, start=start)


def test_worker_processes_give_the_same_batches_and_skips(tree: Path):
    image_set = scan_images(tree)
    in_process = iter_batches(image_set, TO_16PX, batch_size=2)
    in_workers = iter_batches(image_set, TO_16PX, batch_size=2, num_workers=2)
    expected, got = list(in_process), list(in_workers)
    assert [b.indices.tolist() for b in got] == [b.indices.tolist() for b in expected]
    assert all(torch.equal(a.pixels, b.pixels) for a, b in zip(got, expected, strict=True))
    assert in_workers.skipped == in_process.skipped == CORRUPT


@pytest.mark.parametrize("max_pixels", [100, 400])
def test_decompression_bombs_are_skipped_not_fatal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, max_pixels: int
):
    # A 20x30 image (600 px) is an outright bomb error at 100 px and a bomb warning at 400 px;
    # with warnings promoted to errors, as in strict test runs, both must count as skipped.
    write_image(tmp_path / "big.png", size=(20, 30))
    write_image(tmp_path / "small.png", size=(4, 4))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", max_pixels)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        batches = iter_batches(scan_images(tmp_path), TO_16PX, batch_size=4)
        assert collect(batches)[0] == [1]
    assert batches.skipped == ("big.png",)
