"""Cityscapes (MoCo v1 Table 6): instance segmentation (Mask R-CNN R50-FPN with SyncBN on Detectron2's Cityscapes
recipe, 24k iterations, mask AP and AP50 from the official cityscapesscripts evaluator) and semantic segmentation
(the paper's FCN-16s head on R50 with a dilated res5, ``transfer/semseg.py``; crop 769, 90k iterations, mIoU over
the 19 classes); configs in ``transfer/configs/cityscapes/``.

All the suite knows about it: the two tasks and their evaluators, the dataset check (images, polygons, label
images and train ids per split), the tiny street-like ``cityscapes/`` layout, and the runner entry
(``bash benchmarks/run_cityscapes.sh --task instance|semantic``). Detectron2 registers the datasets.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

from transfer.tasks.registry import register
from transfer.tasks.base import CONFIGS, Benchmark, RunSpec, Task
from transfer.tasks.checks import Problems, _listdir
from transfer.tasks.draw import RGB, Point, _forced, _regular, _rng, paint, rasterize
from transfer.tasks.images import image_problem


CITYSCAPES_SPLITS: tuple[str, ...] = ("train", "val")


CITYSCAPES_GT_SUFFIXES: dict[str, tuple[str, ...]] = {
    # from_json=True loader reads polygons.json; the cityscapes evaluators read the PNGs.
    "instance_seg": ("gtFine_polygons.json", "gtFine_instanceIds.png", "gtFine_labelIds.png"),
    "sem_seg": ("gtFine_polygons.json", "gtFine_labelTrainIds.png", "gtFine_labelIds.png"),
}


def check_cityscapes(root: Path | str, task: str = "instance_seg",
                     splits: Sequence[str] = CITYSCAPES_SPLITS, notes: list[str] | None = None) -> list[str]:
    """Check ``<root>/cityscapes/{leftImg8bit,gtFine}/<split>/<city>/`` for ``task``.

    Beyond the files: every ``*_gtFine_polygons.json`` parses with the keys Detectron2 reads; for
    ``instance_seg`` its labels are Cityscapes label names and its polygons have >= 3 points; for
    ``sem_seg`` every ``*_gtFine_labelTrainIds.png`` holds only train ids 0-18 and 255 (ignore).
    """
    if task not in CITYSCAPES_GT_SUFFIXES:
        raise ValueError(f"task must be one of {sorted(CITYSCAPES_GT_SUFFIXES)}, not {task!r}")
    root, problems = Path(root), Problems()
    notes = [] if notes is None else notes
    base = root / "cityscapes"
    for split in splits:
        _check_cityscapes_split(base, split, task, problems, notes)
    return problems.lines()


def _cityscapes_polygons_problems(path: Path, instance_task: bool) -> tuple[list[str], int]:
    """Problems of one ``*_gtFine_polygons.json`` and its number of thing instances (Detectron2's 8 classes)."""
    from cityscapesscripts.helpers.labels import name2label

    from core.files import read_bytes

    try:
        doc = json.loads(read_bytes(path, 64 << 20))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc).splitlines()[0][:100]
        return [f"{path}: cannot read as JSON ({why or type(exc).__name__})"], 0
    if not isinstance(doc, dict) or not all(isinstance(doc.get(k), int) for k in ("imgHeight", "imgWidth")):
        return [f"{path}: needs integer 'imgHeight' and 'imgWidth' (Detectron2 reads the image size there)"], 0
    if not instance_task:
        return [], 0
    if not isinstance(doc.get("objects"), list):
        return [f"{path}: needs an 'objects' list (the instance annotations Detectron2 reads)"], 0
    out, things = [], 0
    for k, obj in enumerate(doc["objects"]):
        if not isinstance(obj, dict) or "deleted" in obj:
            continue
        name = str(obj.get("label"))
        label = name2label.get(name[: -len("group")] if name.endswith("group") else name)
        if label is None:
            out.append(f"{path}: objects[{k}] has unknown label {name!r} (not a cityscapesscripts label name)")
            continue
        poly = obj.get("polygon")
        if not (isinstance(poly, list) and len(poly) >= 3 and all(isinstance(p, list) and len(p) == 2 for p in poly)):
            out.append(f"{path}: objects[{k}] ({name!r}) needs a 'polygon' of >= 3 [x, y] points")
            continue
        things += label.hasInstances and not label.ignoreInEval
    return out, things


