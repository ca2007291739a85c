"""One reader of Pascal VOC annotation XML, shared by the dataset check, the loader and the evaluator.

Detectron2's VOC loader and its VOC07 evaluator parse the same files with different rules (the loader
reads floats and ignores ``difficult``; the evaluator calls ``int()`` on ``difficult``, ``truncated`` and
every coordinate), so XML written by common annotation tools passes one and crashes the other after
training. :func:`read_voc_xml` reads a file once, with one set of rules:

* unambiguous real-world forms are *read*: an empty or missing ``<difficult/>``/``<truncated/>`` is 0, an
  integral float coordinate (``191.0``) is that integer, a missing ``<pose>`` is ``Unspecified``, class
  names lose surrounding white space; each such file is counted in :attr:`VocAnnotation.lenient`;
* what Detectron2's own loader (``tree.findall("object")``) would skip is refused, never dropped: a namespace
  (``<annotation xmlns=...>``), an ``<object>`` under a namespace or inside another element (``<objects>``);
  so is a class name with an invisible or control character (``core/names.py``);
* everything else that would make either Detectron2 reader fail or mislead raises :class:`VocXmlError`
  naming the file: unreadable XML, no integer image size, a non-integral coordinate or flag, a box
  without all four coordinates.

**Your own data** (``run_custom.sh --voc``, ``float_boxes``): annotation tools (labelme, CVAT) write boxes as
floats (``107.369``, ``263.56``); they are read as they are, not rounded, and a box may start at 0 (the tools'
0-based coordinates). The loader and the evaluator then use the same floats with Detectron2's VOC
convention (``xmin - 1`` when loading, ``+ 1`` on predictions when evaluating), so an exact detection of an
annotated box scores IoU 1. The paper benchmark's VOC stays integral. ``allow_float_boxes(dirname)`` switches
a VOC-layout folder to this mode in a trial's process (``transfer/custom_data.py`` does it for own data).

``install()`` makes Detectron2's builtin VOC loader and its evaluator use this reader, so the dataset
check, training and evaluation agree on every file.
"""

from __future__ import annotations

import logging
import math
import os
import unicodedata
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Sequence

from core.files import read_bytes
from core.names import name_problem

logger = logging.getLogger(__name__)
COORDS = ("xmin", "ymin", "xmax", "ymax")
MAX_XML_BYTES = 16 << 20  # a VOC annotation is a few KB


class VocXmlError(ValueError):
    """A VOC annotation file that Detectron2 cannot read or evaluate; names the file."""


@dataclass
class VocObject:
    name: str
    bbox: tuple[float, float, float, float]  # as in the file: 1-based inclusive integers (floats: own data)
    difficult: int
    truncated: int
    pose: str


@dataclass
class VocAnnotation:
    path: str
    width: int
    height: int
    objects: list[VocObject]
    lenient: Counter = field(default_factory=Counter)  # tolerated form -> count in this file
    float_boxes: bool = False  # read as own data (module doc)


_FLOAT_DIRS: set[str] = set()


def allow_float_boxes(dirname: str | os.PathLike) -> None:
    """Read the annotations of the VOC-layout folder ``dirname`` with float boxes (own data; module doc)."""
    _FLOAT_DIRS.add(os.path.realpath(dirname))


def _floats_allowed(path: str) -> bool:
    return bool(_FLOAT_DIRS) and os.path.realpath(os.path.dirname(os.path.dirname(path))) in _FLOAT_DIRS


def _coordinate(text: str | None, what: str, path: str, lenient: Counter) -> float:
    """Own data: a finite number as it is (``107.369``), integral values as integers."""
    if text is None or not text.strip():
        raise VocXmlError(f"{path}: {what} is empty or missing")
    try:
        value = float(text.strip())
    except ValueError:
        raise VocXmlError(f"{path}: {what} is {text.strip()[:40]!r}, not a number") from None
    if not math.isfinite(value):
        raise VocXmlError(f"{path}: {what} is {text.strip()[:40]!r}, not a finite number")
    if value != int(value):
        lenient["non-integral coordinates read as they are (annotation-tool floats)"] += 1
        return value
    return int(value)


