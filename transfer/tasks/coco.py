"""COCO detection and instance segmentation (MoCo v1 Table 5): Mask R-CNN R50-C4 or R50-FPN with SyncBN,
train2017 -> val2017, 1x (90k) or 2x (180k) iterations, box and mask AP/AP50/AP75/APs/APm/APl from pycocotools
(``transfer/configs/coco/``); also the box-only task ``coco_det`` (Faster R-CNN on the same data).

All the suite knows about it: the tasks and their evaluator, the COCO-json dataset check
(``transfer/tasks/checks.py``), the tiny ``coco/`` layout, and the runner entry (``bash benchmarks/run_coco.sh``:
``--arch C4|FPN|ViTDet``, ``--schedule 1x|2x``, ``--train-fraction``). Detectron2 registers ``coco_2017_{train,val}``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Sequence


from transfer.tasks.registry import register
from transfer.tasks.base import CONFIGS, Benchmark, RunSpec, Task
from transfer.tasks.categories import coco_thing_categories
from transfer.tasks.checks import Problems, check_coco_json
from transfer.tasks.draw import DETECTION_STYLES, README_MARKER, _coco_annotation, _detection_scenes, _rng, _save_jpeg


COCO_SPLITS: tuple[str, ...] = ("train2017", "val2017")


def check_coco(root: Path | str, splits: Sequence[str] = COCO_SPLITS, need_masks: bool = True,
               notes: list[str] | None = None) -> list[str]:
    """Check ``<root>/coco/<split>/`` and ``<root>/coco/annotations/instances_<split>.json``."""
    root, problems = Path(root), Problems()
    notes = [] if notes is None else notes
    base = root / "coco"
    if not base.is_dir():
        problems.add("missing-dir", f"{base}: directory missing")
        return problems.lines()
    for split in splits:
        _check_coco_split(base, split, need_masks, problems, notes)
    return problems.lines()


def _check_coco_split(base: Path, split: str, need_masks: bool, problems: Problems, notes: list[str]) -> None:
    path = base / "annotations" / f"instances_{split}.json"
    image_dir = base / split
    if not image_dir.is_dir():
        problems.add("missing-dir", f"{image_dir}: image directory missing")
    if not path.is_file():
        problems.add("missing-json", f"{path}: annotation file missing (COCO 2017 instances json)")
        return
    check_coco_json(path, image_dir, problems, notes, need_masks=need_masks)


COCO_CLASSES_USED: tuple[str, ...] = tuple(DETECTION_STYLES)


def write_coco(root: Path, splits: dict[str, int], seed: int) -> Path:
    """Write ``coco/<split>2017/*.jpg`` and ``coco/annotations/instances_<split>2017.json``."""
    categories = coco_thing_categories()
    name_to_id = {c["name"]: c["id"] for c in categories}
    base = root / "coco"
    (base / "annotations").mkdir(parents=True, exist_ok=True)
    image_id = 0  # unique across splits, as in COCO
    for split, n in splits.items():
        rng = _rng(seed, f"coco_{split}")
        images, annotations = [], []
        for canvas, instances in _detection_scenes(rng, n, COCO_CLASSES_USED):
            image_id += 1
            file_name = f"{image_id:012d}.jpg"
            _save_jpeg(canvas, base / f"{split}2017" / file_name)
            h, w = canvas.shape[:2]
            images.append({"id": image_id, "file_name": file_name, "height": h, "width": w})
            for inst in instances:
                ann_id = len(annotations) + 1
                annotations.append(_coco_annotation(inst, ann_id, image_id, name_to_id[inst.name]))
        doc = {
            "info": {"description": f"{README_MARKER} (seed {seed})", "version": "1.0"},
            "licenses": [],
            "images": images,
            "annotations": annotations,
            "categories": categories,
        }
        path = base / "annotations" / f"instances_{split}2017.json"
        path.write_text(json.dumps(doc, separators=(",", ":")))
    return base


# ----------------------------------------------------------------------------- the tasks and the runner

_COCO_SUFFIXES = (("AP", ""), ("AP50", "50"), ("AP75", "75"), ("APs", "S"), ("APm", "M"), ("APl", "L"))


def coco_style_metrics(results: dict, iou_types: dict[str, str]) -> dict[str, float]:
    """``{"bbox": {"AP": ..}, "segm": ..}`` -> ``{"APbb": .., "APbb50": .., "APmk": ..}`` for ``iou_types``
    ``{"bbox": "APbb", "segm": "APmk"}``."""
    out = {}
    for src, dst in iou_types.items():
        r = results.get(src, {})
        out.update({dst + suffix: r[k] for k, suffix in _COCO_SUFFIXES if k in r})
    return out


def coco_evaluator(cfg: Any, name: str, out: str) -> Any:
    """pycocotools box (and mask with ``MODEL.MASK_ON``) AP; 0 rather than a crash when nothing is detected."""
    from transfer.evaluators import COCOEvaluatorZeroWithoutDetections

    iou = ("bbox", "segm") if cfg.MODEL.MASK_ON else ("bbox",)
    return COCOEvaluatorZeroWithoutDetections(name, tasks=iou, output_dir=out, use_fast_impl=False)


COCO_MASKRCNN = Task("coco_maskrcnn", ("coco_",), coco_evaluator,
                     lambda r: coco_style_metrics(r, {"bbox": "APbb", "segm": "APmk"}),
                     title="COCO detection and instance segmentation (Mask R-CNN)", paper_table="Table 5",
                     metrics=("APbb", "APbb50", "APbb75", "APmk", "APmk50", "APmk75"),
                     applies=lambda cfg: bool(cfg.MODEL.MASK_ON))
COCO_DET = Task("coco_det", ("coco_",), coco_evaluator, lambda r: coco_style_metrics(r, {"bbox": "APbb"}),
                title="COCO detection (Faster R-CNN)", metrics=("APbb", "APbb50", "APbb75", "APbbS", "APbbM", "APbbL"))


def has_coco(root: Path) -> bool:
    return (root / "coco" / "annotations").is_dir()


def _add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--arch", choices=["C4", "FPN", "ViTDet"], default="FPN",
                   help="Mask R-CNN R50-C4, R50-FPN (default), or ViTDet (a plain ViT, the size read from the weights, "
                        "with ViTDet's recipe and each initialisation's schedule of its Table 11)")
    p.add_argument("--schedule", choices=["1x", "2x"], default="1x",
                   help="1x (90k iterations) or 2x (180k); ViTDet: each row's Table 11 length, this flag is not read")


# ViTDet (transfer/vitdet.py): one recipe, each initialisation with its own Table 11 row (lr, wd, epochs)
VITDET_CONFIGS = {"pretrained": "coco_ViTDet_B_100ep.yaml", "supervised": "coco_ViTDet_B_50ep_supervised.yaml",
                  "random": "coco_ViTDet_B_300ep_random.yaml"}
VITDET_SCHEDULE = "table11"  # the records' schedule: each row's ViTDet Table 11 length (100 / 50 / 300 epochs)
NO_SUPERVISED_VIT = ("no default supervised ViT weights: pass --supervised-weights FILE (e.g. DeiT-B converted with "
                     "transfer/convert.py), or leave the row out with --rows pretrained,random")


def vitdet_rows(rows: list, tiny: bool) -> None:
    """Row rules of ViTDet: each kind's Table 11 config (full protocol), each row's ViT size from its weights."""
    from transfer.vitdet import rows_sized

    if not tiny:
        for row in rows:
            row.config = CONFIGS / "coco" / VITDET_CONFIGS[row.kind]
    rows_sized(rows)


def _vitdet_spec(args: argparse.Namespace) -> RunSpec:
    from transfer.weights import MSRA_R50

    rows = [r.strip() for r in args.rows.split(",")]
    default_sup = "supervised" in rows and args.supervised_weights == MSRA_R50 and not args.tiny
    return RunSpec(
        name="coco", prog="run_coco.sh", table="ViTDet Table 4", dataset="COCO 2017", has_data=has_coco,
        check=lambda root, notes: check_coco(root, need_masks=True, notes=notes),
        config=CONFIGS / "coco" / VITDET_CONFIGS["pretrained"], run_dir=f"ViTDet-{VITDET_SCHEDULE}",
        tiny_config=CONFIGS / "tiny" / "coco_ViTDet_tiny.yaml", tiny_run_dir="ViTDet-tiny",
        requires=(lambda: NO_SUPERVISED_VIT) if default_sup else None, adjust_rows=vitdet_rows,
        banner=("SMALL-SCALE DEMONSTRATION on generated tiny data (a 4-block tiny ViT, 128 px, a few iterations): "
                "it exercises ViTDet's pipeline end to end, it is NOT ViTDet's protocol and its numbers are not "
                "comparable to ViTDet Table 4") if args.tiny else "",
    )  # no --train-fraction: its epoch rule scales one config, ViTDet rows have three


def _spec(args: argparse.Namespace) -> RunSpec:
    if args.arch == "ViTDet":
        return _vitdet_spec(args)
    return RunSpec(
        name="coco", prog="run_coco.sh", table="Table 5", dataset="COCO 2017", has_data=has_coco,
        check=lambda root, notes: check_coco(root, need_masks=True, notes=notes),
        config=CONFIGS / "coco" / f"coco_R_50_{args.arch}_{args.schedule}.yaml", run_dir=f"R50-{args.arch}-{args.schedule}",
        tiny_config=CONFIGS / "tiny" / f"coco_R_18_{args.arch}_tiny.yaml", tiny_run_dir=f"R18-{args.arch}",
        train_fraction=True,
    )


def _write_tiny(root: Path, seed: int, sizes: dict[str, int]) -> str:
    write_coco(root, {"train": sizes["coco_train"], "val": sizes["coco_val"]}, seed)
    return f"train2017 {sizes['coco_train']}, val2017 {sizes['coco_val']}"


BENCHMARK = register(Benchmark(
    name="coco", summary="COCO Mask R-CNN, box and mask AP (MoCo v1 Table 5)", tasks=(COCO_MASKRCNN, COCO_DET),
    dataset="COCO 2017", has_data=has_coco, check=check_coco,
    needs=("coco/train2017", "coco/val2017", "coco/annotations/instances_train2017.json",
           "coco/annotations/instances_val2017.json"),
    add_args=_add_args, spec=_spec, write_tiny=_write_tiny, tiny_sizes={"coco_train": 40, "coco_val": 24},
    tiny_dirs=("coco",), train_fraction=True,
))