def _train_ids_problem(path: Path) -> str | None:
    import numpy as np
    from PIL import Image

    from core.files import irregular

    if irregular(path):
        return f"{path}: {irregular(path)}"
    try:
        with Image.open(path) as img:
            counts = np.bincount(np.asarray(img, dtype=np.uint8).ravel(), minlength=256)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        return f"{path}: cannot read as an 8-bit label image ({str(exc).splitlines()[0][:120]})"
    bad = [v for v in np.nonzero(counts)[0].tolist() if v > 18 and v != 255]
    if bad:
        return (f"{path}: holds values {bad[:5]} that are neither train ids 0-18 nor 255 (ignore); regenerate it "
                "with csCreateTrainIdLabelImgs (cityscapesscripts)")
    return None


def _check_cityscapes_split(base: Path, split: str, task: str, problems: Problems, notes: list[str]) -> None:
    suffixes = CITYSCAPES_GT_SUFFIXES[task]
    frames = without_things = 0
    img_root, gt_root = base / "leftImg8bit" / split, base / "gtFine" / split
    for d in (img_root, gt_root):
        if not d.is_dir():
            problems.add("missing-dir", f"{d}: directory missing")
    if not img_root.is_dir():
        return
    entries = sorted(img_root.iterdir())
    for stray in (p for p in entries if not p.is_dir()):
        problems.add("stray-file", f"{stray}: not a city folder (Detectron2 lists every entry of "
                                   f"{img_root} as a city); remove it")
    cities = [p.name for p in entries if p.is_dir()]
    if not cities:
        problems.add("missing-dir", f"{img_root}: no city folders with *_leftImg8bit.png images")
    for city in cities:
        gt_files = _listdir(gt_root / city)
        if gt_root.is_dir() and not gt_files:
            problems.add("missing-dir", f"{gt_root / city}: gtFine city folder missing or empty")
        for name in sorted(os.listdir(img_root / city)):
            if not name.endswith("_leftImg8bit.png"):
                problems.add("stray-file", f"{img_root / city / name}: not a *_leftImg8bit.png image "
                                           "(Detectron2 asserts every file there is one); remove it")
                continue
            stem = name[: -len("leftImg8bit.png")]
            frames += 1
            line = image_problem(img_root / city / name)
            if line:
                problems.add("bad-image", line)
            if stem + "gtFine_polygons.json" in gt_files:
                lines, things = _cityscapes_polygons_problems(gt_root / city / (stem + "gtFine_polygons.json"),
                                                              task == "instance_seg")
                for line in lines:
                    problems.add("bad-polygons", line)
                without_things += not lines and not things
            if task == "sem_seg" and stem + "gtFine_labelTrainIds.png" in gt_files:
                line = _train_ids_problem(gt_root / city / (stem + "gtFine_labelTrainIds.png"))
                if line:
                    problems.add("bad-trainids", line)
            for suffix in suffixes:
                if not gt_files or stem + suffix in gt_files:
                    continue  # a missing/empty city folder is reported once above
                gt = gt_root / city / (stem + suffix)
                if suffix == "gtFine_labelTrainIds.png":
                    problems.add("missing-trainids", f"{gt}: missing; create the labelTrainIds images with "
                                                     f"`CITYSCAPES_DATASET={base} csCreateTrainIdLabelImgs` "
                                                     "(from cityscapesscripts)")
                else:
                    problems.add("missing-gt", f"{gt}: missing gtFine counterpart of "
                                               f"{img_root / city / name}")
    if task != "instance_seg" or not without_things:
        return
    if without_things == frames:
        problems.add("no-annotations", f"{gt_root}: none of its {frames} frames has an instance of the 8 thing "
                                       "classes; there is nothing to train on or to evaluate")
    else:
        notes.append(f"{gt_root}: {without_things} of {frames} frames have no instance of the 8 thing classes; "
                     "Detectron2 leaves them out of training (DATALOADER.FILTER_EMPTY_ANNOTATIONS) and keeps them "
                     "in evaluation")


