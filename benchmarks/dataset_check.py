"""Validate the on-disk dataset layouts Detectron2's builtin registrations read, before training.

``check_voc(root)``, ``check_coco(root)`` and ``check_cityscapes(root, task)`` return a list of
problem lines (empty means OK); each names the offending file and what to do about it. At most
``MAX_PER_KIND`` lines are kept per kind of problem, followed by a count of the rest. Each also takes a
``notes`` list that receives facts worth knowing that are not errors (e.g. how many images have no
annotations and what Detectron2 does with them, or which real-world XML forms are read leniently).

What is checked is what Detectron2's loaders and the evaluators read: the files each split lists, every
annotation field they parse (VOC XML through the same reader the loader and evaluator use,
``transfer/voc_xml.py``), and every image (present, complete — a JPEG cut in half is found without
decoding it — and of the size the annotations state; ``benchmarks/image_files.py``). CLI::

    python -m benchmarks.dataset_check voc|coco|cityscapes [--datasets DIR] [--task sem_seg]

``--datasets`` (the runners' flag too) defaults to ``$DETECTRON2_DATASETS`` (or ``datasets``), as in Detectron2.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

from benchmarks.image_files import image_problem

MAX_PER_KIND = 5
VOC_SPLITS: tuple[tuple[str, str], ...] = (("VOC2007", "trainval"), ("VOC2007", "test"),
                                           ("VOC2012", "trainval"))
COCO_SPLITS: tuple[str, ...] = ("train2017", "val2017")
CITYSCAPES_SPLITS: tuple[str, ...] = ("train", "val")
CITYSCAPES_GT_SUFFIXES: dict[str, tuple[str, ...]] = {
    # from_json=True loader reads polygons.json; the cityscapes evaluators read the PNGs.
    "instance_seg": ("gtFine_polygons.json", "gtFine_instanceIds.png", "gtFine_labelIds.png"),
    "sem_seg": ("gtFine_polygons.json", "gtFine_labelTrainIds.png", "gtFine_labelIds.png"),
}


class DatasetLayoutError(RuntimeError):
    """Raised by :func:`require_layout` when a dataset layout has problems."""


class Problems:
    """Problem lines grouped by kind; keeps the first ``cap`` of each kind and counts the rest."""

    def __init__(self, cap: int = MAX_PER_KIND) -> None:
        self.cap = cap
        self._lines: dict[str, list[str]] = {}
        self._dropped: Counter[str] = Counter()

    def add(self, kind: str, line: str) -> None:
        lines = self._lines.setdefault(kind, [])
        if line in lines:
            return
        if len(lines) < self.cap:
            lines.append(line)
        else:
            self._dropped[kind] += 1

    def lines(self) -> list[str]:
        out: list[str] = []
        for kind, lines in self._lines.items():
            out += lines
            if self._dropped[kind]:
                out.append(f"... and {self._dropped[kind]} more '{kind}' problem(s) like the above")
        return out


def default_root() -> Path:
    """``$DETECTRON2_DATASETS`` or ``datasets``, the root Detectron2's builtin datasets use."""
    return Path(os.path.expanduser(os.environ.get("DETECTRON2_DATASETS", "datasets")))


def _listdir(path: Path) -> set[str]:
    try:
        return set(os.listdir(path))
    except OSError:
        return set()


# ----------------------------------------------------------------------------- Pascal VOC


def voc_class_names() -> tuple[str, ...]:
    """Detectron2's 20 VOC ``CLASS_NAMES``, read from its source unless it is already imported."""
    if "detectron2.data" in sys.modules:
        from detectron2.data.datasets.pascal_voc import CLASS_NAMES

        return tuple(CLASS_NAMES)
    import importlib.util

    spec = importlib.util.find_spec("detectron2")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("detectron2 is needed for the VOC class names")
    src = Path(list(spec.submodule_search_locations)[0]) / "data" / "datasets" / "pascal_voc.py"
    for node in ast.parse(src.read_text()).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "CLASS_NAMES" for t in node.targets):
            return tuple(ast.literal_eval(node.value))
    raise ImportError(f"CLASS_NAMES not found in {src}")


def _read_voc_xml(path: Path, class_names: Sequence[str] | None,
                  lenient: Counter | None) -> tuple[list[str], tuple[int, int] | None]:
    """(problems, (width, height) or None when unreadable)."""
    from transfer.voc_xml import VocXmlError, box_problems, read_voc_xml

    try:
        ann = read_voc_xml(path)
    except VocXmlError as exc:
        return [str(exc)], None
    if lenient is not None and ann.lenient:
        lenient.update(ann.lenient)
        lenient["_files"] += 1
    return box_problems(ann, class_names), (ann.width, ann.height)


