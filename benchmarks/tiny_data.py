"""Tiny synthetic datasets in the exact on-disk layouts the benchmarks read, for the embedded small-scale default.

``generate(out)`` runs every registered task's tiny writer (``transfer/tasks/<task>.py``; drawing in
``transfer/tasks/draw.py``) in registration order under ``out``, so that ``DETECTRON2_DATASETS=out`` makes the
benchmarks' datasets load unchanged (VOC2007/2012, COCO 2017, Cityscapes, VOC2012 semantic segmentation with an
SBD folder, COCO keypoints, LVIS v0.5 over the COCO images, DensePose-COCO), plus an ImageFolder
(``pretrain/{train,val}/<class>/*.jpg``) for MoCo pretraining and kNN/linear evaluation.

Same seed and sizes give byte-identical files. CLI::

    python -m benchmarks.tiny_data --out datasets_tiny [--seed 0] [--coco-train 40 ...]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from transfer import tasks
from transfer.tasks.draw import README_MARKER, STYLES, _dilate, _rng, _save_jpeg, paint, place, texture
from core.cli import ArgumentParser

PRETRAIN_CLASSES: tuple[str, ...] = tuple(sorted(STYLES))
PRETRAIN_PX = 64
PRETRAIN_SIZES = {"pretrain_train": 300, "pretrain_val": 100}


def default_sizes() -> dict[str, int]:
    """Image counts per split of every registered tiny layout, and of the pretraining ImageFolder."""
    out: dict[str, int] = {}
    for b in tasks.benchmarks().values():
        out.update(b.tiny_sizes)
    return out | PRETRAIN_SIZES


DEFAULT_SIZES = default_sizes()
_MIN = {"pretrain_train": 8, "pretrain_val": 8}  # every class in every split; 2 for the detection splits


def layout_dirs() -> tuple[str, ...]:
    return tuple(dict.fromkeys(d for b in tasks.benchmarks().values() for d in b.tiny_dirs)) + ("pretrain",)


def pretrain_image(rng: np.random.Generator, cls: str, px: int = PRETRAIN_PX) -> np.ndarray:
    """One object of class ``cls`` dominating a ``px``-square image, sometimes with a small distractor."""
    canvas = texture(rng, px, px)
    blocked = np.zeros((px, px), dtype=bool)
    inst = place(rng, cls, STYLES[cls], blocked, (0.4 * px, 0.7 * px), min_pixels=px * px // 12)
    if inst is None:
        raise RuntimeError(f"could not place {cls} in a {px}px image")
    paint(canvas, inst.mask, STYLES[cls].color, rng)
    if rng.random() < 0.2:
        other = str(rng.choice([c for c in PRETRAIN_CLASSES if c != cls]))
        small = place(rng, other, STYLES[other], _dilate(inst.mask, 2), (0.15 * px, 0.25 * px),
                      min_pixels=12, tries=10)
        if small is not None:
            paint(canvas, small.mask, STYLES[other].color, rng)
    return canvas


def write_pretrain(root: Path, splits: dict[str, int], seed: int) -> Path:
    """Write an ImageFolder ``pretrain/<split>/<class>/<class>_NNNNN.jpg`` (classes round-robin)."""
    base = root / "pretrain"
    for split, n in splits.items():
        rng = _rng(seed, f"pretrain_{split}")
        for i in range(n):
            cls = PRETRAIN_CLASSES[i % len(PRETRAIN_CLASSES)]
            _save_jpeg(pretrain_image(rng, cls), base / split / cls / f"{cls}_{i:05d}.jpg")
    return base



# ----------------------------------------------------------------------------- entry points


def _check_sizes(sizes: dict[str, int]) -> dict[str, int]:
    defaults = default_sizes()
    unknown = set(sizes) - set(defaults)
    if unknown:
        raise TypeError(f"unknown size(s) {sorted(unknown)}; known: {sorted(defaults)}")
    merged = defaults | {k: int(v) for k, v in sizes.items()}
    for key, val in merged.items():
        if val < _MIN.get(key, 2):
            raise ValueError(f"{key}={val}: need at least {_MIN.get(key, 2)} images "
                             "(every class must appear in every split)")
    return merged


def _prepare(out: Path) -> None:
    """Create ``out``; refuse to overwrite dataset folders that this module did not write."""
    out.mkdir(parents=True, exist_ok=True)
    existing = [out / d for d in layout_dirs() if (out / d).exists()]
    readme = out / "README.txt"
    ours = readme.exists() and readme.read_text(errors="replace").startswith(README_MARKER)
    if existing and not ours:
        raise FileExistsError(f"{out} already holds {[p.name for p in existing]} not written by "
                              "benchmarks.tiny_data; choose an empty --out")
    (out / ".complete").unlink(missing_ok=True)
    for path in existing:
        shutil.rmtree(path)


def _readme(seed: int, sizes: dict[str, int]) -> str:
    lines = [
        README_MARKER,
        "",
        "These are tiny procedurally drawn images (coloured shapes on textured backgrounds, street-like",
        "scenes, drawn people), NOT real VOC/COCO/Cityscapes/ImageNet data. They only reproduce the",
        "on-disk layouts, so the benchmark pipeline can run end to end; numbers obtained on them",
        "say nothing about real transfer performance.",
        "",
        f"seed: {seed}",
        *(f"{k}: {v}" for k, v in sizes.items()),
        f"layouts: {', '.join(b for b, t in tasks.benchmarks().items() if t.write_tiny)}",
        f"pretrain classes: {', '.join(PRETRAIN_CLASSES)}",
        "",
        "Point Detectron2 at it with DETECTRON2_DATASETS=<this folder>.",
    ]
    return "\n".join(lines) + "\n"


def generate(out: Path | str, *, seed: int = 0, log: Callable[[str], None] | None = None,
             **sizes: int) -> dict[str, Path]:
    """Write every registered tiny layout (and the pretraining ImageFolder) under ``out``; ``{benchmark: out}``.

    ``sizes`` overrides :func:`default_sizes` (image counts per split). ``log`` receives one line per layout.
    The ``.complete`` marker is written last.
    """
    out = Path(out)
    n = _check_sizes(sizes)
    _prepare(out)
    (out / "README.txt").write_text(_readme(seed, n))
    paths = {}
    jobs = [(name, (lambda b=b: b.write_tiny(out, seed, n))) for name, b in tasks.benchmarks().items() if b.write_tiny]
    jobs.append(("pretrain", lambda: (write_pretrain(out, {"train": n["pretrain_train"], "val": n["pretrain_val"]},
                                                     seed), f"train {n['pretrain_train']}, val {n['pretrain_val']}")[1]))
    for name, job in jobs:
        start = time.perf_counter()
        summary = job()
        paths[name] = out
        if log is not None:
            log(f"wrote {name:<14} ({summary}) -> {out} [{time.perf_counter() - start:.1f}s]")
    (out / ".complete").write_text(f"seed={seed} " + " ".join(f"{k}={v}" for k, v in n.items()) + "\n")
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(description=__doc__.split("\n\n")[0],
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, type=Path, help="dataset root (DETECTRON2_DATASETS)")
    parser.add_argument("--seed", type=int, default=0)
    for key, val in default_sizes().items():
        parser.add_argument(f"--{key.replace('_', '-')}", dest=key, type=int, default=val,
                            help=f"images (default {val})")
    args = parser.parse_args(argv)
    sizes = {k: getattr(args, k) for k in default_sizes()}
    try:
        generate(args.out, seed=args.seed, log=print, **sizes)
    except (FileExistsError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"done: DETECTRON2_DATASETS={args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
