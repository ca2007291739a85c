"""LVIS v0.5 instance segmentation (MoCo v1 Table 6): Mask R-CNN R50-FPN with SyncBN, lvis_v0.5_train -> val,
2x schedule (180k iterations), repeat-factor sampling, mask AP/AP50/AP75 (and APr/APc/APf) from the lvis package
(``transfer/configs/lvis/``). The paper's supervised row was fine-tuned with the backbone's BN frozen (its dagger;
appendix: tuning BN made that baseline worse): the runner's supervised row is run so by default, labelled
"(BN frozen)", as protocol.yaml's per-row entry says; ``--supervised-tuned-bn`` runs it with BN tuned instead
(a footnoted deviation).

All the suite knows about it: the task and its evaluator, the dataset check (the 1230 v0.5 categories, images
found through ``coco_url``, annotations), the tiny layout (the tiny COCO images relabelled with LVIS categories of
all three frequency groups), and the runner entry (``bash benchmarks/run_lvis.sh``). Detectron2 registers
``lvis_v0.5_{train,val}``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Sequence


from transfer.tasks.registry import register
from transfer.tasks.base import CONFIGS, RGB_FLAVOUR, Benchmark, Metrics, RunSpec, Task
from transfer.tasks.categories import _d2_data_module
from transfer.tasks.checks import _ANN_KEYS, Problems, _load_lists
from transfer.tasks.draw import README_MARKER
from transfer.tasks.images import image_problem


LVIS_SPLITS: tuple[str, ...] = ("train", "val")


def check_lvis(root: Path | str, splits: Sequence[str] = LVIS_SPLITS, notes: list[str] | None = None) -> list[str]:
    """Check ``<root>/lvis/lvis_v0.5_<split>.json`` (``lvis_v0.5_*``; images in ``<root>/coco/<split>2017``
    found through ``coco_url``): the 1230 v0.5 categories with frequency groups, the image fields the loader and
    the evaluator read, every image file, and each annotation (known ids, box, polygons of >= 3 points)."""
    root, problems = Path(root), Problems()
    notes = [] if notes is None else notes
    expected = {c["id"]: c["name"] for c in lvis_v0_5_categories()}
    for split in splits:
        path = root / "lvis" / f"lvis_v0.5_{split}.json"
        doc = _load_lists(path, problems, "LVIS v0.5 json")
        if doc is None:
            continue
        cats = {c.get("id"): c for c in doc["categories"] if isinstance(c, dict)}
        if {i: c.get("name") for i, c in cats.items()} != expected:
            problems.add("bad-category", f"{path}: 'categories' are not the 1230 LVIS v0.5 categories Detectron2's "
                                         "lvis_v0.5 metadata assumes (ids 1-1230)")
        elif any(c.get("frequency") not in ("r", "c", "f") for c in cats.values()):
            problems.add("bad-category", f"{path}: every category needs 'frequency' r, c or f (APr/APc/APf groups)")
        images: set = set()
        for k, img in enumerate(doc["images"]):
            keys = ("id", "height", "width", "coco_url", "neg_category_ids", "not_exhaustive_category_ids")
            if not isinstance(img, dict) or any(key not in img for key in keys):
                problems.add("bad-image", f"{path}: images[{k}] needs {', '.join(keys)}")
                continue
            images.add(img["id"])
            folder, name = str(img["coco_url"]).split("/")[-2:]
            file = root / "coco" / folder / name
            if not file.is_file():
                problems.add("missing-image", f"{file}: missing (image id {img['id']} in {path}; LVIS reads COCO 2017 "
                                              "images through coco_url)")
                continue
            line = image_problem(file, (img["width"], img["height"]))
            if line:
                problems.add("bad-image", f"{line} (image id {img['id']} in {path})")
        annotated, seen = set(), set()
        for k, ann in enumerate(doc["annotations"]):
            if not isinstance(ann, dict) or any(key not in ann for key in (*_ANN_KEYS, "segmentation")):
                problems.add("bad-annotation", f"{path}: annotations[{k}] needs {', '.join(_ANN_KEYS)}, segmentation")
                continue
            where = f"{path}: annotation id {ann['id']}"
            if ann["id"] in seen:
                problems.add("bad-annotation", f"{where}: duplicate annotation id (Detectron2 asserts unique ids)")
            seen.add(ann["id"])
            annotated.add(ann["image_id"])
            if ann["image_id"] not in images:
                problems.add("unknown-image-id", f"{where}: image_id {ann['image_id']} is not in 'images'")
            if ann["category_id"] not in expected:
                problems.add("unknown-category-id", f"{where}: category_id {ann['category_id']} is not an LVIS v0.5 id")
            segm = ann["segmentation"]
            if not (isinstance(segm, list) and segm and all(isinstance(p, list) and len(p) >= 6 and len(p) % 2 == 0
                                                            for p in segm)):
                problems.add("bad-segmentation", f"{where}: needs polygons of >= 3 points (Detectron2's LVIS loader "
                                                 "asserts it)")
        if images and not annotated:
            problems.add("no-annotations", f"{path}: none of its {len(images)} images has an annotation")
        groups = {cats[c].get("frequency") for a in doc["annotations"] if isinstance(a, dict)
                  for c in [a.get("category_id")] if c in cats}
        missing = [g for g in ("r", "c", "f") if g not in groups]
        if split == "val" and missing and annotated:
            notes.append(f"{path}: no ground truth of frequency group(s) {', '.join(missing)}: AP{'/AP'.join(missing)} "
                         "are undefined (NaN in the records)")
    return problems.lines()


# The tiny COCO classes as LVIS v0.5 categories, two of each frequency group (f, c, r), so APr/APc/APf exist.
LVIS_OF_COCO: dict[str, str] = {"person": "baby", "car": "car_(automobile)", "bird": "parrot", "cat": "kitten",
                                "bicycle": "tricycle", "dog": "puppy"}


def lvis_v0_5_categories() -> list[dict]:
    """Detectron2's 1230 LVIS v0.5 categories (id, name, synset, synonyms, def, frequency)."""
    return [dict(c) for c in _d2_data_module("lvis_v0_5_categories").LVIS_CATEGORIES]


