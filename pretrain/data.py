"""Image folders for pretraining and evaluation, robust to unreadable files, with resumable sampling.

Two layouts are read: ImageNet's (``ROOT/<class>/*.jpg``, labels from folder names) and a plain
folder of unlabeled images (``ROOT/*.jpg``, searched recursively; label -1). Files that fail to
decode are skipped: the sample is replaced by the next readable image and the skip is counted
(returned with the batch, so the training log can report it); a warning names each bad file once.

:class:`EpochBatchSampler` yields ``(index, sample_seed)`` pairs. The order of an epoch is a function
of ``(seed, epoch)`` and each sample's augmentation a function of ``(seed, epoch, index)``, so a run
resumed mid-epoch (``start_batch``) sees exactly the batches an uninterrupted run would, with any
number of loader workers, and a run on W processes sees the same global batches as one process.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch.utils.data import Dataset, Sampler

log = logging.getLogger("pretrain")

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
READ_ERRORS = _READ_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


class DataError(Exception):
    """A problem with the input data that the user must fix; the message is one line."""


@dataclass
class ImageList:
    """The images of a folder: ``samples`` are (path, label) pairs; ``classes`` is empty when unlabeled."""

    root: Path
    samples: list[tuple[str, int]]
    classes: list[str]
    layout: str  # "imagefolder" | "flat"


def split_dir(data: str | os.PathLike, split: str = "train") -> Path:
    """``DATA/<split>`` if it exists (the reference scripts' ImageNet root), else ``DATA`` itself."""
    root = Path(data).expanduser()
    return root / split if (root / split).is_dir() else root


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMG_EXTENSIONS) and not name.startswith(".")


def _walk_images(root: Path) -> list[str]:
    found = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found.extend(os.path.join(dirpath, f) for f in sorted(filenames) if _is_image(f))
    return found


def scan_images(root: str | os.PathLike, layout: str = "auto") -> ImageList:
    """List the images under ``root`` (``layout``: auto | imagefolder | flat); raise :class:`DataError`."""
    root = Path(root).expanduser()
    if not root.exists():
        raise DataError(f"data folder {root} does not exist")
    if not root.is_dir():
        raise DataError(f"data path {root} is not a folder")
    top_level = sorted(e.name for e in os.scandir(root) if e.is_file() and _is_image(e.name))
    if layout == "auto":
        layout = "flat" if top_level else "imagefolder"
    if layout == "flat":
        samples = [(p, -1) for p in _walk_images(root)]
        classes: list[str] = []
    elif layout == "imagefolder":
        classes, samples = [], []
        for d in sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith(".")):
            files = _walk_images(root / d)
            if files:
                samples.extend((p, len(classes)) for p in files)
                classes.append(d)
    else:
        raise ValueError(f"unknown layout {layout!r}")
    if not samples:
        raise DataError(
            f"no images found in {root} (expected {root}/<class>/*.jpg or {root}/*.jpg; "
            f"extensions {' '.join(IMG_EXTENSIONS)})"
        )
    return ImageList(root, samples, classes, layout)


def load_rgb(path: str) -> Image.Image:
    """Open and fully decode an image as RGB (raises on unreadable or truncated files)."""
    with open(path, "rb") as f:
        img = Image.open(f)
        return img.convert("RGB")


def check_readable(images: ImageList) -> None:
    """Raise :class:`DataError` unless at least one image decodes (stops at the first that does)."""
    first_error = None
    for path, _ in images.samples:
        try:
            load_rgb(path)
            return
        except _READ_ERRORS as e:
            first_error = first_error or f"{Path(path).name}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    raise DataError(f"none of the {len(images.samples)} images in {images.root} can be read (first error: {first_error})")


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A well-mixed 63-bit seed for one sample's augmentation (splitmix64 of the three numbers)."""
    x = (seed * 0x9E3779B97F4A7C15 + epoch * 0xBF58476D1CE4E5B9 + index * 0x94D049BB133111EB) & (2**64 - 1)
    x ^= x >> 30
    x = (x * 0xBF58476D1CE4E5B9) & (2**64 - 1)
    x ^= x >> 27
    x = (x * 0x94D049BB133111EB) & (2**64 - 1)
    x ^= x >> 31
    return x >> 1


