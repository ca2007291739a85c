"""What a sweep derives from its data before the first trial: which training images (``--train-fraction``),
how long to train on them (the epoch rule, ``transfer/schedule.py``), and the dataset spec that every trial
of every row reads (``train_net.py --datasets-spec``, registered by ``transfer/custom_data.py``).

A runner's :class:`~benchmarks.common.Benchmark` gets a ``prepare`` hook (:func:`fraction_prepare` here for
``run_voc.sh``/``run_coco.sh``; own data has its own in ``benchmarks/own_data.py``): it returns the sweep folder, Detectron2
overrides and ``train_net.py`` flags for every trial. The spec is written once into the sweep folder; a
folder whose spec says its trials saw other data is refused (finished trials are never mixed with new ones).

The subset of ``--train-fraction F --train-fraction-seed S`` is the ``round(F * N)`` (at least 1) training
images whose ``sha256(S, dataset, image id)`` rank lowest: the same on every machine and Python version, and
for one seed a smaller fraction's images are among a larger one's. Its size, seed and id hash go into every
trial's fingerprint and record, and the table's schedule label states the fraction.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

SPEC_NAME = "datasets_spec.json"


class SweepDataError(ValueError):
    """Data a sweep cannot use; one actionable line, raised before any trial starts."""


@dataclass
class SweepContext:
    """What a ``prepare`` hook gets from :func:`benchmarks.common.run_benchmark`."""

    args: argparse.Namespace
    out: Path             # output root
    run_dir: str          # sweep folder under ``out`` so far, e.g. "R50-C4"
    tiny: bool
    data_root: Path       # $DETECTRON2_DATASETS of the trials
    config: Path          # supervised-flavour config of this run (full or tiny)
    tag: str


@dataclass
class SweepSetup:
    """What a ``prepare`` hook returns: the sweep folder, overrides and flags for every trial, lines to print."""

    run_dir: str
    opts: list[str] = field(default_factory=list)    # Detectron2 overrides, before the user's (theirs win)
    extra: list[str] = field(default_factory=list)   # train_net.py flags
    lines: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------- the subset

def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not in (0, 1]")
    return value


def add_fraction_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--train-fraction", type=_fraction, metavar="F",
                        help="low-data variant: train on a fixed subset of this fraction of the training images "
                             "(0 < F <= 1), the same for every row and trial and recorded; the schedule keeps the "
                             "benchmark's epochs (iterations scaled by the subset's share of the images)")
    parser.add_argument("--train-fraction-seed", type=int, default=0, metavar="S",
                        help="which subset --train-fraction draws (default 0); one seed draws the same images on any "
                             "machine, and its smaller fractions are inside its larger ones")


def _rank(seed: int, dataset: str, image_id: Any) -> bytes:
    return hashlib.sha256(f"{seed}\0{dataset}\0{image_id}".encode()).digest()


def draw_subset(ids: Sequence[tuple[str, Any]], fraction: float, seed: int) -> list[tuple[str, Any]]:
    """``round(fraction * len(ids))`` (at least 1) of the ``(dataset, image id)`` pairs, in their given order."""
    if not ids:
        raise SweepDataError("--train-fraction: the training set lists no image")
    k = max(1, int(fraction * len(ids) + 0.5))
    chosen = set(sorted(range(len(ids)), key=lambda j: _rank(seed, *ids[j]))[:k])
    return [p for j, p in enumerate(ids) if j in chosen]


def fraction_label(fraction: float, seed: int) -> str:
    """``25% train (draw 0)``: what the table's schedule label adds."""
    return f"{fraction * 100:g}% train (draw {seed})"


def fraction_dir(fraction: float, seed: int) -> str:
    return f"frac{fraction:g}-seed{seed}"


def subset_spec(subset: list[tuple[str, Any]], fraction: float, seed: int, total: int) -> tuple[list[dict], list[str],
                                                                                                  dict[str, Any]]:
    """(spec entries, train dataset names, fingerprint values) of a drawn subset."""
    from transfer.custom_data import ids_sha256

    by: dict[str, list] = {}
    for dataset, image_id in subset:
        by.setdefault(dataset, []).append(image_id)
    entries = [{"name": f"{d}_frac{fraction:g}_seed{seed}", "type": "subset", "of": d, "image_ids": ids}
               for d, ids in by.items()]
    values = {"train_fraction": fraction, "train_fraction_seed": seed, "train_subset_images": len(subset),
              "train_images_full": total, "train_subset_sha256": ids_sha256(subset)}
    return entries, [e["name"] for e in entries], values


