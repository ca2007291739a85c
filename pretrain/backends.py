"""Data backends of MoCo pretraining (``--data-backend``): where images are decoded and augmented.

==========  ===================================================================================
backend     pipeline
==========  ===================================================================================
``pil``     loader workers decode with PIL and run ``augment.moco_transform`` (the reference's way)
``tensor``  workers read the file bytes and draw the augmentation parameters; the training process
            decodes JPEGs with ``torchvision.io.decode_jpeg`` on the device (nvJPEG on GPUs) and
            augments the batch with ``pretrain.tensor_augment`` (non-JPEG / CMYK files: decoded in
            the workers with PIL)
``dali``    as ``tensor``, but NVIDIA DALI decodes every file (hardware JPEG decoder where the GPU has
            one) and does the resized crops; the colour ops, blur and flip are ``tensor_augment``'s
``auto``    GPUs: ``dali`` if ``nvidia.dali`` imports, else ``tensor``; CPU: ``pil``
==========  ===================================================================================

All backends draw the same parameters for the same ``(seed, epoch, index)`` (crop box, jitter order and
factors, grayscale, blur sigma, flip: see ``tensor_augment``), so the sample order, per-sample seeding
and exact resume of ``data.EpochBatchSampler`` hold for each. What changes with ``tensor``/``dali``:
pixel values (float ops instead of PIL's uint8 ones, nvJPEG/DALI's IDCT; a few 1/255 on average), and a
JPEG that passes the header check in the worker but fails to decode on the device is replaced by the
next decodable image *of its batch* (PIL: the next readable file of the folder), counted as skipped.
On the device, decoding and augmenting the next batch runs in a background thread on a side CUDA
stream while the current batch trains.
"""

from __future__ import annotations

import io
import logging
import queue
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader

from pretrain import augment
from pretrain.data import EpochBatchSampler, ImageDataset, ImageList
from pretrain.tensor_augment import ViewParams, augment_batch, augment_pairs, sample_pair

log = logging.getLogger("pretrain")

BACKENDS = ("auto", "pil", "tensor", "dali")
# one training batch: the two views, labels, files skipped as unreadable, dataset indices
Batch = tuple[tuple[torch.Tensor, torch.Tensor], torch.Tensor, torch.Tensor, torch.Tensor]
DALI_PACKAGE = "nvidia-dali-cuda130"  # CUDA 13 drivers; nvidia-dali-cuda120 for CUDA 12


class BackendError(Exception):
    """A backend that cannot run here; one-line message."""


def dali_available() -> bool:
    try:
        import nvidia.dali  # noqa: F401
    except Exception:
        return False
    return True


def resolve_backend(name: str, device: torch.device) -> str:
    """The concrete backend for ``--data-backend name`` on ``device``; raises :class:`BackendError`."""
    if name not in BACKENDS:
        raise BackendError(f"unknown data backend {name!r} (choose from {', '.join(BACKENDS)})")
    if name == "auto":
        if device.type != "cuda":
            return "pil"
        return "dali" if dali_available() else "tensor"
    if name == "dali" and not dali_available():
        raise BackendError(f"--data-backend dali needs NVIDIA DALI: pip install {DALI_PACKAGE} "
                           "(nvidia-dali-cuda120 for CUDA 12 drivers), or use --data-backend tensor")
    return name


# --- worker side: bytes + parameters --------------------------------------------------------------------
@dataclass
class EncodedImage:
    """One file as the workers hand it over: JPEG bytes (``decoded=False``) or a decoded ``(3, H, W)`` uint8."""

    data: torch.Tensor
    decoded: bool
    height: int
    width: int
    path: str


def read_encoded(path: str, decode_others: bool = True) -> EncodedImage:
    """File bytes plus the size from the header; non-JPEG (or CMYK/...) files decoded with PIL when
    ``decode_others``. Raises the read errors of ``data.load_rgb`` for files that cannot be opened."""
    raw = Path(path).read_bytes()
    with Image.open(io.BytesIO(raw)) as im:
        width, height = im.size
        if not decode_others or (im.format == "JPEG" and im.mode in ("RGB", "L")):
            return EncodedImage(torch.frombuffer(bytearray(raw), dtype=torch.uint8), False, height, width, path)
        rgb = np.asarray(im.convert("RGB"))
    return EncodedImage(torch.from_numpy(rgb.copy()).permute(2, 0, 1).contiguous(), True, height, width, path)