CITYSCAPES_THING_CLASSES: tuple[str, ...] = (
    "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle",
)


CITYSCAPES_STUFF_USED: tuple[str, ...] = (
    "road", "sidewalk", "building", "pole", "vegetation", "terrain", "sky",
)


CITYSCAPES_SIZE = (256, 128)  # (width, height)


CITYSCAPES_CITIES = {"train": ("aachen", "bochum"), "val": ("frankfurt",)}


# Render colours (not the Cityscapes label palette): distinct per thing class.
_CS_RENDER: dict[str, RGB] = {
    "person": (200, 40, 70), "rider": (250, 120, 20), "car": (30, 70, 200),
    "truck": (20, 120, 50), "bus": (230, 200, 30), "train": (30, 180, 190),
    "motorcycle": (190, 40, 190), "bicycle": (235, 235, 235),
    "road": (75, 75, 80), "sidewalk": (160, 150, 155), "building": (115, 105, 95),
    "pole": (110, 110, 110), "vegetation": (60, 120, 40), "terrain": (150, 140, 90),
    "sky": (150, 185, 230), "ego vehicle": (25, 25, 25),
}


_VEHICLES = {"car", "truck", "bus", "train"}


# Unit outlines in a box (x in [0, 1] left->right, y in [0, 1] top->bottom) and base sizes (w, h) px.
_CS_SHAPES: dict[str, tuple[list[Point], tuple[float, float]]] = {
    "person": ([(0.35, 0), (0.65, 0), (0.65, 0.18), (1, 0.25), (0.9, 0.6), (0.75, 0.6), (0.75, 1),
                (0.55, 1), (0.5, 0.65), (0.45, 1), (0.25, 1), (0.25, 0.6), (0.1, 0.6), (0, 0.25),
                (0.35, 0.18)], (12, 32)),
    "rider": ([(0.45, 0), (0.75, 0), (0.75, 0.2), (1, 0.45), (0.85, 0.55), (0.7, 0.45), (0.7, 1),
               (0.3, 1), (0.2, 0.55), (0, 0.5), (0.45, 0.2)], (14, 28)),
    "car": ([(0, 0.45), (0.2, 0.4), (0.3, 0), (0.75, 0), (0.85, 0.4), (1, 0.5), (1, 1), (0, 1)], (36, 16)),
    "truck": ([(0, 0), (0.7, 0), (0.7, 0.3), (0.9, 0.3), (1, 0.55), (1, 1), (0, 1)], (48, 26)),
    "bus": ([(0, 0.06), (0.04, 0), (1, 0), (1, 1), (0, 1)], (62, 26)),
    "train": ([(0, 0.15), (0.06, 0), (0.94, 0), (1, 0.15), (1, 1), (0, 1)], (92, 28)),
    "motorcycle": ([(0, 0.5), (0.3, 0.3), (0.45, 0), (0.7, 0.1), (0.75, 0.4), (1, 0.5), (0.9, 1),
                    (0.1, 1)], (22, 14)),
}


def _bicycle_outline(r: float, d: float, bar: float) -> list[Point]:
    """Two wheels of radius ``r`` at x = +-d joined by a bar; origin at the bottom centre."""
    a = math.asin(bar / r)
    pts = []
    for cx, start, stop in ((-d, a, 2 * math.pi - a), (d, math.pi + a, 3 * math.pi - a)):
        for k in range(9):
            t = start + (stop - start) * k / 8
            pts.append((cx + r * math.cos(t), -r - r * math.sin(t)))
    return pts


def _thing_polygon(label: str, x: float, y_bottom: float, scale: float) -> list[list[int]]:
    if label == "bicycle":
        pts = [(x + px * scale, y_bottom + py * scale) for px, py in _bicycle_outline(5.5, 7.5, 1.6)]
    else:
        unit, (bw, bh) = _CS_SHAPES[label]
        pts = [(x + (u - 0.5) * bw * scale, y_bottom - (1 - v) * bh * scale) for u, v in unit]
    return [[int(round(px)), int(round(py))] for px, py in pts]


def _rect(x0: float, y0: float, x1: float, y1: float) -> list[list[int]]:
    x0, y0, x1, y1 = (int(round(v)) for v in (x0, y0, x1, y1))
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]


