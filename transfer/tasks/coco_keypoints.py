"""COCO keypoint detection (MoCo v1 Table 6): Keypoint R-CNN R50-FPN, 2x schedule, keypoint AP from pycocotools
(``transfer/configs/keypoints/``).

All the suite knows about it: the task and its evaluator, the dataset check (``person_keypoints_*.json``: 17
keypoints per person, visibility flags), the tiny layout (drawn people with COCO's 17 keypoints), and the runner
entry (``bash benchmarks/run_coco_keypoints.sh``). Detectron2 registers ``keypoints_coco_2017_{train,val}``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Sequence


from transfer.tasks.registry import register
from transfer.tasks.base import CONFIGS, Benchmark, RunSpec, Task
from transfer.tasks.checks import _ANN_KEYS, Problems, _check_coco_images, _load_lists
from transfer.tasks.draw import README_MARKER, _person_annotation, _rng, _save_jpeg, people_scene
from transfer.tasks.categories import person_category
from transfer.tasks.coco import coco_style_metrics


KEYPOINT_SPLITS: tuple[str, ...] = ("train2017", "val2017")


def check_coco_keypoints(root: Path | str, splits: Sequence[str] = KEYPOINT_SPLITS,
                         notes: list[str] | None = None) -> list[str]:
    """Check ``<root>/coco/annotations/person_keypoints_<split>.json`` (``keypoints_coco_2017_*``): one person
    category with 17 keypoint names, every image, and each annotation's box and ``keypoints`` (17 x [x, y, v],
    v in 0-2, ``num_keypoints`` matching)."""
    root, problems = Path(root), Problems()
    notes = [] if notes is None else notes
    for split in splits:
        path = root / "coco" / "annotations" / f"person_keypoints_{split}.json"
        image_dir = root / "coco" / split
        doc = _load_lists(path, problems, "COCO 2017 person keypoints json")
        if doc is None:
            continue
        cats = doc["categories"]
        if not (len(cats) == 1 and isinstance(cats[0], dict) and cats[0].get("id") == 1
                and cats[0].get("name") == "person" and len(cats[0].get("keypoints") or []) == 17):
            problems.add("bad-category", f"{path}: 'categories' must be COCO's one person category (id 1) with its 17 "
                                         "keypoint names, as Detectron2's keypoints_coco metadata expects")
        image_ids = _check_coco_images(path, doc["images"], image_dir, problems)
        with_keypoints = set()
        for k, ann in enumerate(doc["annotations"]):
            if not isinstance(ann, dict) or any(key not in ann for key in (*_ANN_KEYS, "keypoints")):
                problems.add("bad-annotation", f"{path}: annotations[{k}] needs {', '.join(_ANN_KEYS)}, keypoints")
                continue
            where = f"{path}: annotation id {ann['id']}"
            if ann["image_id"] not in image_ids:
                problems.add("unknown-image-id", f"{where}: image_id {ann['image_id']} is not in 'images'")
            kps = ann["keypoints"]
            if not (isinstance(kps, list) and len(kps) == 51 and all(isinstance(v, (int, float)) for v in kps)
                    and all(v in (0, 1, 2) for v in kps[2::3])):
                problems.add("bad-keypoints", f"{where}: keypoints must be 17 x [x, y, v] with v 0, 1 or 2")
                continue
            labelled = sum(v > 0 for v in kps[2::3])
            if "num_keypoints" in ann and ann["num_keypoints"] != labelled:
                problems.add("bad-keypoints", f"{where}: num_keypoints {ann['num_keypoints']} but {labelled} labelled")
            if labelled:
                with_keypoints.add(ann["image_id"])
        if image_ids and not with_keypoints:
            problems.add("no-annotations", f"{path}: no image has a person with labelled keypoints")
        elif len(image_ids) > len(with_keypoints):
            notes.append(f"{path}: {len(image_ids) - len(with_keypoints)} of {len(image_ids)} images have no labelled "
                         "keypoint; Detectron2 trains on the others (MODEL.ROI_KEYPOINT_HEAD.MIN_KEYPOINTS_PER_IMAGE)")
    return problems.lines()




def write_keypoints(root: Path, splits: dict[str, int], seed: int) -> Path:
    """Write ``coco/annotations/person_keypoints_<split>2017.json`` and its images in ``coco/<split>2017/``
    (ids from 900001, apart from the instances json's images)."""
    base = root / "coco"
    (base / "annotations").mkdir(parents=True, exist_ok=True)
    image_id = 900000
    for split, n in splits.items():
        rng = _rng(seed, f"keypoints_{split}")
        images, annotations = [], []
        for _ in range(n):
            image_id += 1
            canvas, people = people_scene(rng, int(rng.integers(1, 3)))
            file_name = f"{image_id:012d}.jpg"
            _save_jpeg(canvas, base / f"{split}2017" / file_name)
            images.append({"id": image_id, "file_name": file_name, "height": canvas.shape[0],
                           "width": canvas.shape[1]})
            for person in people:
                annotations.append(_person_annotation(person, len(annotations) + 1, image_id, rng))
        doc = {"info": {"description": f"{README_MARKER} (seed {seed})"}, "licenses": [], "images": images,
               "annotations": annotations, "categories": [person_category()]}
        (base / "annotations" / f"person_keypoints_{split}2017.json").write_text(json.dumps(doc, separators=(",", ":")))
    return base


# ----------------------------------------------------------------------------- the task and the runner


def _evaluator(cfg: Any, name: str, out: str) -> Any:
    from transfer.evaluators import COCOEvaluatorZeroWithoutDetections

    return COCOEvaluatorZeroWithoutDetections(name, tasks=("bbox", "keypoints"), output_dir=out, use_fast_impl=False,
                                              kpt_oks_sigmas=cfg.TEST.KEYPOINT_OKS_SIGMAS)


KEYPOINTS = Task("coco_keypoints", ("keypoints_coco_",), _evaluator,
                 lambda r: coco_style_metrics(r, {"keypoints": "APkp", "bbox": "APbb"}),
                 title="COCO keypoint detection", paper_table="Table 6", metrics=("APkp", "APkp50", "APkp75"), short="COCO keypoints",
                 applies=lambda cfg: bool(cfg.MODEL.KEYPOINT_ON))


def has_keypoints(root: Path) -> bool:
    return (root / "coco" / "annotations" / "person_keypoints_train2017.json").is_file()


def _spec(args: argparse.Namespace) -> RunSpec:
    return RunSpec(
        name="coco_keypoints", prog="run_coco_keypoints.sh", table="Table 6", dataset="COCO 2017 person keypoints",
        has_data=has_keypoints, check=lambda root, notes: check_coco_keypoints(root, notes=notes),
        config=CONFIGS / "keypoints" / "coco_keypoints_R_50_FPN_2x.yaml", run_dir="R50-FPN-2x",
        tiny_config=CONFIGS / "tiny" / "coco_keypoints_R_18_FPN_tiny.yaml", tiny_run_dir="R18-FPN",
    )


def _write_tiny(root: Path, seed: int, sizes: dict[str, int]) -> str:
    write_keypoints(root, {"train": sizes["keypoints_train"], "val": sizes["keypoints_val"]}, seed)
    return f"train2017 {sizes['keypoints_train']}, val2017 {sizes['keypoints_val']}"


BENCHMARK = register(Benchmark(
    name="coco_keypoints", summary="COCO keypoint detection, Keypoint R-CNN (MoCo v1 Table 6)", tasks=(KEYPOINTS,),
    dataset="COCO 2017 person keypoints", has_data=has_keypoints, check=check_coco_keypoints,
    needs=("coco/train2017", "coco/val2017", "coco/annotations/person_keypoints_train2017.json",
           "coco/annotations/person_keypoints_val2017.json"),
    spec=_spec, write_tiny=_write_tiny, tiny_sizes={"keypoints_train": 16, "keypoints_val": 8},
))