def _integer(text: str | None, what: str, path: str, lenient: Counter, default: int | None = None) -> int:
    """``"191"`` -> 191; ``"191.0"`` -> 191 (counted); empty/missing -> ``default`` (counted) or an error."""
    if text is None or not text.strip():
        if default is None:
            raise VocXmlError(f"{path}: {what} is empty or missing")
        lenient[f"empty or missing {what.split()[0]} read as {default}"] += 1
        return default
    text = text.strip()
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        raise VocXmlError(f"{path}: {what} is {text!r}, not a number") from None
    if not math.isfinite(value) or value != int(value):
        raise VocXmlError(f"{path}: {what} is {text!r}, not an integer (the VOC evaluator reads integers; "
                          "round the annotation)")
    lenient["integral float coordinates read as integers" if what.startswith("<bndbox>")
            else f"integral float {what.split()[0]} read as integer"] += 1
    return int(value)


def _local(tag: object) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _structure_problem(root: ET.Element, path: str) -> None:
    """Raise :class:`VocXmlError` for what Detectron2's VOC loader (``tree.findall("object")``: direct children of
    the root, no namespace) and this reader would silently skip: a namespace, an ``<object>`` deeper down."""
    if root.tag.startswith("{"):
        ns = root.tag[1:].split("}", 1)[0]
        raise VocXmlError(f"{path}: the root <{_local(root.tag)}> declares the XML namespace {ns[:80]!r} (xmlns); "
                          "Detectron2's VOC loader reads no element under a namespace (not <size>, not <object>); "
                          "remove the xmlns attribute")
    children = {id(child) for child in root}
    for el in root.iter():
        if _local(el.tag) != "object" or el is root:
            continue
        if el.tag != "object":
            raise VocXmlError(f"{path}: an <object> element under an XML namespace (xmlns) is not read by "
                              "Detectron2's VOC loader; put it directly under <annotation> without xmlns")
        if id(el) not in children:
            parent = next(p for p in root.iter() if any(c is el for c in p))
            raise VocXmlError(f"{path}: <object> elements inside <{_local(parent.tag)}> are not read by Detectron2's "
                              "VOC loader (it reads direct children of the root only); put them directly under "
                              f"<{_local(root.tag)}>")


def read_voc_xml(path: str | os.PathLike, float_boxes: bool | None = None) -> VocAnnotation:
    """Parse one annotation file with the rules of the module doc; raise :class:`VocXmlError`.
    ``float_boxes``: own data (default: whether the file's folder was passed to :func:`allow_float_boxes`)."""
    path = str(path)
    if float_boxes is None:
        float_boxes = _floats_allowed(path)
    try:
        root = ET.fromstring(read_bytes(path, MAX_XML_BYTES))
    except ET.ParseError as e:
        raise VocXmlError(f"{path}: cannot parse XML ({e})") from None
    except OSError as e:
        raise VocXmlError(f"{path}: cannot be read ({e.strerror or e})") from None
    except RecursionError:
        raise VocXmlError(f"{path}: XML nested too deeply to be an annotation") from None
    _structure_problem(root, path)
    lenient: Counter = Counter()
    size = root.find("size")
    if size is None:
        raise VocXmlError(f"{path}: no <size> element (Detectron2 reads the image size there)")
    width = _integer(size.findtext("width"), "<size><width>", path, lenient)
    height = _integer(size.findtext("height"), "<size><height>", path, lenient)
    if width <= 0 or height <= 0:
        raise VocXmlError(f"{path}: image size {width}x{height} is not positive")
    objects = []
    for k, obj in enumerate(root.findall("object")):
        raw_name = obj.findtext("name")
        if raw_name is None or not raw_name.strip():
            raise VocXmlError(f"{path}: object {k} has no <name>")
        name = raw_name.strip()
        problem = name_problem(name, f"class name of object {k}")
        if problem:
            raise VocXmlError(f"{path}: {problem}")
        if name != raw_name:
            lenient["class names with surrounding white space stripped"] += 1
        where = f"object {k} ({name!r})"
        box = obj.find("bndbox")
        if box is None:
            raise VocXmlError(f"{path}: {where} has no <bndbox>")
        read = _coordinate if float_boxes else _integer
        coords = tuple(read(box.findtext(c), f"<bndbox><{c}> of {where}", path, lenient) for c in COORDS)
        difficult = _integer(obj.findtext("difficult"), f"<difficult> of {where}", path, lenient, default=0)
        truncated = _integer(obj.findtext("truncated"), f"<truncated> of {where}", path, lenient, default=0)
        if difficult not in (0, 1) or truncated not in (0, 1):
            raise VocXmlError(f"{path}: {where}: <difficult>/<truncated> must be 0 or 1, "
                              f"got {difficult}/{truncated}")
        pose = (obj.findtext("pose") or "").strip()
        if not pose:
            lenient["missing <pose> read as 'Unspecified'"] += 1
            pose = "Unspecified"
        objects.append(VocObject(name, coords, difficult, truncated, pose))  # type: ignore[arg-type]
    return VocAnnotation(path, width, height, objects, lenient, float_boxes)