def _stuff_objects(rng: np.random.Generator, w: int, h: int, horizon: int, ego: int) -> list[dict]:
    objs = [{"label": "sky", "polygon": _rect(0, 0, w, h)}]
    x = -int(rng.integers(0, 10))
    while x < w:
        bw = int(rng.integers(20, 50))
        if rng.random() > 0.2:
            objs.append({"label": "building",
                         "polygon": _rect(x, rng.integers(6, horizon - 12), x + bw, horizon + 2)})
        x += bw
    for _ in range(int(rng.integers(1, 4))):
        cx, r = rng.uniform(0, w), rng.uniform(8, 16)
        pts = [[int(round(cx + px * 2 * r)), int(round(horizon - 2 + py * 2 * r))] for px, py in _regular(8)]
        objs.append({"label": "vegetation", "polygon": pts})
    g = horizon + 3
    cx = w / 2 + rng.uniform(-30, 30)
    objs.append({"label": "sidewalk", "polygon": _rect(0, g, w, h)})
    side = 0 if rng.random() < 0.5 else w
    objs.append({"label": "terrain",
                 "polygon": [[side, g], [int(cx + (-70 if side == 0 else 70)), g], [side, g + 24]]})
    objs.append({"label": "road", "polygon": [[int(cx - 24), g], [int(cx + 24), g],
                                              [int(cx + 170), h], [int(cx - 170), h]]})
    for _ in range(int(rng.integers(1, 3))):
        px = rng.choice([rng.uniform(4, w * 0.2), rng.uniform(w * 0.8, w - 4)])
        objs.append({"label": "pole", "polygon": _rect(px, rng.integers(4, horizon - 8), px + 2,
                                                       rng.integers(g + 6, h - ego - 4))})
    return objs


def _thing_objects(rng: np.random.Generator, labels: list[str], w: int, h: int, horizon: int,
                   ego: int) -> list[dict]:
    placed: list[tuple[float, dict]] = []
    for label in labels:
        y_bottom = float(rng.uniform(horizon + 14, h - ego - 1))
        scale = 0.8 + 0.5 * (y_bottom - horizon) / (h - horizon)
        width = (2 * (5.5 + 7.5) if label == "bicycle" else _CS_SHAPES[label][1][0]) * scale
        x = float(rng.uniform(width / 2 + 1, w - width / 2 - 1))
        placed.append((y_bottom, {"label": label, "polygon": _thing_polygon(label, x, y_bottom, scale)}))
    placed.sort(key=lambda t: t[0])  # far (small y) first; nearer objects occlude them
    return [obj for _, obj in placed]


@dataclass
class CityscapesMaps:
    """Everything one Cityscapes frame needs: RGB image and the gtFine label images."""

    rgb: np.ndarray
    label_ids: np.ndarray
    train_ids: np.ndarray
    instance_ids: np.ndarray
    color: np.ndarray


def render_cityscapes(objects: list[dict], w: int, h: int, rng: np.random.Generator | None) -> CityscapesMaps:
    """Rasterize polygons in order, later ones overwriting earlier ones, as cityscapesscripts does.

    Instances get ``labelId * 1000 + k`` with ``k`` counting drawn polygons per class (from 0).
    With ``rng`` None the RGB image is left black (label maps only).
    """
    from cityscapesscripts.helpers.labels import labels, name2label

    unlabeled = name2label["unlabeled"]
    label_ids = np.full((h, w), unlabeled.id, np.uint8)
    train_ids = np.full((h, w), unlabeled.trainId, np.uint8)
    instance_ids = np.full((h, w), unlabeled.id, np.uint16)
    color = np.zeros((h, w, 4), np.uint8)
    color[:] = (*unlabeled.color, 255)
    rgb = np.zeros((h, w, 3), np.uint8)  # the first polygon (sky) covers the frame
    counts = {lab.name: 0 for lab in labels if lab.hasInstances}
    for obj in objects:
        lab = name2label[obj["label"]]
        mask = rasterize([tuple(p) for p in obj["polygon"]], w, h)
        label_ids[mask], train_ids[mask] = lab.id, lab.trainId
        color[mask] = (*lab.color, 255)
        if lab.hasInstances:
            instance_ids[mask] = lab.id * 1000 + counts[lab.name]
            counts[lab.name] += 1
        else:
            instance_ids[mask] = lab.id
        if rng is not None:
            _paint_cityscapes(rgb, mask, lab.name, rng)
    return CityscapesMaps(rgb, label_ids, train_ids, instance_ids, color)