# ----------------------------------------------------------------------------- the spec file

def write_spec(folder: Path, spec: dict[str, Any], dry_run: bool = False) -> Path:
    """Write ``folder/datasets_spec.json`` (not with ``dry_run``); refuse a folder whose trials saw other data."""
    from core.records import write_json_atomic

    path = folder / SPEC_NAME
    spec = json.loads(json.dumps(spec))
    if path.is_file():
        try:
            old = json.loads(path.read_text()).get("fingerprint")
        except (OSError, ValueError, AttributeError):
            old = None
        if old != spec["fingerprint"]:
            keys = sorted(k for k in set(old or {}) | set(spec["fingerprint"])
                          if (old or {}).get(k) != spec["fingerprint"].get(k))
            raise SweepDataError(f"{path}: the trials under {folder} were set up for other data or another schedule "
                                 f"({', '.join(keys) or 'unreadable spec'} differ); use another --output, or remove "
                                 "that folder to start over")
    if not dry_run:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            write_json_atomic(path, spec)
        except OSError as e:
            from benchmarks.runner import disk_line

            raise SweepDataError(disk_line(e)) from None
    return path


# ----------------------------------------------------------------------------- --train-fraction on VOC / COCO

def standard_train_ids(names: Sequence[str], root: Path) -> list[tuple[str, Any]]:
    """``(dataset, image id)`` of every image of Detectron2's builtin VOC or COCO training sets ``names``, as
    their loaders return the ids (VOC: the split file's strings; COCO: the json's image ids)."""
    out: list[tuple[str, Any]] = []
    for name in names:
        voc = re.fullmatch(r"voc_(\d{4})_(\w+)", name)
        if voc:
            path = root / f"VOC{voc[1]}" / "ImageSets" / "Main" / f"{voc[2]}.txt"
            ids = [line.split()[0] for line in path.read_text().splitlines() if line.strip()]
        else:
            from detectron2.data.datasets.builtin import _PREDEFINED_SPLITS_COCO

            if name not in _PREDEFINED_SPLITS_COCO["coco"]:
                raise SweepDataError(f"--train-fraction: cannot list the images of {name!r} (VOC and COCO builtin "
                                     "training sets only)")
            path = root / _PREDEFINED_SPLITS_COCO["coco"][name][1]
            ids = [img["id"] for img in json.loads(path.read_text())["images"]]
        out += [(name, i) for i in ids]
    return out


def fraction_prepare(ctx: SweepContext) -> SweepSetup:
    """``--train-fraction`` on a builtin benchmark: the subset of its training sets, its schedule scaled by the
    epoch rule (the config's iterations x subset / all images), the spec in the sweep folder."""
    from transfer import schedule as sched
    from transfer.config import load_cfg

    args = ctx.args
    fraction, seed = args.train_fraction, args.train_fraction_seed
    cfg = load_cfg(str(ctx.config), [])
    ids = standard_train_ids(list(cfg.DATASETS.TRAIN), ctx.data_root)
    subset = draw_subset(ids, fraction, seed)
    entries, train, values = subset_spec(subset, fraction, seed, len(ids))
    schedule = sched.rescale(sched.from_values(cfg), len(ids), len(subset))
    base = "tiny" if ctx.tiny else sched.iterations_label(schedule.max_iter)
    values["epoch_rule_epochs"] = round(schedule.epochs(len(subset)), 3)
    run_dir = f"{ctx.run_dir}-{fraction_dir(fraction, seed)}"
    facts = {k: v for k, v in values.items() if k.startswith("train_")}
    path = write_spec(ctx.out / run_dir, {"version": 1, "datasets": entries, "train": train, "fingerprint": values,
                                          "record": {"train_subset": facts}}, dry_run=args.dry_run)
    label = f"{base}, {fraction_label(fraction, seed)}"
    return SweepSetup(run_dir, schedule.opts(), ["--datasets-spec", str(path.resolve()), "--schedule", label], [
        f"train subset: {len(subset)} of {len(ids)} images ({fraction * 100:g}%, draw seed {seed}, ids sha256 "
        f"{values['train_subset_sha256'][:12]}) -> {path}" + (" (not written: dry run)" if args.dry_run else ""),
        f"schedule (epoch rule: {values['epoch_rule_epochs']:.1f} epochs, as the full benchmark): "
        + schedule.describe(len(subset))])
