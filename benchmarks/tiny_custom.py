"""A tiny detection dataset with your own class names, in both layouts ``run_custom.sh`` reads
(``transfer/tasks/custom.py``: the same seeded scenes as the other tiny data; class ``i`` is drawn with the
``i``-th shape style)::

    <out>/coco/images/{train,test}/*.jpg, <out>/coco/annotations/{train,test}.json   (boxes and polygons)
    <out>/voc/{JPEGImages,Annotations,ImageSets/Main/{trainval,test}.txt}

for the worked example in docs/own-data.md and the tests. Not real data: numbers on it say nothing about
transfer. CLI::

    python -m benchmarks.tiny_custom --out DIR [--classes widget,gadget] [--train 40] [--test 20] [--seed 0]
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

from transfer.tasks.custom import write_custom  # noqa: F401  (the writer; re-exported for callers of this module)
from core.cli import ArgumentParser


def main(argv: Sequence[str] | None = None) -> int:
    p = ArgumentParser(description=__doc__.split("\n\n")[0])
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