def box_problems(ann: VocAnnotation, class_names: Sequence[str] | None) -> list[str]:
    """Problems of the objects of a readable file: unknown class, empty box, box outside the image."""
    out = []
    for k, obj in enumerate(ann.objects):
        where = f"{ann.path}: object {k} ({obj.name!r})"
        if class_names is not None and obj.name not in class_names:
            nfc = unicodedata.normalize("NFC", obj.name)
            alike = any(unicodedata.normalize("NFC", c) == nfc for c in class_names)
            out.append(f"{where}: " + ("differs from a class name only in Unicode form (NFC/NFD); write it as the "
                                       "class names do" if alike else
                                       f"unknown class name (not one of the {len(class_names)} class names)"))
        x1, y1, x2, y2 = obj.bbox
        # VOC boxes are 1-based inclusive; Detectron2 uses (xmin - 1, ymin - 1, xmax, ymax). Tools that write
        # floats use 0-based coordinates: own data may start at 0.
        low = 0 if ann.float_boxes else 1
        if x2 < x1 or y2 < y1:
            out.append(f"{where}: empty box {list(obj.bbox)} (xmax < xmin or ymax < ymin)")
        elif x1 < low or y1 < low or x2 > ann.width or y2 > ann.height:
            out.append(f"{where}: box {list(obj.bbox)} lies outside the {ann.width}x{ann.height} image")
    return out


def lenient_summary(counts: Counter, files: int, where: str) -> str:
    """One line saying which real-world forms were read, e.g. for the check's notes and the loader's log."""
    forms = ", ".join(f"{form} ({n}x)" for form, n in counts.most_common())
    return f"{where}: {files} annotation file(s) use forms read leniently: {forms}"


# ----------------------------------------------------------------------------- Detectron2 readers

def load_voc_instances(dirname: str, split: str, class_names: Sequence[str]) -> list[dict]:
    """Drop-in for ``detectron2.data.datasets.pascal_voc.load_voc_instances`` reading with :func:`read_voc_xml`."""
    from detectron2.structures import BoxMode

    with open(os.path.join(dirname, "ImageSets", "Main", split + ".txt")) as f:
        ids = [line.split()[0] for line in f if line.strip()]
    dicts, counts, lenient_files = [], Counter(), 0
    for file_id in ids:
        ann = read_voc_xml(os.path.join(dirname, "Annotations", file_id + ".xml"))
        counts.update(ann.lenient)
        lenient_files += bool(ann.lenient)
        instances = []
        for obj in ann.objects:
            if obj.name not in class_names:
                raise VocXmlError(f"{ann.path}: class {obj.name!r} is not one of the dataset's class names")
            x1, y1, x2, y2 = obj.bbox
            instances.append({"category_id": list(class_names).index(obj.name),
                              "bbox": [x1 - 1.0, y1 - 1.0, float(x2), float(y2)], "bbox_mode": BoxMode.XYXY_ABS})
        dicts.append({"file_name": os.path.join(dirname, "JPEGImages", file_id + ".jpg"), "image_id": file_id,
                      "height": ann.height, "width": ann.width, "annotations": instances})
    if counts:
        logger.warning(lenient_summary(counts, lenient_files, f"{dirname} {split}"))
    return dicts


@lru_cache(maxsize=None)
def parse_rec(filename: str) -> list[dict]:
    """Drop-in for the VOC evaluator's ``parse_rec`` reading with :func:`read_voc_xml` (cached like the
    original: the evaluator reads every file once per class and IoU threshold)."""
    ann = read_voc_xml(filename)
    return [{"name": o.name, "pose": o.pose, "truncated": o.truncated, "difficult": o.difficult,
             "bbox": list(o.bbox)} for o in ann.objects]


def install() -> None:
    """Make Detectron2's builtin VOC registrations and its VOC evaluator read through this module.

    The registrations call ``pascal_voc.load_voc_instances`` by name when a dataset is first loaded, and
    ``voc_eval`` calls the module-level ``parse_rec``; replacing both names switches every reader.
    """
    from detectron2.data.datasets import pascal_voc
    from detectron2.evaluation import pascal_voc_evaluation

    pascal_voc.load_voc_instances = load_voc_instances
    pascal_voc_evaluation.parse_rec = parse_rec
