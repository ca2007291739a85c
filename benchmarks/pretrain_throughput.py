"""End-to-end MoCo v2 pretraining throughput: JPEG folder on disk -> augmented pairs -> training step.

    python -m benchmarks.pretrain_throughput [--images 2048] [--batch-size 256] [--iters 20] [--json]
    python -m benchmarks.pretrain_throughput --device cpu --smoke          # tiny sizes, a few seconds

Three figures, images/s (one image = one query + one key crop), steady state after warm-up steps:

* **(a) reference-style**: PIL + torchvision transforms in DataLoader workers (shuffle, pinned memory),
  fp32, the MoCo step written as the reference code does (``pretrain.bench.PlainMoCo``);
* **(b) this suite's default**: ``pretrain.main_moco``'s own ``Trainer`` (``--preset v2`` and every
  default: ``--data-backend auto``, ``--precision fast``, auto AMP / channels_last / compile) reading the
  same folder;
* **(c) model only**: the same ``Trainer`` step on a batch already on the device (the ceiling for (b)).

``--only data`` measures each data backend alone (``pil``, ``tensor``, and ``dali`` when installed:
folder -> augmented pairs on the device, no model), which is how ``--data-backend auto`` is judged:
a backend whose data-only rate is below (c) caps (b).

Targets of issue #12 (a benchmark, not a test): (b) >= 3 x (a) and (b) >= 85 % of (c). The images are
generated (ImageNet-like: 500x375 JPEGs, quality 90, 10 classes) and read through the page cache.
Worker count: all CPU cores (capped at 32), as the reference's ``-j 32`` on one GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader

from core.cli import ArgumentParser

TARGET_VS_REFERENCE = 3.0
TARGET_VS_MODEL = 0.85


def _write_one(job: tuple[str, int, int, int, int]) -> None:
    path, w, h, seed, label = job
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.array([(70 * label + 40) % 256, (130 * label + 90) % 256, (200 * label + 160) % 256], np.float32)
    fx, fy = rng.uniform(0.01, 0.08, 2)
    wave = 60 * np.sin(xx * fx + yy * fy)[..., None]
    img = base + wave + rng.normal(0, 25, (h, w, 3))  # texture + noise: JPEG sizes like natural photos
    Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(path, quality=90)


def make_jpeg_folder(root: str | Path, n: int, size: tuple[int, int] = (500, 375), classes: int = 10,
                     workers: int | None = None) -> Path:
    """Write ``n`` JPEGs of ``size`` (w, h) as an ImageFolder ``root/class_k/*.jpg`` (reused when complete)."""
    root = Path(root)
    done = root / f".complete-{n}-{size[0]}x{size[1]}"
    if done.exists():
        return root
    jobs = []
    for i in range(n):
        label = i % classes
        folder = root / f"class_{label}"
        folder.mkdir(parents=True, exist_ok=True)
        jobs.append((str(folder / f"img_{i:06d}.jpg"), size[0], size[1], i, label))
    if (workers or os.cpu_count() or 1) > 1 and n > 64:
        with ProcessPoolExecutor(workers or os.cpu_count()) as ex:
            list(ex.map(_write_one, jobs, chunksize=32))
    else:
        for job in jobs:
            _write_one(job)
    done.touch()
    return root


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _time_steps(batches: Iterable, step: Callable, dev: torch.device, warmup: int, iters: int, batch: int) -> dict[str, float]:
    """Images/s over ``iters`` steps after ``warmup`` (the data wait is inside the timed window)."""
    it = iter(batches)
    for _ in range(warmup):
        step(next(it))
    _sync(dev)
    t0 = time.perf_counter()
    per_step = []
    for _ in range(iters):
        t = time.perf_counter()
        step(next(it))
        per_step.append(time.perf_counter() - t)
    _sync(dev)
    total = time.perf_counter() - t0
    return {"images_per_s": iters * batch / total, "s_per_step": total / iters, "median_host_s": statistics.median(per_step)}


def _epochs(make_iter: Callable[[int], Iterable]) -> Iterable:
    """Batches over successive epochs (so a small folder feeds any number of steps)."""
    epoch = 0
    while True:
        yield from make_iter(epoch)
        epoch += 1


def reference_style(folder: Path, a: argparse.Namespace, dev: torch.device) -> dict[str, float]:
    """(a): PIL/torchvision in workers, fp32, the reference-style MoCo step."""
    from pretrain import bench
    from pretrain.augment import moco_transform
    from pretrain.moco import auto_bn_splits
    from pretrain.data import ImageDataset, scan_images
    from pretrain.speed import Speed

    ds = ImageDataset(scan_images(folder), moco_transform(a.crop_size, aug_plus=True))
    loader = DataLoader(ds, batch_size=a.batch_size, shuffle=True, num_workers=a.workers, pin_memory=dev.type == "cuda",
                        drop_last=True, persistent_workers=a.workers > 0)
    ns = argparse.Namespace(arch=a.arch, moco_dim=128, moco_k=a.moco_k, moco_t=0.2, mlp=True,
                            bn_splits=a.bn_splits or auto_bn_splits(a.batch_size),
                            batch_size=a.batch_size)
    if dev.type == "cuda":  # PyTorch's defaults, as the reference ran: no TF32 matmuls (cuDNN's TF32 default on)
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = True
    step = bench._step_plain(ns, Speed(None, False, False, False, dev.type == "cuda"), dev)

    def run(batch) -> None:
        q, k = batch[0]
        step(q.to(dev, non_blocking=True), k.to(dev, non_blocking=True))

    torch.manual_seed(0)
    return _time_steps(_epochs(lambda e: loader), run, dev, a.warmup, a.iters, a.batch_size)


def suite_trainer(folder: Path, a: argparse.Namespace, out: Path, extra: list[str] | None = None):
    """``main_moco``'s Trainer with its defaults (v2 preset) on ``folder``, one process."""
    from pretrain import main_moco
    from pretrain.distributed import DistContext, use_cuda, _device

    argv = [str(folder), "--preset", "v2", "-a", a.arch, "-b", str(a.batch_size), "--crop-size", str(a.crop_size),
            "--moco-k", str(a.moco_k), "-j", str(a.workers), "--output-dir", str(out), "--no-tensorboard",
            "--seed", "0", "--device", a.device, "-p", "1000000", *(["--bn-splits", str(a.bn_splits)] if a.bn_splits else []),
            *(extra or [])]
    args = main_moco.parse_args(argv)
    main_moco.prepare(args)
    cuda = use_cuda(args)
    return main_moco.Trainer(DistContext(0, 1, 0, _device(cuda, 0)), args)


def suite_default(folder: Path, a: argparse.Namespace, dev: torch.device, out: Path,
                  extra: list[str] | None = None) -> tuple[dict[str, float], dict[str, float], str]:
    """(b) and (c) with one Trainer: from the folder, then on a fixed device batch; and its settings."""
    trainer = suite_trainer(folder, a, out, extra)

    def epoch_iter(e: int):
        trainer.sampler.set_epoch(e)
        return trainer.loader

    def run(batch) -> None:
        (q, k), index = batch[0], batch[3]  # index: the memory bank's entries (other mechanisms ignore it)
        trainer.train_step(q.to(dev, non_blocking=True), k.to(dev, non_blocking=True), index.to(dev))

    b = _time_steps(_epochs(epoch_iter), run, dev, a.warmup, a.iters, a.batch_size)
    (q, k), _, _, index = next(iter(epoch_iter(0)))
    fixed = ((q.to(dev), k.to(dev)), None, None, index.to(dev))
    c = _time_steps(_epochs(lambda e: [fixed] * 1000), run, dev, 2, a.iters, a.batch_size)
    settings = f"data backend {trainer.data_backend}, {trainer.speed.describe()}, mechanism {trainer.args.mechanism}"
    return b, c, settings


def data_only(folder: Path, a: argparse.Namespace, dev: torch.device) -> dict[str, dict]:
    """Images/s of each available data backend without a model (batches consumed on the device)."""
    from pretrain.augment import moco_recipe
    from pretrain.backends import BackendError, build_loader, dali_available
    from pretrain.data import EpochBatchSampler, scan_images

    images = scan_images(folder)
    out: dict[str, dict] = {}
    for backend in ("pil", "tensor", *(["dali"] if dali_available() else [])):
        sampler = EpochBatchSampler(len(images.samples), a.batch_size, seed=0)
        try:
            loader = build_loader(backend, images, sampler, moco_recipe(a.crop_size, True), a.workers, dev,
                                  dev.type == "cuda", torch.channels_last if dev.type == "cuda" else torch.contiguous_format)

            def epoch_iter(e: int, sampler=sampler, loader=loader):
                sampler.set_epoch(e)
                return loader

            def consume(batch) -> None:
                q, k = batch[0]
                q.to(dev, non_blocking=True).float().sum()
                k.to(dev, non_blocking=True)

            out[backend] = _time_steps(_epochs(epoch_iter), consume, dev, a.warmup, a.iters, a.batch_size)
        except (BackendError, RuntimeError, ImportError) as e:
            out[backend] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"}
    return out


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="pretrain_throughput", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=None, help="JPEG folder to read (default: generate one in a temp dir)")
    p.add_argument("--images", type=int, default=2048, help="images to generate")
    p.add_argument("--image-size", type=int, nargs=2, default=(500, 375), metavar=("W", "H"))
    p.add_argument("-a", "--arch", default="resnet50")
    p.add_argument("-b", "--batch-size", type=int, default=256)
    p.add_argument("--crop-size", type=int, default=224)
    p.add_argument("--moco-k", type=int, default=65536)
    p.add_argument("--bn-splits", type=int, default=None)
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--warmup", type=int, default=5, help="untimed steps first (compilation, cuDNN autotune, workers)")
    p.add_argument("-j", "--workers", type=int, default=None, help="loader workers (default min(32, CPUs))")
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    p.add_argument("--only", nargs="*", choices=("a", "bc", "data"), default=["a", "bc"])
    p.add_argument("--suite-flags", default="", help="extra main_moco flags for (b)/(c), e.g. '--data-backend tensor'")
    p.add_argument("--smoke", action="store_true", help="tiny sizes (ResNet-18, 32 px, batch 8, 2 steps)")
    p.add_argument("--json", action="store_true")
    return p


def smoke_sizes(a: argparse.Namespace) -> None:
    a.images, a.image_size, a.arch, a.batch_size, a.crop_size, a.moco_k = 24, (48, 40), "resnet18", 8, 32, 64
    a.iters, a.warmup, a.workers = 2, 1, 0


def run(a: argparse.Namespace) -> dict:
    """Measure what ``a.only`` asks; returns {"a": {...}, "b": {...}, "c": {...}, ratios, targets}."""
    if a.smoke:
        smoke_sizes(a)
    if a.workers is None:
        a.workers = min(32, os.cpu_count() or 1)
    dev = torch.device(a.device)
    tmp = Path(tempfile.mkdtemp(prefix="moco_throughput_"))
    folder = a.data or make_jpeg_folder(tmp / "jpeg", a.images, tuple(a.image_size))
    res: dict = {"config": {"arch": a.arch, "batch": a.batch_size, "crop": a.crop_size, "K": a.moco_k, "images": a.images,
                            "image_size": list(a.image_size), "workers": a.workers, "iters": a.iters, "warmup": a.warmup,
                            "device": str(dev)}}
    if "a" in a.only:
        res["a"] = reference_style(folder, a, dev)
        res["a"]["settings"] = ("PIL + torchvision in workers, fp32" + (" (PyTorch's TF32 defaults: convs on, matmuls off)" if dev.type == "cuda" else "")
                                + ", reference-style step")
    if "bc" in a.only:
        b, c, settings = suite_default(folder, a, dev, tmp / "out", a.suite_flags.split())
        res["b"], res["c"] = {**b, "settings": settings}, {**c, "settings": settings + ", batch already on the device"}
    if "data" in a.only:
        res["data"] = data_only(folder, a, dev)
    if "a" in res and "b" in res:
        res["b_over_a"] = res["b"]["images_per_s"] / res["a"]["images_per_s"]
        res["target_b_over_a"] = TARGET_VS_REFERENCE
    if "b" in res:
        res["b_over_c"] = res["b"]["images_per_s"] / res["c"]["images_per_s"]
        res["target_b_over_c"] = TARGET_VS_MODEL
    return res


def format_lines(res: dict) -> list[str]:
    lines = []
    for key, name in (("a", "(a) reference-style"), ("b", "(b) suite default"), ("c", "(c) model only")):
        if key in res:
            r = res[key]
            lines.append(f"{name:22s} {r['images_per_s']:9.1f} img/s  {1000 * r['s_per_step']:8.1f} ms/step  [{r['settings']}]")
    for backend, r in res.get("data", {}).items():
        if "error" in r:
            lines.append(f"data only, {backend:6s}  not measured: {r['error']}")
        else:
            lines.append(f"data only, {backend:6s}  {r['images_per_s']:9.1f} img/s  (decode + augment, no model)")
    if "b_over_a" in res:
        ok = res["b_over_a"] >= TARGET_VS_REFERENCE
        lines.append(f"(b)/(a) = {res['b_over_a']:.2f}x (target >= {TARGET_VS_REFERENCE:.0f}x: {'met' if ok else 'NOT met'})")
    if "b_over_c" in res:
        ok = res["b_over_c"] >= TARGET_VS_MODEL
        lines.append(f"(b)/(c) = {100 * res['b_over_c']:.0f}% (target >= {100 * TARGET_VS_MODEL:.0f}%: {'met' if ok else 'NOT met'})")
    return lines


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    if a.device == "cuda" and not torch.cuda.is_available():
        print("pretrain_throughput: error: no CUDA device visible; pass --device cpu (with --smoke for a quick run)",
              file=sys.stderr)
        return 2
    res = run(a)
    print(json.dumps(res) if a.json else "\n".join(format_lines(res)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