def read_bytes(path: str) -> EncodedImage:
    """For DALI, which decodes every format itself."""
    return read_encoded(path, decode_others=False)


class EncodedPair:
    """The "transform" of the device backends: keep the image, draw the two views' parameters.

    Runs inside ``ImageDataset`` with torch's generator seeded per sample, so the draws are those
    ``augment.moco_transform`` would make for the same sample.
    """

    def __init__(self, recipe: augment.Recipe) -> None:
        self.recipe = recipe

    def __call__(self, img: EncodedImage) -> tuple[EncodedImage, tuple[ViewParams, ViewParams], int]:
        return img, sample_pair(img.height, img.width, self.recipe), torch.initial_seed()


@dataclass
class EncodedBatch:
    images: list[EncodedImage]
    pairs: list[tuple[ViewParams, ViewParams]]
    seeds: list[int]
    labels: torch.Tensor
    skipped: torch.Tensor
    index: torch.Tensor  # dataset index of the image read (the memory bank's entry)


def collate_encoded(items: list[tuple[tuple[EncodedImage, tuple[ViewParams, ViewParams], int], int, int, int]]
                    ) -> EncodedBatch:
    return EncodedBatch([it[0][0] for it in items], [it[0][1] for it in items], [it[0][2] for it in items],
                        torch.tensor([it[1] for it in items]), torch.tensor([it[2] for it in items]),
                        torch.tensor([it[3] for it in items]))


# --- device side ------------------------------------------------------------------------------------------
def _decode_jpegs(datas: list[torch.Tensor], device: torch.device) -> list[torch.Tensor | None]:
    """Decode JPEG byte tensors on ``device`` (one batched call; per file after a failure: None if bad)."""
    from torchvision.io import ImageReadMode, decode_jpeg

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchvision 0.29 flags its image decoders as deprecated
        try:
            return list(decode_jpeg(datas, mode=ImageReadMode.RGB, device=device))
        except RuntimeError:
            out: list[torch.Tensor | None] = []
            for d in datas:
                try:
                    out.append(decode_jpeg(d, mode=ImageReadMode.RGB, device=device))
                except RuntimeError:
                    out.append(None)
            return out


class TensorStage:
    """Decode (torchvision) and augment (``tensor_augment``) one :class:`EncodedBatch` on ``device``."""

    def __init__(self, recipe: augment.Recipe, device: torch.device,
                 memory_format: torch.memory_format = torch.contiguous_format) -> None:
        self.recipe, self.device, self.memory_format = recipe, device, memory_format
        self._warned: set[str] = set()

    def decode(self, batch: EncodedBatch) -> list[torch.Tensor]:
        """Decoded ``(3, H, W)`` uint8 images on the device; undecodable ones replaced (and counted)."""
        imgs: list[torch.Tensor | None] = [None] * len(batch.images)
        jpeg = [n for n, e in enumerate(batch.images) if not e.decoded]
        if jpeg:
            for n, img in zip(jpeg, _decode_jpegs([batch.images[n].data for n in jpeg], self.device)):
                imgs[n] = img
        for n, e in enumerate(batch.images):
            if e.decoded:
                imgs[n] = e.data.to(self.device, non_blocking=True)
        return self._replace_bad(batch, imgs)

    def _replace_bad(self, batch: EncodedBatch, imgs: list[torch.Tensor | None]) -> list[torch.Tensor]:
        good = [n for n, img in enumerate(imgs) if img is not None]
        if not good:
            raise RuntimeError(f"no image of a batch could be decoded on {self.device} (first: {batch.images[0].path})")
        out: list[torch.Tensor] = []
        for n, img in enumerate(imgs):
            e = batch.images[n]
            if img is None:
                if e.path not in self._warned:
                    self._warned.add(e.path)
                    log.warning("skipping image %s: it does not decode on %s", e.path, self.device)
                sub = next((m for m in good if m > n), good[0])
                img = imgs[sub]
                batch.skipped[n] += 1
                batch.index[n] = batch.index[sub]  # the memory bank stores what was actually seen
                batch.labels[n] = batch.labels[sub]
            if tuple(img.shape[-2:]) != (e.height, e.width):  # a substitute (or an odd header): redraw for its size
                g = torch.Generator().manual_seed(batch.seeds[n])
                batch.pairs[n] = sample_pair(img.shape[-2], img.shape[-1], self.recipe, g)
            out.append(img)
        return out

    def __call__(self, batch: EncodedBatch) -> Batch:
        q, k = augment_pairs(self.decode(batch), batch.pairs, self.recipe, self.memory_format)
        return (q, k), batch.labels, batch.skipped, batch.index