def _paint_cityscapes(rgb: np.ndarray, mask: np.ndarray, name: str, rng: np.random.Generator) -> None:
    if name == "sky":
        paint(rgb, mask, _CS_RENDER[name], rng, jitter=12, shade=0.1)
        return
    paint(rgb, mask, _CS_RENDER[name], rng, jitter=20 if name == "building" else 10)
    if name in _VEHICLES and mask.any():  # darker window band in the upper third
        ys, _ = np.nonzero(mask)
        top = ys.min() + (ys.max() - ys.min()) * 0.1
        band = mask.copy()
        band[: int(top)] = False
        band[int(ys.min() + (ys.max() - ys.min()) * 0.4):] = False
        rgb[band] = (rgb[band] * 0.55).astype(np.uint8)


def _instances_visible(objects: list[dict], maps: CityscapesMaps, w: int, h: int,
                       min_pixels: int = 110, min_fraction: float = 0.5) -> bool:
    """Every thing instance keeps enough visible pixels (Cityscapes eval ignores < 100 px)."""
    from cityscapesscripts.helpers.labels import name2label

    counts: dict[str, int] = {}
    for obj in objects:
        if obj["label"] not in CITYSCAPES_THING_CLASSES:
            continue
        k = counts.get(obj["label"], 0)
        counts[obj["label"]] = k + 1
        visible = int((maps.instance_ids == name2label[obj["label"]].id * 1000 + k).sum())
        full = int(rasterize([tuple(p) for p in obj["polygon"]], w, h).sum())
        if visible < max(min_pixels, min_fraction * full):
            return False
    return True


def cityscapes_scene(rng: np.random.Generator, forced: Sequence[str], tries: int = 50,
                     ) -> tuple[dict, CityscapesMaps]:
    """A street-like frame containing ``forced`` thing classes plus 1-3 random ones."""
    w, h = CITYSCAPES_SIZE
    for _ in range(tries):
        horizon, ego = int(rng.integers(44, 57)), int(rng.integers(5, 9))
        extras = [str(c) for c in rng.choice(CITYSCAPES_THING_CLASSES, size=int(rng.integers(1, 4)))]
        objects = _stuff_objects(rng, w, h, horizon, ego)
        objects += _thing_objects(rng, list(forced) + extras, w, h, horizon, ego)
        objects.append({"label": "ego vehicle", "polygon": _rect(0, h - ego, w, h)})
        maps = render_cityscapes(objects, w, h, None)
        if _instances_visible(objects, maps, w, h):
            doc = {"imgHeight": h, "imgWidth": w, "objects": objects}
            return doc, render_cityscapes(objects, w, h, rng)
    raise RuntimeError(f"could not lay out a Cityscapes frame with {list(forced)}")


def write_cityscapes(root: Path, splits: dict[str, int], seed: int) -> Path:
    """Write ``cityscapes/leftImg8bit/<split>/<city>/`` and the matching ``gtFine`` files."""
    base = root / "cityscapes"
    for split, n in splits.items():
        rng = _rng(seed, f"cityscapes_{split}")
        cities = CITYSCAPES_CITIES[split]
        for i in range(n):
            city = cities[i % len(cities)]
            stem = f"{city}_000000_{i:06d}"
            doc, maps = cityscapes_scene(rng, _forced(CITYSCAPES_THING_CLASSES, i, n))
            img_dir, gt_dir = base / "leftImg8bit" / split / city, base / "gtFine" / split / city
            img_dir.mkdir(parents=True, exist_ok=True)
            gt_dir.mkdir(parents=True, exist_ok=True)
            Image.fromarray(maps.rgb).save(img_dir / f"{stem}_leftImg8bit.png")
            Image.fromarray(maps.label_ids).save(gt_dir / f"{stem}_gtFine_labelIds.png")
            Image.fromarray(maps.train_ids).save(gt_dir / f"{stem}_gtFine_labelTrainIds.png")
            Image.fromarray(maps.instance_ids).save(gt_dir / f"{stem}_gtFine_instanceIds.png")
            Image.fromarray(maps.color).save(gt_dir / f"{stem}_gtFine_color.png")
            (gt_dir / f"{stem}_gtFine_polygons.json").write_text(json.dumps(doc, indent=1))
    return base