def check_voc(root: Path | str, splits: Sequence[tuple[str, str]] = VOC_SPLITS, notes: list[str] | None = None,
              class_names: Sequence[str] | None = None) -> list[str]:
    """Check ``<root>/VOC20xx/{JPEGImages,Annotations,ImageSets/Main/<split>.txt}`` (``class_names``:
    default Detectron2's 20 VOC classes)."""
    root, problems = Path(root), Problems()
    notes = [] if notes is None else notes
    class_names = voc_class_names() if class_names is None else class_names
    for dirname, split in splits:
        check_voc_split(root / dirname, split, class_names, problems, notes)
    return problems.lines()


def check_voc_split(base: Path, split: str, class_names: Sequence[str] | None, problems: Problems,
                    notes: list[str]) -> None:
    """One VOC-layout split: folders, split file, and every listed image and annotation."""
    from transfer.voc_xml import lenient_summary

    if not base.is_dir():
        problems.add("missing-dir", f"{base}: directory missing (Pascal VOC devkit folder with "
                                    "JPEGImages/, Annotations/, ImageSets/Main/)")
        return
    for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
        if not (base / sub).is_dir():
            problems.add("missing-dir", f"{base / sub}: directory missing")
    split_file = base / "ImageSets" / "Main" / f"{split}.txt"
    if not split_file.is_file():
        problems.add("missing-split", f"{split_file}: split file missing")
        return
    ids = [line.split()[0] for line in split_file.read_text().splitlines() if line.strip()]
    if len(ids) < 2:
        problems.add("short-split", f"{split_file}: lists {len(ids)} image id(s); Detectron2's "
                                    "np.loadtxt-based reader needs at least 2")
    has_jpegs, has_xmls = (base / "JPEGImages").is_dir(), (base / "Annotations").is_dir()
    jpegs, xmls = _listdir(base / "JPEGImages"), _listdir(base / "Annotations")
    lenient: Counter = Counter()
    for file_id in ids:  # a missing folder was reported above, not once per image
        size = None
        if has_xmls:
            if f"{file_id}.xml" not in xmls:
                problems.add("missing-xml", f"{base / 'Annotations' / (file_id + '.xml')}: missing "
                                            f"(listed in {split_file})")
            else:
                lines, size = _read_voc_xml(base / "Annotations" / f"{file_id}.xml", class_names, lenient)
                for line in lines:
                    problems.add("bad-xml", line)
        if has_jpegs:
            jpeg = base / "JPEGImages" / f"{file_id}.jpg"
            if f"{file_id}.jpg" not in jpegs:
                problems.add("missing-jpeg", f"{jpeg}: missing (listed in {split_file})")
            else:
                line = image_problem(jpeg, size)
                if line:
                    problems.add("bad-image", line)
    files = lenient.pop("_files", 0)
    if lenient:
        notes.append(lenient_summary(lenient, files, f"{base} {split}") +
                     "; the loader and the VOC evaluator read them the same way")


# ----------------------------------------------------------------------------- COCO


def _load_json(path: Path, problems: Problems) -> Any:
    try:
        with open(path, "rb") as f:
            return json.load(f)
    except json.JSONDecodeError as exc:
        problems.add("bad-json", f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}, "
                                 f"column {exc.colno})")
    except (OSError, UnicodeDecodeError) as exc:
        problems.add("bad-json", f"{path}: cannot read ({exc})")
    return None


def _valid_segmentation(segm: Any) -> bool:
    if isinstance(segm, dict):
        return "counts" in segm and "size" in segm
    if isinstance(segm, list):
        return any(isinstance(p, list) and len(p) >= 6 and len(p) % 2 == 0 for p in segm)
    return False


def _check_coco_categories(path: Path, categories: list, problems: Problems) -> set:
    from benchmarks.tiny_data import coco_thing_categories

    cats = [c for c in categories if isinstance(c, dict) and "id" in c and "name" in c]
    if len(cats) != len(categories):
        problems.add("bad-category", f"{path}: every entry of 'categories' needs 'id' and 'name'")
    names = [c["name"] for c in sorted(cats, key=lambda c: c["id"])]
    expected = [c["name"] for c in coco_thing_categories()]
    if names != expected:
        diff = next((i for i, (a, b) in enumerate(zip(names, expected)) if a != b),
                    min(len(names), len(expected)))
        got = names[diff] if diff < len(names) else "<end>"
        want = expected[diff] if diff < len(expected) else "<end>"
        problems.add("bad-category", f"{path}: 'categories' ({len(names)} names) differ from "
                                     "Detectron2's builtin 80 COCO categories, which it asserts equal; "
                                     f"first difference at position {diff}: {got!r} instead of {want!r}")
    return {c["id"] for c in cats}