class DaliStage(TensorStage):
    """DALI decodes and makes the resized crops (``device='mixed'`` on a GPU, CPU operators otherwise);
    ``tensor_augment`` does the rest. A batch DALI cannot decode goes through :class:`TensorStage`."""

    def __init__(self, recipe: augment.Recipe, device: torch.device, batch_size: int,
                 memory_format: torch.memory_format = torch.contiguous_format, threads: int = 4) -> None:
        super().__init__(recipe, device, memory_format)
        import nvidia.dali as dali
        import nvidia.dali.fn as fn
        import nvidia.dali.types as types

        gpu = device.type == "cuda"
        size = recipe.crop_size

        device_id = (device.index or 0) if gpu else None  # None: a CPU-only pipeline

        @dali.pipeline_def(batch_size=batch_size, num_threads=threads, device_id=device_id,
                           exec_pipelined=False, exec_async=False, prefetch_queue_depth=1)
        def pipe():
            enc = fn.external_source(name="enc", dtype=types.UINT8)
            views = []
            for v in ("q", "k"):
                start = fn.external_source(name=f"{v}0", dtype=types.FLOAT)
                end = fn.external_source(name=f"{v}1", dtype=types.FLOAT)
                views.append((start, end))
            img = fn.decoders.image(enc, device="mixed" if gpu else "cpu", output_type=types.RGB, adjust_orientation=False)
            return tuple(fn.resize(img, size=[size, size], roi_start=s, roi_end=e, roi_relative=False, antialias=True,
                                   interp_type=types.INTERP_LINEAR, dtype=types.FLOAT) for s, e in views)

        self.pipe = pipe()
        self.pipe.build()
        self.batch_size = batch_size

    @staticmethod
    def roi(p: ViewParams) -> tuple[np.ndarray, np.ndarray]:
        """DALI's ``roi_start``/``roi_end`` (y, x order, pixels) of a view's crop box."""
        i, j, h, w = p.crop
        return np.array([i, j], np.float32), np.array([i + h, j + w], np.float32)

    def _to_torch(self, out: Any) -> torch.Tensor:
        t = out.as_tensor()
        if self.device.type == "cuda":
            from nvidia.dali.plugin.pytorch import feed_ndarray

            dst = torch.empty(t.shape(), dtype=torch.float32, device=self.device)
            feed_ndarray(t, dst, cuda_stream=torch.cuda.current_stream(self.device))
            return dst
        return torch.from_numpy(np.array(t))

    def __call__(self, batch: EncodedBatch) -> Batch:
        if len(batch.images) != self.batch_size or any(e.decoded for e in batch.images):
            return super().__call__(batch)
        self.pipe.feed_input("enc", [e.data.numpy() for e in batch.images])
        for v, which in (("q", 0), ("k", 1)):
            rois = [self.roi(pair[which]) for pair in batch.pairs]
            self.pipe.feed_input(f"{v}0", [r[0] for r in rois])
            self.pipe.feed_input(f"{v}1", [r[1] for r in rois])
        try:
            q_out, k_out = self.pipe.run()
        except RuntimeError as e:
            log.warning("DALI could not decode a batch (%s); decoding it with torchvision", str(e).splitlines()[0][:200])
            return super().__call__(batch)
        crops = torch.cat([self._to_torch(q_out), self._to_torch(k_out)]).permute(0, 3, 1, 2).div_(255).clamp_(0, 1)
        views = augment_batch(crops.contiguous(), [q for q, _ in batch.pairs] + [k for _, k in batch.pairs], self.recipe)
        views = views.contiguous(memory_format=self.memory_format)
        n = len(batch.images)
        return (views[:n], views[n:]), batch.labels, batch.skipped, batch.index