def write_lvis(root: Path, seed: int) -> Path:
    """Write ``lvis/lvis_v0.5_{train,val}.json`` over the tiny COCO 2017 images (LVIS v0.5 annotates COCO 2017
    train/val), the tiny objects relabelled by :data:`LVIS_OF_COCO`. Each image lists the tiny categories it
    does not show as ``neg_category_ids`` (verified absent) and none as not exhaustive."""
    cats = lvis_v0_5_categories()
    by_name = {c["name"]: c["id"] for c in cats}
    base = root / "lvis"
    base.mkdir(parents=True, exist_ok=True)
    tiny_ids = sorted(by_name[n] for n in LVIS_OF_COCO.values())
    for split in ("train", "val"):
        coco = json.loads((root / "coco" / "annotations" / f"instances_{split}2017.json").read_text())
        coco_name = {c["id"]: c["name"] for c in coco["categories"]}
        anns, present = [], {}
        for a in coco["annotations"]:
            cat = by_name[LVIS_OF_COCO[coco_name[a["category_id"]]]]
            anns.append({"id": len(anns) + 1, "image_id": a["image_id"], "category_id": cat, "bbox": a["bbox"],
                         "area": a["area"], "segmentation": a["segmentation"]})
            present.setdefault(a["image_id"], set()).add(cat)
        images = [{"id": im["id"], "height": im["height"], "width": im["width"],
                   "coco_url": f"http://images.cocodataset.org/{split}2017/{im['file_name']}",
                   "file_name": f"COCO_{split}2014_{im['file_name']}",
                   "not_exhaustive_category_ids": [],
                   "neg_category_ids": [c for c in tiny_ids if c not in present.get(im["id"], set())]}
                  for im in coco["images"]]
        img_count = {c: sum(c in p for p in present.values()) for c in tiny_ids}
        inst_count = {c: sum(a["category_id"] == c for a in anns) for c in tiny_ids}
        categories = [{**c, "image_count": img_count.get(c["id"], 0), "instance_count": inst_count.get(c["id"], 0)}
                      for c in cats]
        doc = {"info": {"description": f"{README_MARKER} (seed {seed})"}, "licenses": [], "images": images,
               "annotations": anns, "categories": categories}
        (base / f"lvis_v0.5_{split}.json").write_text(json.dumps(doc, separators=(",", ":")))
        if split == "val":  # Detectron2's lvis_v0.5_val_rand_100: a val subset (here the first third)
            keep = {im["id"] for im in images[: max(1, len(images) // 3)]}
            subset = {**doc, "images": [im for im in images if im["id"] in keep],
                      "annotations": [a for a in anns if a["image_id"] in keep]}
            (base / "lvis_v0.5_val_rand_100.json").write_text(json.dumps(subset, separators=(",", ":")))
    return base


# ----------------------------------------------------------------------------- the task and the runner

FROZEN_BN_SUFFIX = "_frozenbn"
FROZEN_BN_LABEL = " (BN frozen)"


def _evaluator(cfg: Any, name: str, out: str) -> Any:
    from transfer.evaluators import LVISEvaluatorNumpyCompat

    return LVISEvaluatorNumpyCompat(name, tasks=("bbox", "segm"), output_dir=out,
                                    max_dets_per_image=cfg.TEST.DETECTIONS_PER_IMAGE)


def lvis_metrics(results: dict) -> Metrics:
    """LVIS mask and box AP/AP50/AP75 and AP of the rare/common/frequent groups (``APmkr``, ``APbbf``, ...); a
    group without ground truth (the lvis package's -1, -100 after Detectron2's x100) is NaN, not a number."""
    out = {}
    for src, dst in (("segm", "APmk"), ("bbox", "APbb")):
        r = results.get(src, {})
        for key, suffix in (("AP", ""), ("AP50", "50"), ("AP75", "75"), ("APr", "r"), ("APc", "c"), ("APf", "f")):
            if key in r:
                out[dst + suffix] = r[key] if r[key] >= 0 else float("nan")
    return out


LVIS = Task("lvis_v0.5", ("lvis_v0.5_",), _evaluator, lvis_metrics, title="LVIS v0.5 instance segmentation",
            paper_table="Table 6", metrics=("APmk", "APmk50", "APmk75"), short="LVIS v0.5")


def has_lvis(root: Path) -> bool:
    return (root / "lvis" / "lvis_v0.5_train.json").is_file()


def _add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--supervised-tuned-bn", action="store_true",
                   help="fine-tune the supervised row with BN tuned (SyncBN) instead of frozen; the paper's supervised "
                        "LVIS row had BN frozen (the default), so this row is footnoted")
    p.add_argument("--supervised-frozen-bn", action="store_true", help=argparse.SUPPRESS)  # now the default; still accepted


def frozen_bn_supervised(rows: list, tiny: bool) -> None:
    """Point the supervised row at the ``_frozenbn`` flavour of its config and label it."""
    for row in rows:
        if row.kind != "supervised":
            continue
        stem = row.config.stem
        stem = (stem[: -len(RGB_FLAVOUR)] + FROZEN_BN_SUFFIX + RGB_FLAVOUR if stem.endswith(RGB_FLAVOUR)
                else stem + FROZEN_BN_SUFFIX)
        row.config = row.config.with_name(stem + ".yaml")
        row.label += FROZEN_BN_LABEL


def _spec(args: argparse.Namespace) -> RunSpec:
    return RunSpec(
        name="lvis", prog="run_lvis.sh", table="Table 6", dataset="LVIS v0.5 (with COCO 2017 images)",
        has_data=has_lvis, check=lambda root, notes: check_lvis(root, notes=notes),
        config=CONFIGS / "lvis" / "lvis_v0.5_R_50_FPN_2x.yaml", run_dir="R50-FPN-2x",
        tiny_config=CONFIGS / "tiny" / "lvis_v0.5_R_18_FPN_tiny.yaml", tiny_run_dir="R18-FPN",
        adjust_rows=None if args.supervised_tuned_bn else frozen_bn_supervised,
    )


def _write_tiny(root: Path, seed: int, sizes: dict[str, int]) -> str:
    write_lvis(root, seed)  # over the tiny COCO images the coco task wrote
    return f"train {sizes.get('coco_train', 40)}, val {sizes.get('coco_val', 24)} COCO images"


BENCHMARK = register(Benchmark(
    name="lvis", summary="LVIS v0.5 instance segmentation, Mask R-CNN (MoCo v1 Table 6)", tasks=(LVIS,),
    dataset="LVIS v0.5 (with COCO 2017 images)", has_data=has_lvis, check=check_lvis,
    needs=("coco/train2017", "coco/val2017", "lvis/lvis_v0.5_train.json", "lvis/lvis_v0.5_val.json"),
    add_args=_add_args, spec=_spec, write_tiny=_write_tiny, tiny_dirs=("lvis",),
))
