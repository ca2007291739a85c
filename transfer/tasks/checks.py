"""What every dataset check shares: collected problem lines (at most ``MAX_PER_KIND`` per kind), reading split
lists and JSON files as untrusted input, and the COCO-json checks (images, categories, ids, boxes and areas
against the image, masks) that COCO, LVIS, keypoints, DensePose and your own data use. Each task module's
``check`` returns a list of problem lines (empty: OK) naming the file and what to do about it."""

from __future__ import annotations

import json
import math
import os
import unicodedata
from collections import Counter
from pathlib import Path
from typing import Any

from core.names import name_problem
from transfer.tasks.images import image_problem


MAX_PER_KIND = 5

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

def _read_split(split_file: Path, problems: Problems) -> list[str] | None:
    """The image ids a VOC split file lists (None, with the problem added, when it cannot be read)."""
    from core.files import read_bytes

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

def _load_json(path: Path, problems: Problems) -> Any:
    from core.files import read_bytes

    try:
        data = read_bytes(path)
        if data.startswith(b"\xef\xbb\xbf"):  # json.loads(bytes) skips it; pycocotools' json.load(open()) does not
            problems.add("bad-json", f"{path}: starts with a UTF-8 byte-order mark (BOM), which pycocotools (and so "
                                     "every trial) refuses ('Unexpected UTF-8 BOM'); save it as UTF-8 without BOM "
                                     "(e.g. sed -i '1s/^\\xEF\\xBB\\xBF//' FILE)")
            return None
        return json.loads(data.decode("utf-8"))  # as pycocotools reads it: UTF-8 text, no other encoding
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
    from transfer.tasks.categories import coco_thing_categories

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
    forms: dict[str, list[dict]] = {}
    for c in cats:
        problem = name_problem(c["name"], f"name of category id {c['id']}")
        if problem:
            problems.add("bad-category", f"{path}: {problem}")
        forms.setdefault(unicodedata.normalize("NFC", c["name"].strip()), []).append(c)
    for same in forms.values():
        if len({c["name"] for c in same}) > 1:
            ids = ", ".join(str(c["id"]) for c in same)
            problems.add("bad-category", f"{path}: categories {ids} have names that print alike "
                                         f"({', '.join(ascii(c['name']) for c in same)}) and differ only in Unicode "
                                         "form (NFC/NFD) or surrounding space; use one name per class")
    return {c["id"] for c in cats}


def mask_format(docs: list[dict]) -> str:
    """Detectron2's ``INPUT.MASK_FORMAT`` that reads every training mask: ``bitmask`` when a non-crowd annotation
    has an RLE mask (``polygon`` asserts polygons and stops training at the first RLE), else ``polygon``."""
    rle = any(isinstance(a.get("segmentation"), dict) for d in docs for a in d["annotations"]
              if isinstance(a, dict) and not a.get("iscrowd", 0))
    return "bitmask" if rle else "polygon"

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
