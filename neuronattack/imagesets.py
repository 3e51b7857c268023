"""Image sets: the folders of images the lens streams over.

A set is scanned once into a frozen, deterministic list of relative paths so that an analysis can
be interrupted and resumed by index, and can check (via ``fingerprint``) that it is resuming over
the same files. Loading is batched through a torch ``DataLoader``; a corrupt file is skipped and
counted rather than aborting a run that may be hours into a 50k-image set.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from neuronattack.errors import NeuronAttackError

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
)

# What PIL raises for unreadable, truncated or hostile files. UnidentifiedImageError and
# FileNotFoundError are OSErrors; some plugins still raise SyntaxError, EOFError or struct.error on
# broken headers. The bomb warning is listed because under `-W error` it arrives as an exception.
_DECODE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    struct.error,
    Image.DecompressionBombError,
    Image.DecompressionBombWarning,
)

Transform = Callable[[Image.Image], torch.Tensor]  # PIL RGB image -> pixels [3, H, W]


@dataclass(frozen=True)
class ImageSet:
    """A fixed, ordered list of image files under ``root``.

    ``paths`` are relative POSIX paths so the set (and its fingerprint) survives moving the folder;
    ``sizes`` are the byte sizes seen at scan time, kept so ``fingerprint`` needs no disk access.
    ``every`` and ``limit`` record how the scan was subsampled.
    """

    root: Path
    paths: tuple[str, ...]
    labels: tuple[str | None, ...]
    sizes: tuple[int, ...]
    every: int = 1
    limit: int | None = None

    def __post_init__(self) -> None:
        if not len(self.paths) == len(self.labels) == len(self.sizes):
            raise ValueError(
                f"ImageSet needs one label and one size per path, got {len(self.paths)} paths, "
                f"{len(self.labels)} labels and {len(self.sizes)} sizes"
            )

    def __len__(self) -> int:
        return len(self.paths)

    def __str__(self) -> str:
        return self.describe()

    @property
    def classes(self) -> tuple[str, ...]:
        """Sorted unique class labels; empty when the set is not laid out in class folders."""
        return tuple(sorted({label for label in self.labels if label is not None}))

    def image_path(self, index: int) -> Path:
        """Path of item ``index`` under ``root``, ready to open."""
        return self.root / self.paths[index]

    def fingerprint(self) -> str:
        """Short stable hash of the relative paths, their sizes and the subsampling settings.

        Sizes instead of content hashes keep this instant on large sets while still catching the
        usual ways a folder changes (files added, removed, renamed or re-encoded). ``root`` is left
        out so a moved or re-mounted folder still matches.
        """
        payload = json.dumps(
            {
                "every": self.every,
                "limit": self.limit,
                "files": list(zip(self.paths, self.sizes, strict=True)),
            },
            separators=(",", ":"),
        )
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]

    def describe(self) -> str:
        """One line for CLI messages, e.g. '1,234 images in 10 classes under DIR (every 2nd)'."""
        text = _count(len(self), "image")
        if self.classes:
            text += f" in {_count(len(self.classes), 'class')}"
        text += f" under {self.root}"
        settings = []
        if self.every != 1:
            settings.append(f"every {_ordinal(self.every)}")
        if self.limit is not None:
            settings.append(f"first {self.limit:,}")
        if settings:
            text += f" ({', '.join(settings)})"
        return text


def scan_images(root: str | Path, every: int = 1, limit: int | None = None) -> ImageSet:
    """Scan ``root`` recursively into an ``ImageSet``, keeping every ``every``-th file, then the
    first ``limit`` of those.

    The order is the sorted relative POSIX path, so two scans of the same folder agree on every
    index regardless of filesystem listing order; that is what makes resuming by index safe.
    """
    if every < 1:
        raise NeuronAttackError(f"Image subsampling 'every' must be 1 or more, got {every}.")
    if limit is not None and limit < 1:
        raise NeuronAttackError(f"Image 'limit' must be 1 or more (or unset), got {limit}.")
    root = Path(root)
    if not root.is_dir():
        state = "is not a folder" if root.exists() else "does not exist"
        raise NeuronAttackError(
            f"Image folder {root} {state}; pass a folder containing "
            f"{_extension_list()} images (searched recursively)."
        )
    files = _find_image_files(root)
    if not files:
        raise NeuronAttackError(
            f"No {_extension_list()} images found under {root} (searched recursively, hidden "
            "files and folders skipped); pass a folder that contains images."
        )
    # Labels are decided on the whole folder, before subsampling, so that `every`/`limit` can never
    # flip a folder between labelled and unlabelled.
    labels = _class_labels([path for path, _ in files])
    kept = list(zip(files, labels, strict=True))[::every][:limit]
    return ImageSet(
        root=root,
        paths=tuple(path for (path, _), _ in kept),
        labels=tuple(label for _, label in kept),
        sizes=tuple(size for (_, size), _ in kept),
        every=every,
        limit=limit,
    )


@dataclass(frozen=True)
class ImageBatch:
    """Readable images of one batch, with their indices in the ``ImageSet``.

    May hold fewer than ``batch_size`` images when some files in the batch were unreadable.
    """

    indices: torch.Tensor  # [batch] int64, positions in the ImageSet
    pixels: torch.Tensor  # [batch, 3, H, W]

    def __len__(self) -> int:
        return len(self.indices)


class ImageBatches(Iterator[ImageBatch]):
    """Single-pass iterator over the batches of an ``ImageSet`` that keeps a tally of skipped files.

    The tally lives here, in the consuming process, because with ``num_workers > 0`` decoding
    happens in worker processes whose state the caller cannot see.
    """

    def __init__(
        self,
        image_set: ImageSet,
        transform: Transform,
        batch_size: int,
        start: int = 0,
        num_workers: int = 0,
        stop: int | None = None,
    ) -> None:
        if batch_size < 1:
            raise NeuronAttackError(f"Batch size must be 1 or more, got {batch_size}.")
        if not 0 <= start <= len(image_set):
            raise NeuronAttackError(
                f"Cannot resume at image {start:,}: the set has {len(image_set):,} images; "
                "check that the run is resuming over the same image set."
            )
        stop = len(image_set) if stop is None else min(stop, len(image_set))
        self._image_set = image_set
        self._skipped_indices: list[int] = []
        loader = DataLoader(
            _ImageFiles(image_set, transform),
            batch_size=batch_size,
            # Sampling from `start` means earlier files are never opened, so resuming is cheap.
            sampler=range(start, stop),
            num_workers=num_workers,
            collate_fn=_collate_readable,
        )
        self._batches = self._readable_batches(loader)

    def __next__(self) -> ImageBatch:
        return next(self._batches)

    @property
    def skipped(self) -> tuple[str, ...]:
        """Relative paths of the files skipped so far as unreadable, in set order."""
        return tuple(self._image_set.paths[index] for index in self._skipped_indices)

    @property
    def num_skipped(self) -> int:
        return len(self._skipped_indices)

    def _readable_batches(
        self, loader: Iterable[tuple[torch.Tensor, torch.Tensor | None, list[int]]]
    ) -> Iterator[ImageBatch]:
        for indices, pixels, skipped in loader:
            self._skipped_indices.extend(skipped)
            if pixels is not None:
                yield ImageBatch(indices=indices, pixels=pixels)


def iter_batches(
    image_set: ImageSet,
    transform: Transform,
    batch_size: int,
    start: int = 0,
    num_workers: int = 0,
    stop: int | None = None,
) -> ImageBatches:
    """Batches of ``image_set`` from index ``start`` up to ``stop``, in order; see ``ImageBatches``.

    ``transform`` receives an RGB PIL image (e.g. open_clip's preprocess) and returns [3, H, W].
    ``num_workers`` is passed to the DataLoader; 0 decodes in this process.
    """
    return ImageBatches(image_set, transform, batch_size, start=start, num_workers=num_workers,
                        stop=stop)


class _ImageFiles(Dataset):
    """Map-style dataset yielding ``(index, pixels [3, H, W] or None if unreadable)``."""

    def __init__(self, image_set: ImageSet, transform: Transform) -> None:
        self.image_set = image_set
        self.transform = transform

    def __len__(self) -> int:
        return len(self.image_set)

    def __getitem__(self, index: int) -> tuple[int, torch.Tensor | None]:
        image = _open_rgb(self.image_set.image_path(index))
        # The transform runs outside the decode guard: a bug there should fail loudly, not be
        # miscounted as a corrupt image.
        return index, None if image is None else self.transform(image)


def _open_rgb(path: Path) -> Image.Image | None:
    """Fully decode ``path`` as RGB, or None if it is unreadable, truncated or corrupt."""
    try:
        with Image.open(path) as image:
            # convert() forces the full decode, so truncation surfaces here and not in transform.
            return to_rgb(image)
    except _DECODE_ERRORS:
        return None


def to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB. PIL's own conversion clips 16- and 32-bit grey levels at 255, which turns a
    16-bit PNG white; those are scaled to 0..255 instead."""
    if image.mode.startswith("I;16") or image.mode == "I":
        levels = np.asarray(image, dtype=np.float64)  # [H, W]
        # "I" also holds 16-bit PNGs; wider values (rare) are scaled by their own maximum.
        top = 65535.0 if image.mode != "I" or levels.max(initial=0) <= 65535 else levels.max()
        grey = np.clip(np.rint(levels * (255.0 / top)), 0, 255).astype(np.uint8)
        return Image.fromarray(grey, mode="L").convert("RGB")
    return image.convert("RGB")


def _collate_readable(
    items: list[tuple[int, torch.Tensor | None]],
) -> tuple[torch.Tensor, torch.Tensor | None, list[int]]:
    """Stack the readable items; report unreadable indices so the main process can count them."""
    readable = [(index, pixels) for index, pixels in items if pixels is not None]
    skipped = [index for index, pixels in items if pixels is None]
    indices = torch.tensor([index for index, _ in readable], dtype=torch.long)  # [b]
    pixels = torch.stack([p for _, p in readable]) if readable else None  # [b, 3, H, W]
    return indices, pixels, skipped


def _find_image_files(root: Path) -> list[tuple[str, int]]:
    """Sorted ``(relative POSIX path, size in bytes)`` of non-hidden image files under ``root``."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        # Pruning in place stops os.walk descending into hidden folders (.git, .cache, ...).
        dirnames[:] = [name for name in dirnames if not name.startswith(".")]
        for name in filenames:
            if name.startswith(".") or os.path.splitext(name)[1].lower() not in IMAGE_EXTENSIONS:
                continue
            path = Path(dirpath, name)
            try:
                size = path.stat().st_size
            except OSError:  # broken symlink or a file removed mid-scan: nothing to load
                continue
            found.append((path.relative_to(root).as_posix(), size))
    return sorted(found)


def _class_labels(paths: list[str]) -> list[str | None]:
    """First-level folder names when every image sits in one (ImageNet layout), else all None."""
    if all("/" in path for path in paths):
        return [path.split("/", 1)[0] for path in paths]
    return [None] * len(paths)


def _extension_list() -> str:
    return "/".join(sorted(ext.lstrip(".") for ext in IMAGE_EXTENSIONS))


def _count(n: int, noun: str) -> str:
    plural = noun + ("es" if noun.endswith("s") else "s")
    return f"{n:,} {noun if n == 1 else plural}"


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n:,}{suffix}"
