"""PASCAL VOC detection (MoCo v1 Table 2): Faster R-CNN R50-C4 or R50-dilated-C5, trainval07+12 -> test2007,
24k iterations, AP50 with the VOC07 metric, AP and AP75 (``transfer/configs/voc/``).

All the suite knows about it: the task and its evaluator (``transfer/evaluators.py``), the dataset check (the
files each split lists, every annotation through the reader the loader and evaluator use,
``transfer/voc_xml.py``, every image), the tiny VOC2007/VOC2012 layout, and the runner entry
(``bash benchmarks/run_voc.sh``: ``--arch C4|DC5``, ``--train-fraction``). Detectron2 registers the datasets
(``voc_2007_trainval``, ``voc_2007_test``, ``voc_2012_trainval``) itself.
"""

from __future__ import annotations

import argparse
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

from transfer.tasks.registry import register
from transfer.tasks.base import CONFIGS, Benchmark, RunSpec, Task
from transfer.tasks.categories import voc_class_names
from transfer.tasks.checks import Problems, _listdir, _read_split
from transfer.tasks.draw import DETECTION_STYLES, Instance, _detection_scenes, _rng, _save_jpeg, save_voc_label, voc_label_map
from transfer.tasks.images import image_problem


VOC_SPLITS: tuple[tuple[str, str], ...] = (("VOC2007", "trainval"), ("VOC2007", "test"),
                                           ("VOC2012", "trainval"))




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


VOC_CLASSES_USED: tuple[str, ...] = tuple(DETECTION_STYLES)


def _voc_xml(folder: str, file_id: str, width: int, height: int, instances: list[Instance]) -> bytes:
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = folder
    ET.SubElement(root, "filename").text = f"{file_id}.jpg"
    source = ET.SubElement(root, "source")
    ET.SubElement(source, "database").text = "Synthetic tiny VOC (benchmarks.tiny_data)"
    size = ET.SubElement(root, "size")
    for tag, val in (("width", width), ("height", height), ("depth", 3)):
        ET.SubElement(size, tag).text = str(val)
    ET.SubElement(root, "segmented").text = "0"
    for inst in instances:
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = inst.name
        ET.SubElement(obj, "pose").text = "Unspecified"
        ET.SubElement(obj, "truncated").text = "0"
        ET.SubElement(obj, "difficult").text = "0"
        bnd = ET.SubElement(obj, "bndbox")
        x0, y0, x1, y1 = inst.box
        # VOC: 1-based inclusive pixel indices, so the 0-based corner box [x0, x1) becomes [x0+1, x1].
        for tag, val in (("xmin", x0 + 1), ("ymin", y0 + 1), ("xmax", x1), ("ymax", y1)):
            ET.SubElement(bnd, tag).text = str(val)
    ET.indent(root, space="\t")
    return ET.tostring(root, encoding="utf-8") + b"\n"


def write_voc(root: Path, year: int, splits: dict[str, int], seed: int, segmentation: bool = False) -> Path:
    """Write ``VOC<year>/`` with JPEGImages, Annotations and ImageSets/Main/<split>.txt (``segmentation``: also
    the class-label PNGs ``SegmentationClass/<id>.png``, VOC's palette, 255 on a 1 px object border)."""
    folder = f"VOC{year}"
    base = root / folder
    (base / "Annotations").mkdir(parents=True, exist_ok=True)
    (base / "ImageSets" / "Main").mkdir(parents=True, exist_ok=True)
    if segmentation:
        (base / "SegmentationClass").mkdir(exist_ok=True)
    next_index = 1
    for split, n in splits.items():
        rng = _rng(seed, f"voc{year}_{split}")
        ids = []
        for canvas, instances in _detection_scenes(rng, n, VOC_CLASSES_USED):
            file_id = f"{next_index:06d}" if year == 2007 else f"{year}_{next_index:06d}"
            next_index += 1
            h, w = canvas.shape[:2]
            _save_jpeg(canvas, base / "JPEGImages" / f"{file_id}.jpg")
            (base / "Annotations" / f"{file_id}.xml").write_bytes(_voc_xml(folder, file_id, w, h, instances))
            if segmentation:
                save_voc_label(voc_label_map(instances, h, w), base / "SegmentationClass" / f"{file_id}.png")
            ids.append(file_id)
        (base / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))
    return base


# ----------------------------------------------------------------------------- the task and its runner


def _evaluator(cfg: Any, name: str, out: str) -> Any:
    from transfer.evaluators import VOCDetectionEvaluator

    return VOCDetectionEvaluator(name)


def _is_semantic(cfg: Any) -> bool:
    return cfg.MODEL.META_ARCHITECTURE == "SemanticSegmentor"


VOC_DET = Task("voc_det", ("voc_",), _evaluator,
               lambda r: {"AP50": r["bbox"]["AP50"], "AP": r["bbox"]["AP"], "AP75": r["bbox"]["AP75"]},
               title="PASCAL VOC detection (Faster R-CNN)", paper_table="Table 2", metrics=("AP50", "AP", "AP75"),
               applies=lambda cfg: not _is_semantic(cfg))


def has_voc(root: Path) -> bool:
    return (root / "VOC2007").is_dir() or (root / "VOC2012").is_dir()


def _add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--arch", choices=["C4", "DC5"], default="C4", help="R50-C4 or R50-dilated-C5")


def _spec(args: argparse.Namespace) -> RunSpec:
    return RunSpec(
        name="voc", prog="run_voc.sh", table="Table 2", dataset="VOC2007/VOC2012", has_data=has_voc,
        check=lambda root, notes: check_voc(root, notes=notes),
        config=CONFIGS / "voc" / f"voc_R_50_{args.arch}_24k.yaml", run_dir=f"R50-{args.arch}",
        tiny_config=CONFIGS / "tiny" / "voc_R_18_C4_tiny.yaml" if args.arch == "C4" else None, tiny_run_dir="R18-C4",
        tiny_unavailable="the embedded small-scale default runs the C4 detector only (drop --arch DC5 or provide "
                         "VOC under $DETECTRON2_DATASETS)",
        train_fraction=True,
    )


def _write_tiny(root: Path, seed: int, sizes: dict[str, int]) -> str:
    write_voc(root, 2007, {"trainval": sizes["voc2007_trainval"], "test": sizes["voc2007_test"]}, seed)
    write_voc(root, 2012, {"trainval": sizes["voc2012_trainval"]}, seed, segmentation=True)
    return (f"VOC2007 trainval {sizes['voc2007_trainval']}, test {sizes['voc2007_test']}; "
            f"VOC2012 trainval {sizes['voc2012_trainval']}")


BENCHMARK = register(Benchmark(
    name="voc", summary="PASCAL VOC detection, Faster R-CNN (MoCo v1 Table 2)", tasks=(VOC_DET,),
    dataset="VOC2007/VOC2012", has_data=has_voc, check=check_voc,
    needs=("VOC2007/JPEGImages", "VOC2007/Annotations", "VOC2007/ImageSets/Main/trainval.txt",
           "VOC2007/ImageSets/Main/test.txt", "VOC2012/JPEGImages", "VOC2012/Annotations",
           "VOC2012/ImageSets/Main/trainval.txt"),
    add_args=_add_args, spec=_spec, write_tiny=_write_tiny,
    tiny_sizes={"voc2007_trainval": 40, "voc2007_test": 30, "voc2012_trainval": 40}, tiny_dirs=("VOC2007", "VOC2012"),
    train_fraction=True,
))