def _check_custom_categories(path: Path, categories: list, problems: Problems) -> set:
    """Any category list (your own data): unique ids and unique, non-empty names."""
    cats = [c for c in categories if isinstance(c, dict) and "id" in c and isinstance(c.get("name"), str)
            and c["name"].strip()]
    if len(cats) != len(categories):
        problems.add("bad-category", f"{path}: every entry of 'categories' needs an 'id' and a non-empty 'name'")
    if not categories:
        problems.add("bad-category", f"{path}: 'categories' is empty; list the classes to detect")
    for what, values in (("id", [c["id"] for c in cats]), ("name", [c["name"] for c in cats])):
        for value, n in Counter(values).items():
            if n > 1:
                problems.add("bad-category", f"{path}: category {what} {value!r} is listed {n} times")
    return {c["id"] for c in cats}


def _check_box_areas(path: Path, anns: list, problems: Problems) -> None:
    """Your own data: a box of zero width or height, or an annotation without the 'area' pycocotools reads."""
    for ann in anns:
        if not isinstance(ann, dict) or any(key not in ann for key in _ANN_KEYS):
            continue  # reported by _check_coco_annotations
        box, where = ann["bbox"], f"{path}: annotation id {ann['id']}"
        if isinstance(box, list) and len(box) == 4 and all(isinstance(v, (int, float)) for v in box) \
                and min(box[2], box[3]) == 0:
            problems.add("zero-area-bbox", f"{where}: bbox {box!r} has zero area (width or height 0); fix or "
                                           "remove the annotation")
        if not isinstance(ann.get("area"), (int, float)):
            problems.add("missing-area", f"{where}: no numeric 'area' (pycocotools reads it for AP by object size); "
                                         "add the box or mask area")


def _check_coco_split(base: Path, split: str, need_masks: bool, problems: Problems, notes: list[str]) -> None:
    path = base / "annotations" / f"instances_{split}.json"
    image_dir = base / split
    if not image_dir.is_dir():
        problems.add("missing-dir", f"{image_dir}: image directory missing")
    if not path.is_file():
        problems.add("missing-json", f"{path}: annotation file missing (COCO 2017 instances json)")
        return
    check_coco_json(path, image_dir, problems, notes, need_masks=need_masks)


def check_coco_json(path: Path, image_dir: Path, problems: Problems, notes: list[str], need_masks: bool = False,
                    custom: bool = False) -> dict | None:
    """Check one COCO instances json and the images it lists; return the document (None when unusable).

    ``custom``: your own data, any category list; boxes of zero area and annotations without ``area`` are
    errors too. Otherwise the categories must be Detectron2's builtin 80.
    """
    doc = _load_json(path, problems)
    if doc is None:
        return None
    missing = [k for k in ("images", "annotations", "categories")
               if not isinstance(doc, dict) or not isinstance(doc.get(k), list)]
    if missing:
        problems.add("bad-json", f"{path}: missing or non-list key(s) {missing}")
        return None
    check_categories = _check_custom_categories if custom else _check_coco_categories
    cat_ids = check_categories(path, doc["categories"], problems)
    image_ids = _check_coco_images(path, doc["images"], image_dir, problems)
    annotated = _check_coco_annotations(path, doc["annotations"], image_ids, cat_ids, need_masks, problems)
    if custom:
        _check_box_areas(path, doc["annotations"], problems)
    empty = len(image_ids - annotated)
    if image_ids and empty == len(image_ids):
        problems.add("no-annotations", f"{path}: none of its {len(image_ids)} images has an annotation; "
                                       "there is nothing to train on or to evaluate")
    elif empty:
        notes.append(f"{path}: {empty} of {len(image_ids)} images have no annotations; Detectron2 leaves them out "
                     "of training (DATALOADER.FILTER_EMPTY_ANNOTATIONS) and keeps them in evaluation")
    return doc


def _check_coco_images(path: Path, images: list, image_dir: Path, problems: Problems) -> set:
    on_disk, seen = _listdir(image_dir), set()
    for k, img in enumerate(images):
        if not isinstance(img, dict) or any(key not in img for key in ("id", "file_name", "height", "width")):
            problems.add("bad-image", f"{path}: images[{k}] needs id, file_name, height and width")
            continue
        if img["id"] in seen:
            problems.add("bad-image", f"{path}: duplicate image id {img['id']}")
        seen.add(img["id"])
        fname = str(img["file_name"])
        if fname not in on_disk and not (image_dir / fname).is_file():
            problems.add("missing-image", f"{image_dir / fname}: missing (image id {img['id']} in {path})")
            continue
        line = image_problem(image_dir / fname, (img["width"], img["height"]))
        if line:
            problems.add("bad-image", f"{line} (image id {img['id']} in {path})")
    return seen