# ----------------------------------------------------------------------------- the tasks and the runner


def _instance_evaluator(cfg: Any, name: str, out: str) -> Any:
    from transfer.evaluators import CityscapesInstanceEvaluatorInFolder

    return CityscapesInstanceEvaluatorInFolder(name, out)


def sem_seg_evaluator(cfg: Any, name: str, out: str) -> Any:
    """mIoU over the dataset's classes (Detectron2's SemSegEvaluator)."""
    from detectron2.evaluation import SemSegEvaluator

    return SemSegEvaluator(name, distributed=True, output_dir=out)


INSTANCE = Task("cityscapes_instance", ("cityscapes_fine_instance_seg_",), _instance_evaluator,
                lambda r: {"APmk": r["segm"]["AP"], "APmk50": r["segm"]["AP50"]},
                title="Cityscapes instance segmentation (Mask R-CNN)", paper_table="Table 6", metrics=("APmk", "APmk50"),
                short="Cityscapes inst. seg.")
SEMANTIC = Task("cityscapes_semseg", ("cityscapes_fine_sem_seg_",), sem_seg_evaluator,
                lambda r: {"mIoU": r["sem_seg"]["mIoU"]}, title="Cityscapes semantic segmentation",
                paper_table="Table 6", metrics=("mIoU",), short="Cityscapes sem. seg.")
VARIANTS = {  # --task: (dataset check task, full config, run dir, tiny config, tiny run dir)
    "instance": ("instance_seg", "cityscapes/cityscapes_instance_R_50_FPN_24k.yaml", "instance-R50-FPN",
                 "tiny/cityscapes_instance_R_18_FPN_tiny.yaml", "instance-R18-FPN"),
    "semantic": ("sem_seg", "cityscapes/cityscapes_semseg_R_50_FCN16s_90k.yaml", "semantic-R50-dilated-FCN16s",
                 "tiny/cityscapes_semseg_R_18_FCN16s_tiny.yaml", "semantic-R18-dilated-FCN16s"),
}


def has_cityscapes(root: Path) -> bool:
    return (root / "cityscapes" / "leftImg8bit").is_dir()


def _add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", choices=sorted(VARIANTS), default="instance",
                   help="instance (Mask R-CNN, APmk) or semantic (FCN-16s, mIoU) segmentation")


def _spec(args: argparse.Namespace) -> RunSpec:
    check_task, config, run_dir, tiny_config, tiny_run_dir = VARIANTS[args.task]
    return RunSpec(
        name="cityscapes", prog="run_cityscapes.sh", table="Table 6", dataset="Cityscapes", has_data=has_cityscapes,
        check=lambda root, notes: check_cityscapes(root, check_task, notes=notes),
        config=CONFIGS / config, run_dir=run_dir, tiny_config=CONFIGS / tiny_config, tiny_run_dir=tiny_run_dir,
    )


def _write_tiny(root: Path, seed: int, sizes: dict[str, int]) -> str:
    write_cityscapes(root, {"train": sizes["cityscapes_train"], "val": sizes["cityscapes_val"]}, seed)
    return f"train {sizes['cityscapes_train']}, val {sizes['cityscapes_val']}"


BENCHMARK = register(Benchmark(
    name="cityscapes", summary="Cityscapes instance (APmk) and semantic (mIoU) segmentation (MoCo v1 Table 6)",
    tasks=(INSTANCE, SEMANTIC), dataset="Cityscapes", has_data=has_cityscapes, check=check_cityscapes,
    needs=("cityscapes/leftImg8bit/train", "cityscapes/leftImg8bit/val", "cityscapes/gtFine/train",
           "cityscapes/gtFine/val"),
    add_args=_add_args, spec=_spec, check_options=("instance_seg", "sem_seg"), write_tiny=_write_tiny,
    tiny_sizes={"cityscapes_train": 16, "cityscapes_val": 8}, tiny_dirs=("cityscapes",),
))