class DevicePrefetcher:
    """Iterate ``loader`` and run ``stage`` on each batch; on a GPU, one batch ahead in a background thread
    on a side CUDA stream (so decoding overlaps the training step). Same length as the loader."""

    def __init__(self, loader: DataLoader, stage: TensorStage, device: torch.device, depth: int = 2) -> None:
        self.loader, self.stage, self.device, self.depth = loader, stage, device, depth

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Any]:
        if self.device.type != "cuda":
            for batch in self.loader:
                yield self.stage(batch)
            return
        yield from self._threaded()

    def _threaded(self) -> Iterator[Any]:
        q: queue.Queue = queue.Queue(self.depth)
        stop = threading.Event()
        # torch.cuda.set_device needs an index: a bare "cuda" device means the caller's current one.
        index = self.device.index if self.device.index is not None else torch.cuda.current_device()
        side = torch.cuda.Stream(index)

        def put(item: Any) -> bool:
            while not stop.is_set():
                try:
                    q.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        def work() -> None:
            try:  # everything that can fail is inside: an error reaches the consumer instead of leaving it waiting
                torch.cuda.set_device(index)
                for batch in self.loader:
                    with torch.cuda.stream(side):
                        out = self.stage(batch)
                        done = torch.cuda.Event()
                        done.record(side)
                    if not put((out, done)):
                        return
            except BaseException as e:  # handed to the consumer
                put(e)
                return
            put(None)

        thread = threading.Thread(target=work, name="device-prefetch", daemon=True)
        thread.start()
        try:
            while True:
                try:
                    item = q.get(timeout=1.0)
                except queue.Empty:
                    if thread.is_alive():
                        continue
                    raise RuntimeError("the device-prefetch thread ended without handing over a batch or an error") from None
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                out, done = item
                current = torch.cuda.current_stream(index)
                current.wait_event(done)
                im_q, im_k = out[0]
                im_q.record_stream(current)
                im_k.record_stream(current)
                yield out
        finally:
            stop.set()
            thread.join()


def build_loader(backend: str, images: ImageList, sampler: EpochBatchSampler, recipe: augment.Recipe, workers: int,
                 device: torch.device, pin_memory: bool = False,
                 memory_format: torch.memory_format = torch.contiguous_format, views: Any = None) -> Any:
    """An iterable of ``((im_q, im_k), labels, n_skipped, index)`` batches for ``sampler`` with ``backend``
    (already resolved). ``pil`` yields CPU tensors (the caller moves them); the others tensors on ``device``.
    ``views``: a PIL two-view transform replacing ``recipe`` (MoCo v3's asymmetric views; ``pil`` only)."""
    if views is not None and backend != "pil":
        raise BackendError(f"these augmentations (MoCo v3) run on the pil data backend only, not {backend!r}")
    common = dict(batch_sampler=sampler, num_workers=workers, persistent_workers=workers > 0)
    if backend == "pil":
        ds = ImageDataset(images, views or augment.pil_transform(recipe), with_index=True)
        return DataLoader(ds, pin_memory=pin_memory, **common)
    reader = read_bytes if backend == "dali" else read_encoded
    loader = DataLoader(ImageDataset(images, EncodedPair(recipe), reader=reader, with_index=True), collate_fn=collate_encoded, **common)
    if backend == "dali":
        stage: TensorStage = DaliStage(recipe, device, sampler.local_batch, memory_format)
    elif backend == "tensor":
        stage = TensorStage(recipe, device, memory_format)
    else:
        raise BackendError(f"unknown data backend {backend!r}")
    return DevicePrefetcher(loader, stage, device)