_ANN_KEYS = ("id", "image_id", "category_id", "bbox")


def _check_coco_annotations(path: Path, anns: list, image_ids: set, cat_ids: set, need_masks: bool,
                            problems: Problems) -> set:
    """Check every annotation; return the ids of the images that have at least one."""
    seen: set = set()
    annotated: set = set()
    for k, ann in enumerate(anns):
        if not isinstance(ann, dict) or any(key not in ann for key in _ANN_KEYS):
            problems.add("bad-annotation", f"{path}: annotations[{k}] needs {', '.join(_ANN_KEYS)}")
            continue
        where = f"{path}: annotation id {ann['id']}"
        if ann["id"] in seen:
            problems.add("bad-annotation", f"{where}: duplicate annotation id "
                                           "(Detectron2 asserts unique ids)")
        seen.add(ann["id"])
        annotated.add(ann["image_id"])
        if ann["image_id"] not in image_ids:
            problems.add("unknown-image-id", f"{where}: image_id {ann['image_id']} is not in 'images'")
        if ann["category_id"] not in cat_ids:
            problems.add("unknown-category-id", f"{where}: category_id {ann['category_id']} "
                                                "is not in 'categories'")
        box = ann["bbox"]
        if not (isinstance(box, list) and len(box) == 4 and all(isinstance(v, (int, float)) for v in box)
                and box[2] >= 0 and box[3] >= 0):
            problems.add("bad-bbox", f"{where}: bbox {box!r} is not [x, y, w, h] with w, h >= 0")
        if need_masks and not _valid_segmentation(ann.get("segmentation")):
            problems.add("missing-segmentation", f"{where}: no usable segmentation (polygons with >= 3 "
                                                 "points or RLE), needed to train mask heads")
    return annotated


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


# ----------------------------------------------------------------------------- Cityscapes


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

    try:
        doc = json.loads(path.read_bytes())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return [f"{path}: cannot read as JSON ({exc})"], 0
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

    try:
        with Image.open(path) as img:
            counts = np.bincount(np.asarray(img, dtype=np.uint8).ravel(), minlength=256)
    except (OSError, ValueError) as exc:
        return f"{path}: cannot read as an 8-bit label image ({exc})"
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


# ----------------------------------------------------------------------------- entry points

CHECKS = {"voc": check_voc, "coco": check_coco, "cityscapes": check_cityscapes}


def check(dataset: str, root: Path | str | None = None, **kwargs: Any) -> list[str]:
    """Run the check for ``dataset`` ('voc', 'coco' or 'cityscapes') under ``root``."""
    if dataset not in CHECKS:
        raise ValueError(f"dataset must be one of {sorted(CHECKS)}, not {dataset!r}")
    return CHECKS[dataset](default_root() if root is None else root, **kwargs)


def require_layout(dataset: str, root: Path | str | None = None, **kwargs: Any) -> None:
    """Raise :class:`DatasetLayoutError` listing the problems, if any (for benchmark runners)."""
    problems = check(dataset, root, **kwargs)
    if problems:
        where = default_root() if root is None else root
        raise DatasetLayoutError(f"{dataset} layout under {where} has problems:\n  " + "\n  ".join(problems))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Validate a dataset layout for Detectron2's builtin datasets.")
    parser.add_argument("dataset", choices=sorted(CHECKS))
    parser.add_argument("--datasets", "--root", dest="root", type=Path, default=None,
                        help="dataset root (default: $DETECTRON2_DATASETS or 'datasets')")
    parser.add_argument("--task", choices=sorted(CITYSCAPES_GT_SUFFIXES), default="instance_seg",
                        help="cityscapes only: which ground truth is needed")
    parser.add_argument("--no-masks", action="store_true", help="coco only: boxes suffice")
    args = parser.parse_args(argv)
    root = default_root() if args.root is None else args.root
    notes: list[str] = []
    kwargs: dict[str, Any] = {"notes": notes}
    if args.dataset == "cityscapes":
        kwargs.update(task=args.task)
    if args.dataset == "coco":
        kwargs.update(need_masks=not args.no_masks)
    problems = check(args.dataset, root, **kwargs)
    for line in problems:
        print(line)
    for line in notes:
        print(f"note: {line}")
    if problems:
        print(f"{args.dataset}: layout under {root} has problems (see above)", file=sys.stderr)
        return 1
    print(f"{args.dataset}: layout under {root} OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