class ImageDataset(Dataset):
    """Images of an :class:`ImageList` through ``transform``; items are ``(views, label, n_skipped)``, plus
    the index of the image actually read (``with_index``: the memory bank's entry) as a fourth element.

    The key is an index, or ``(index, seed)``: then the transform runs with torch's CPU generator seeded
    by ``seed`` (the caller's generator state is restored afterwards). ``reader`` opens a file (default: full
    RGB decode with PIL; ``pretrain.backends`` passes one that keeps JPEG bytes for decoding on the device)
    and raises one of the read errors for a file to skip.
    """

    def __init__(self, images: ImageList, transform: Callable[[Any], Any],
                 reader: Callable[[str], Any] = load_rgb, with_index: bool = False) -> None:
        self.images = images
        self.samples = images.samples
        self.transform = transform
        self.reader = reader
        self.with_index = with_index
        self._bad: set[int] = set()  # per worker process: files already found unreadable

    def __len__(self) -> int:
        return len(self.samples)

    def _load_readable(self, index: int) -> tuple[Any, int, int]:
        n = len(self.samples)
        for step in range(n):
            j = (index + step) % n
            if j in self._bad:
                continue
            path = self.samples[j][0]
            try:
                return self.reader(path), j, step
            except _READ_ERRORS as e:
                self._bad.add(j)
                log.warning("skipping unreadable image %s (%s: %s)", path, type(e).__name__, str(e).splitlines()[0] if str(e) else "")
        raise DataError(f"none of the {n} images in {self.images.root} can be read")

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[Any, int, int]:
        index, seed = key if isinstance(key, (tuple, list)) else (int(key), None)
        img, j, skipped = self._load_readable(index)
        if seed is None:
            views = self.transform(img)
        else:
            with torch.random.fork_rng(devices=[]):
                torch.default_generator.manual_seed(seed)
                views = self.transform(img)
        if self.with_index:
            return views, self.samples[j][1], skipped, j
        return views, self.samples[j][1], skipped


class EpochBatchSampler(Sampler[list[tuple[int, int]]]):
    """This process's share of each global batch, as ``(index, sample_seed)`` pairs.

    Epoch ``e`` uses the permutation ``randperm(n, seed=f(seed, e))``; global batch ``b`` is its slice
    ``[b*B, (b+1)*B)`` (incomplete last batch dropped) and rank ``r`` of ``W`` takes the ``r``-th
    contiguous block of ``B/W`` of it. ``set_epoch(e, start_batch)`` resumes inside an epoch.
    """

    def __init__(self, n: int, global_batch: int, seed: int, rank: int = 0, world_size: int = 1) -> None:
        if global_batch % world_size:
            raise ValueError(f"batch size {global_batch} is not divisible by the {world_size} processes")
        if n < global_batch:
            raise DataError(f"only {n} images for a batch of {global_batch}: lower --batch-size or add images")
        self.n, self.global_batch, self.seed = n, global_batch, seed
        self.rank, self.world_size = rank, world_size
        self.local_batch = global_batch // world_size
        self.epoch, self.start_batch = 0, 0

    @property
    def batches_per_epoch(self) -> int:
        return self.n // self.global_batch

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start_batch = epoch, start_batch

    def __len__(self) -> int:
        return max(0, self.batches_per_epoch - self.start_batch)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        g = torch.Generator().manual_seed(sample_seed(self.seed, self.epoch, -1))
        perm = torch.randperm(self.n, generator=g).tolist()
        for b in range(self.start_batch, self.batches_per_epoch):
            lo = b * self.global_batch + self.rank * self.local_batch
            yield [(i, sample_seed(self.seed, self.epoch, i)) for i in perm[lo:lo + self.local_batch]]
