"""A tiny detection dataset with your own class names, in both layouts ``run_custom.sh`` reads.

The same seeded scenes as ``benchmarks/tiny_data.py`` (coloured shapes on textured backgrounds; class ``i``
is drawn with the ``i``-th shape style), written twice::

    <out>/coco/images/{train,test}/*.jpg, <out>/coco/annotations/{train,test}.json   (boxes and polygons)
    <out>/voc/{JPEGImages,Annotations,ImageSets/Main/{trainval,test}.txt}

for the README's worked example and the tests. Not real data: numbers on it say nothing about transfer. CLI::

    python -m benchmarks.tiny_custom --out DIR [--classes widget,gadget] [--train 40] [--test 20] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

from benchmarks.tiny_data import (
    DET_HEIGHTS,
    DET_WIDTHS,
    README_MARKER,
    STYLES,
    _coco_annotation,
    _rng,
    _save_jpeg,
    _voc_xml,
    shape_scene,
)


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


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--classes", default="widget", help="comma-separated class names (default: widget)")
    p.add_argument("--train", type=int, default=40, help="training images (default 40)")
    p.add_argument("--test", type=int, default=20, help="test images (default 20)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    try:
        paths = write_custom(args.out, [c.strip() for c in args.classes.split(",") if c.strip()], args.train,
                             args.test, args.seed)
    except ValueError as e:
        print(f"tiny_custom: error: {e}", file=sys.stderr)
        return 2
    c = paths["coco"]
    print(f"COCO json: --train {c}/annotations/train.json:{c}/images/train "
          f"--test {c}/annotations/test.json:{c}/images/test")
    print(f"VOC layout: --voc {paths['voc']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
