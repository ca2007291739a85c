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

    python -m benchmarks.dataset_check voc|coco|cityscapes|voc_semseg|coco_keypoints|lvis|densepose \
        [--datasets DIR] [--task sem_seg]

``--datasets`` (the runners' flag too) defaults to ``$DETECTRON2_DATASETS`` (or ``datasets``), as in Detectron2.
"""

from __future__ import annotations

import argparse
import ast
import json
import math
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


def _read_voc_xml(path: Path, class_names: Sequence[str] | None, lenient: Counter | None,
                  float_boxes: bool = False) -> tuple[list[str], tuple[int, int] | None]:
    """(problems, (width, height) or None when unreadable)."""
    from transfer.voc_xml import VocXmlError, box_problems, read_voc_xml

    try:
        ann = read_voc_xml(path, float_boxes=float_boxes)
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
                    notes: list[str], float_boxes: bool = False) -> None:
    """One VOC-layout split: folders, split file, and every listed image and annotation (``float_boxes``: your
    own data, annotation-tool float boxes read as they are; ``transfer/voc_xml.py``)."""
    from transfer.voc_xml import lenient_summary

    if not base.is_dir():
        problems.add("missing-dir", f"{base}: directory missing (Pascal VOC devkit folder with "
                                    "JPEGImages/, Annotations/, ImageSets/Main/)")
        return
    for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
        if not (base / sub).is_dir():
            problems.add("missing-dir", f"{base / sub}: directory missing")
    split_file = base / "ImageSets" / "Main" / f"{split}.txt"
    ids = _read_split(split_file, problems)
    if ids is None:
        return
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
                lines, size = _read_voc_xml(base / "Annotations" / f"{file_id}.xml", class_names, lenient, float_boxes)
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


def _read_split(split_file: Path, problems: Problems) -> list[str] | None:
    """The image ids a VOC split file lists (None, with the problem added, when it cannot be read)."""
    from transfer.regular import read_bytes

    try:
        text = read_bytes(split_file, 64 << 20).decode("utf-8")
    except FileNotFoundError:
        problems.add("missing-split", f"{split_file}: split file missing")
        return None
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc).splitlines()[0][:100]
        problems.add("missing-split", f"{split_file}: cannot be read as a split file ({why})")
        return None
    return [line.split()[0] for line in text.splitlines() if line.strip()]


# ----------------------------------------------------------------------------- COCO


def _load_json(path: Path, problems: Problems) -> Any:
    from transfer.regular import read_bytes

    try:
        return json.loads(read_bytes(path))
    except json.JSONDecodeError as exc:
        problems.add("bad-json", f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}, "
                                 f"column {exc.colno})")
    except RecursionError:
        problems.add("bad-json", f"{path}: JSON nested too deeply to be an annotation file")
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc).splitlines()[0][:100]
        problems.add("bad-json", f"{path}: cannot read ({why})")
    return None


def _load_lists(path: Path, problems: Problems, what: str,
                keys: tuple[str, ...] = ("images", "annotations", "categories")) -> dict | None:
    """The json document at ``path`` (``what``: the file it should be) if it exists, parses, and holds a list
    under each of ``keys``; otherwise None with the problem added."""
    if not path.is_file():
        problems.add("missing-json", f"{path}: annotation file missing ({what})")
        return None
    doc = _load_json(path, problems)
    if doc is None:
        return None
    if not isinstance(doc, dict) or not all(isinstance(doc.get(k), list) for k in keys):
        names = ", ".join(f"'{k}'" for k in keys[:-1]) + f" and '{keys[-1]}'"
        problems.add("bad-json", f"{path}: needs {names} lists")
        return None
    return doc if _ids_ok(path, doc, problems) else None


_ID_FIELDS = (("images", "id"), ("annotations", "id"), ("annotations", "image_id"), ("annotations", "category_id"),
              ("categories", "id"))


def _ids_ok(path: Path, doc: dict, problems: Problems) -> bool:
    """Every id is an integer or a string, one type per kind (Detectron2 sorts them, pycocotools hashes them);
    False (problems added) otherwise."""
    ok = True
    for key, field in _ID_FIELDS:
        kinds: dict[str, int] = {}
        for k, entry in enumerate(doc.get(key) or []):
            if not isinstance(entry, dict) or field not in entry:
                continue  # reported by the checks of that list
            value = entry[field]
            if isinstance(value, bool) or not isinstance(value, (int, str)):
                problems.add("bad-id", f"{path}: {key}[{k}] has {field} of type {type(value).__name__}; ids are "
                                       "integers (or strings)")
                ok = False
                continue
            kinds.setdefault(type(value).__name__, k)
        if len(kinds) > 1:
            problems.add("bad-id", f"{path}: '{key}' mixes integer and string {field}s (e.g. {key}[{kinds['int']}] "
                                   f"and {key}[{kinds['str']}]); use one type")
            ok = False
    return ok


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
        if isinstance(box, list) and len(box) == 4 and all(_is_number(v) for v in box) \
                and min(box[2], box[3]) == 0:
            problems.add("zero-area-bbox", f"{where}: bbox {box!r} has zero area (width or height 0); fix or "
                                           "remove the annotation")
        if "area" not in ann:
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
    if not _ids_ok(path, doc, problems):
        return None
    check_categories = _check_custom_categories if custom else _check_coco_categories
    cat_ids = check_categories(path, doc["categories"], problems)
    sizes: dict = {}
    image_ids = _check_coco_images(path, doc["images"], image_dir, problems, sizes)
    annotated = _check_coco_annotations(path, doc["annotations"], image_ids, cat_ids, need_masks, problems, sizes)
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


def _check_coco_images(path: Path, images: list, image_dir: Path, problems: Problems,
                       sizes: dict | None = None) -> set:
    """Check every image entry and file; return the image ids (``sizes`` receives id -> (width, height))."""
    on_disk, seen = _listdir(image_dir), set()
    for k, img in enumerate(images):
        if not isinstance(img, dict) or any(key not in img for key in ("id", "file_name", "height", "width")):
            problems.add("bad-image", f"{path}: images[{k}] needs id, file_name, height and width")
            continue
        if not all(_is_int(img[key]) and img[key] > 0 for key in ("height", "width")):
            problems.add("bad-image", f"{path}: image id {img['id']}: height and width must be positive integers")
            continue
        if img["id"] in seen:
            problems.add("bad-image", f"{path}: duplicate image id {img['id']}")
        seen.add(img["id"])
        if sizes is not None:
            sizes[img["id"]] = (img["width"], img["height"])
        fname = str(img["file_name"])
        if fname not in on_disk and not (image_dir / fname).is_file():
            problems.add("missing-image", f"{image_dir / fname}: missing (image id {img['id']} in {path})")
            continue
        line = image_problem(image_dir / fname, (img["width"], img["height"]))
        if line:
            problems.add("bad-image", f"{line} (image id {img['id']} in {path})")
    return seen


_ANN_KEYS = ("id", "image_id", "category_id", "bbox")
BOX_TOLERANCE = 1.0  # pixels a box may stick out of its image (rounding in annotation tools)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _box_problem(box: Any, size: tuple[int, int] | None) -> str | None:
    """What is wrong with a COCO ``[x, y, w, h]`` in an image of ``size`` (width, height), or None."""
    if not (isinstance(box, list) and len(box) == 4 and all(_is_number(v) for v in box)):
        return f"bbox {str(box)[:80]} is not [x, y, w, h] of 4 finite numbers"
    x, y, w, h = box
    if w < 0 or h < 0:
        return f"bbox {box!r} is not [x, y, w, h] with w, h >= 0"
    if size is not None:
        width, height = size
        t = BOX_TOLERANCE
        if x < -t or y < -t or x + w > width + t or y + h > height + t:
            return (f"bbox {box!r} lies outside the {width}x{height} image; fix the annotation (Detectron2 would "
                    "clip it, the evaluator would not)")
    return None


def _area_problem(area: Any, size: tuple[int, int] | None) -> str | None:
    """What is wrong with an annotation's ``area`` (pycocotools sorts ground truth into S/M/L by it), or None."""
    if not _is_number(area) or area < 0:
        return f"area {str(area)[:40]} is not a finite number >= 0"
    if size is not None and area > size[0] * size[1] + 1:
        return f"area {area!r} is larger than the {size[0]}x{size[1]} image"
    return None


def _check_coco_annotations(path: Path, anns: list, image_ids: set, cat_ids: set, need_masks: bool,
                            problems: Problems, sizes: dict | None = None) -> set:
    """Check every annotation (boxes and areas against their image's size when ``sizes`` has it); return the
    ids of the images that have at least one."""
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
        size = (sizes or {}).get(ann["image_id"])
        line = _box_problem(ann["bbox"], size)
        if line:
            problems.add("bad-bbox", f"{where}: {line}")
        if "area" in ann and _area_problem(ann["area"], size):
            problems.add("bad-area", f"{where}: {_area_problem(ann['area'], size)}")
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

    from transfer.regular import read_bytes

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

    from transfer.regular import irregular

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


# ----------------------------------------------------------------------------- MoCo Table 6: VOC semantic segmentation

VOC_SEMSEG_PAPER_SIZES = {"train_aug": 10582, "val": 1449}


def _label_png_problem(path: Path, size: tuple[int, int] | None, train: bool) -> str | None:
    """A VOC class-label PNG: readable, 8-bit grayscale (training) or palette (val), classes 0-20 or 255."""
    import numpy as np
    from PIL import Image

    from transfer.regular import irregular

    if irregular(path):
        return f"{path}: {irregular(path)}"
    try:
        with Image.open(path) as img:
            mode, got = img.mode, img.size
            values = np.bincount(np.asarray(img, dtype=np.uint8).ravel(), minlength=256)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        return f"{path}: cannot read as a label PNG ({str(exc).splitlines()[0][:120]})"
    if mode not in ("L", "P"):
        return f"{path}: {mode} image; labels are 8-bit class indices (grayscale or VOC palette PNG)"
    if train and mode == "P":
        return (f"{path}: palette PNG; Detectron2's training loader reads labels as grayscale and would turn its "
                "colours into luminance: rewrite it with `python -m benchmarks.voc_sbd --voc <VOC2012>`")
    bad = [v for v in np.nonzero(values)[0].tolist() if 20 < v < 255]
    if bad:
        return f"{path}: holds values {bad[:5]} that are neither classes 0-20 nor 255 (ignore)"
    if size is not None and got != size:
        return f"{path}: size {got[0]}x{got[1]} differs from its image's {size[0]}x{size[1]}"
    return None


def check_voc_semseg(root: Path | str, notes: list[str] | None = None) -> list[str]:
    """Check ``<root>/VOC2012`` for ``voc_2012_sem_seg_{train_aug,val}`` (``transfer/voc_semseg.py``): the split
    lists, every listed image (present, complete) and label PNG (present, class indices 0-20/255, grayscale
    for training, the image's size), and that no val image is in train_aug."""
    from PIL import Image

    from transfer.voc_semseg import VOC_SEMSEG_SPLITS, read_split

    root, problems = Path(root), Problems()
    notes = [] if notes is None else notes
    base = root / "VOC2012"
    if not base.is_dir():
        problems.add("missing-dir", f"{base}: directory missing (Pascal VOC2012 devkit folder)")
        return problems.lines()
    fix = f"`python -m benchmarks.voc_sbd --voc {base} --sbd <SBD>/dataset`"
    splits: dict[str, list[str]] = {}
    for name, (split_file, label_dir) in VOC_SEMSEG_SPLITS.items():
        short = name.rsplit("_sem_seg_", 1)[1]
        path = base / split_file
        if not path.is_file():
            hint = f"; build it (and {label_dir}/ from SBD's cls/*.mat) with {fix}" if short == "train_aug" else ""
            problems.add("missing-split", f"{path}: split file missing{hint}")
            continue
        if not (base / label_dir).is_dir():
            hint = f"; write it from SBD's cls/*.mat with {fix}" if label_dir == "SegmentationClassAug" else ""
            problems.add("missing-dir", f"{base / label_dir}: directory missing{hint}")
        ids = splits[short] = read_split(path)
        if not ids:
            problems.add("short-split", f"{path}: lists no image")
        if len(ids) != VOC_SEMSEG_PAPER_SIZES[short]:
            notes.append(f"{path}: {len(ids)} images (the paper's {short} has {VOC_SEMSEG_PAPER_SIZES[short]})")
        jpegs, labels = _listdir(base / "JPEGImages"), _listdir(base / label_dir)
        for i in ids:
            jpeg, label = base / "JPEGImages" / f"{i}.jpg", base / label_dir / f"{i}.png"
            size = None
            if f"{i}.jpg" not in jpegs:
                problems.add("missing-jpeg", f"{jpeg}: missing (listed in {path})")
            else:
                line = image_problem(jpeg)
                if line:
                    problems.add("bad-image", line)
                else:
                    with Image.open(jpeg) as img:
                        size = img.size
            if f"{i}.png" not in labels:
                problems.add("missing-label", f"{label}: missing (listed in {path})"
                             + (f"; write the train_aug labels with {fix}" if short == "train_aug" else ""))
                continue
            line = _label_png_problem(label, size, train=short == "train_aug")
            if line:
                problems.add("bad-label", line)
    both = sorted(set(splits.get("train_aug", [])) & set(splits.get("val", [])))
    if both:
        problems.add("val-in-train", f"{base / VOC_SEMSEG_SPLITS['voc_2012_sem_seg_train_aug'][0]}: lists "
                                     f"{len(both)} val image(s) (e.g. {both[0]}); train_aug excludes val: rebuild it "
                                     f"with {fix}")
    return problems.lines()


# ----------------------------------------------------------------------------- MoCo Table 6: COCO keypoints

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


# ----------------------------------------------------------------------------- MoCo Table 6: LVIS v0.5

LVIS_SPLITS: tuple[str, ...] = ("train", "val")


def check_lvis(root: Path | str, splits: Sequence[str] = LVIS_SPLITS, notes: list[str] | None = None) -> list[str]:
    """Check ``<root>/lvis/lvis_v0.5_<split>.json`` (``lvis_v0.5_*``; images in ``<root>/coco/<split>2017``
    found through ``coco_url``): the 1230 v0.5 categories with frequency groups, the image fields the loader and
    the evaluator read, every image file, and each annotation (known ids, box, polygons of >= 3 points)."""
    from benchmarks.tiny_data import lvis_v0_5_categories

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


# ----------------------------------------------------------------------------- MoCo Table 6: COCO DensePose

DENSEPOSE_FILES: tuple[tuple[str, str], ...] = (("densepose_train2014", "train2014"),
                                                ("densepose_valminusminival2014", "val2014"),
                                                ("densepose_minival2014", "val2014"))
_DP_POINT_KEYS = ("dp_x", "dp_y", "dp_I", "dp_U", "dp_V")


def _densepose_problem(ann: dict) -> str | None:
    """What is wrong with one annotation's DensePose fields (None: fine or none present)."""
    if not any(k in ann for k in (*_DP_POINT_KEYS, "dp_masks")):
        return None
    missing = [k for k in (*_DP_POINT_KEYS, "dp_masks") if k not in ann]
    if missing:
        return f"has DensePose fields but not {', '.join(missing)}"
    lengths = {len(ann[k]) if isinstance(ann[k], list) else -1 for k in _DP_POINT_KEYS}
    if len(lengths) != 1 or -1 in lengths:
        return f"{', '.join(_DP_POINT_KEYS)} must be lists of one length"
    if not all(0 <= v <= 256 for k in ("dp_x", "dp_y") for v in ann[k]):
        return "dp_x/dp_y must lie in the 256x256 box frame (0-255)"
    if not all(v == int(v) and 1 <= v <= 24 for v in ann["dp_I"]):
        return "dp_I must be part indices 1-24"
    if not all(0 <= v <= 1 for k in ("dp_U", "dp_V") for v in ann[k]):
        return "dp_U/dp_V must lie in [0, 1]"
    masks = ann["dp_masks"]
    if not (isinstance(masks, list) and len(masks) == 14
            and all(m == [] or (isinstance(m, dict) and "counts" in m and "size" in m) for m in masks)):
        return "dp_masks must be 14 entries, each an RLE ({'size', 'counts'}) or []"
    return None


def check_densepose(root: Path | str, notes: list[str] | None = None) -> list[str]:
    """Check DensePose-COCO under ``<root>/coco``: ``annotations/densepose_{train2014,valminusminival2014,
    minival2014}.json``, their images in ``train2014``/``val2014`` and each annotation's DensePose fields."""
    root, problems = Path(root), Problems()
    notes = [] if notes is None else notes
    for stem, folder in DENSEPOSE_FILES:
        path = root / "coco" / "annotations" / f"{stem}.json"
        doc = _load_lists(path, problems, "DensePose-COCO json", ("images", "annotations"))
        if doc is None:
            continue
        image_ids = _check_coco_images(path, doc["images"], root / "coco" / folder, problems)
        with_dp = 0
        for k, ann in enumerate(doc["annotations"]):
            if not isinstance(ann, dict) or any(key not in ann for key in _ANN_KEYS):
                problems.add("bad-annotation", f"{path}: annotations[{k}] needs {', '.join(_ANN_KEYS)}")
                continue
            if ann["image_id"] not in image_ids:
                problems.add("unknown-image-id", f"{path}: annotation id {ann['id']}: image_id {ann['image_id']} "
                                                 "is not in 'images'")
            line = _densepose_problem(ann)
            if line:
                problems.add("bad-densepose", f"{path}: annotation id {ann['id']}: {line}")
            with_dp += "dp_I" in ann
        if doc["annotations"] and not with_dp:
            problems.add("no-annotations", f"{path}: no annotation has DensePose points (dp_I, dp_U, dp_V, ...)")
    return problems.lines()


# ----------------------------------------------------------------------------- entry points

CHECKS = {"voc": check_voc, "coco": check_coco, "cityscapes": check_cityscapes, "voc_semseg": check_voc_semseg,
          "coco_keypoints": check_coco_keypoints, "lvis": check_lvis, "densepose": check_densepose}


def check(dataset: str, root: Path | str | None = None, **kwargs: Any) -> list[str]:
    """Run the check for ``dataset`` (a key of :data:`CHECKS`) under ``root``."""
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
