"""Detection on your own data (``bash benchmarks/run_custom.sh``): a COCO-json pair (boxes, and masks when every
annotation has one) or a VOC-layout folder with any class names; Faster (or Mask) R-CNN R50-C4 or R50-FPN with
normalized fine-tuning (``transfer/configs/custom/``), pycocotools AP (and the VOC07 metric for the VOC layout).

The task side is here: the three record tasks and their evaluators, table titles and metrics, and a tiny dataset
with your own class names in both layouts (``python -m benchmarks.tiny_custom``). The datasets are registered
from the sweep's dataset spec (``transfer/custom_data.py``); reading, checking and scheduling your data is the
runner's own-data feature (``benchmarks/own_data.py``), named below by ``runner``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from transfer.tasks.registry import register
from transfer.tasks.base import Benchmark, Task
from transfer.tasks.coco import coco_evaluator, coco_style_metrics
from transfer.tasks.draw import (DET_HEIGHTS, DET_WIDTHS, README_MARKER, STYLES, _coco_annotation, _rng, _save_jpeg,
                                 shape_scene)
from transfer.tasks.voc import _voc_xml


def _scenes(classes: Sequence[str], n: int, seed: int, split: str):
    styles = {c: STYLES[s] for c, s in zip(classes, sorted(STYLES))}
    rng = _rng(seed, f"custom_{split}")
    for i in range(n):
        w, h = int(rng.choice(DET_WIDTHS)), int(rng.choice(DET_HEIGHTS))
        yield shape_scene(rng, w, h, [classes[i % len(classes)]], classes, styles)  # an object in every image


def write_custom(out: Path | str, classes: Sequence[str] = ("widget",), train: int = 40, test: int = 20,
                 seed: int = 0) -> dict[str, Path]:
    """Write both layouts under ``out``; return ``{"coco": dir, "voc": dir}``."""
    classes = list(classes)
    if not 1 <= len(classes) <= len(STYLES) or len(set(classes)) != len(classes):
        raise ValueError(f"1 to {len(STYLES)} distinct class names, not {classes}")
    if min(train, test) < max(2, len(classes)):
        raise ValueError(f"each split needs at least max(2, number of classes) = {max(2, len(classes))} images")
    out = Path(out)
    coco, voc = out / "coco", out / "voc"
    (coco / "annotations").mkdir(parents=True, exist_ok=True)
    for sub in ("Annotations", "ImageSets/Main"):
        (voc / sub).mkdir(parents=True, exist_ok=True)
    categories = [{"id": k + 1, "name": c, "supercategory": "object"} for k, c in enumerate(classes)]
    cat_id = {c["name"]: c["id"] for c in categories}
    index = 0
    for split, n, voc_split in (("train", train, "trainval"), ("test", test, "test")):
        images, annotations, ids = [], [], []
        for canvas, instances in _scenes(classes, n, seed, split):
            index += 1
            file_id = f"{index:06d}"
            h, w = canvas.shape[:2]
            _save_jpeg(canvas, coco / "images" / split / f"{file_id}.jpg")
            _save_jpeg(canvas, voc / "JPEGImages" / f"{file_id}.jpg")
            (voc / "Annotations" / f"{file_id}.xml").write_bytes(_voc_xml("voc", file_id, w, h, instances))
            images.append({"id": index, "file_name": f"{file_id}.jpg", "height": h, "width": w})
            for inst in instances:
                annotations.append(_coco_annotation(inst, len(annotations) + 1, index, cat_id[inst.name]))
            ids.append(file_id)
        doc = {"info": {"description": f"{README_MARKER} (tiny_custom, seed {seed})"}, "licenses": [],
               "images": images, "annotations": annotations, "categories": categories}
        (coco / "annotations" / f"{split}.json").write_text(json.dumps(doc, separators=(",", ":")))
        (voc / "ImageSets" / "Main" / f"{voc_split}.txt").write_text("".join(f"{i}\n" for i in ids))
    return {"coco": coco, "voc": voc}


# ----------------------------------------------------------------------------- the tasks


def _voc_and_coco_evaluator(cfg: Any, name: str, out: str) -> Any:
    from transfer.evaluators import VOCAndCOCOEvaluator

    return VOCAndCOCOEvaluator(name, out)


COCO_MASKRCNN = Task("custom_coco_maskrcnn", ("custom_coco_",), coco_evaluator,
                     lambda r: coco_style_metrics(r, {"bbox": "APbb", "segm": "APmk"}),
                     title="Your data (COCO json), detection and instance segmentation (Mask R-CNN)",
                     metrics=("APbb", "APbb50", "APbb75", "APmk", "APmk50", "APmk75"),
                     applies=lambda cfg: bool(cfg.MODEL.MASK_ON))
COCO_DET = Task("custom_coco_det", ("custom_coco_",), coco_evaluator, lambda r: coco_style_metrics(r, {"bbox": "APbb"}),
                title="Your data (COCO json), detection (Faster R-CNN)", metrics=("APbb", "APbb50", "APbb75"))
VOC = Task("custom_voc", ("custom_voc_",), _voc_and_coco_evaluator,
           lambda r: {"AP50": r["bbox"]["AP50"], "AP": r["bbox"]["AP"], "AP75": r["bbox"]["AP75"],
                      **coco_style_metrics({"bbox": r["coco_bbox"]}, {"bbox": "APbb"})},
           title="Your data (VOC layout), detection (Faster R-CNN; AP50/AP/AP75: VOC07 metric, APbb: pycocotools)",
           metrics=("AP50", "AP", "AP75", "APbb", "APbb50", "APbb75"))

BENCHMARK = register(Benchmark(
    name="custom", summary="detection on your own data, COCO json or VOC layout (Table 2's question)",
    tasks=(COCO_MASKRCNN, COCO_DET, VOC), dataset="your data (COCO json pair or VOC folder)",
    has_data=lambda root: True, check=None, runner="benchmarks.own_data", train_fraction=True,
    docs="docs/own-data.md",
))
