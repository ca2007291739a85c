"""COCO dense pose estimation transfer (MoCo paper Table 6): ``bash benchmarks/run_densepose.sh [flags] [-- D2 opts]``.

Needs Detectron2's DensePose project (package ``densepose``, from ``projects/DensePose`` of a Detectron2 checkout;
not on PyPI): without it the runner stops in one line naming what to install, before anything else.

Full protocol (DensePose-COCO under ``$DETECTRON2_DATASETS/coco``: ``annotations/densepose_{train2014,
valminusminival2014,minival2014}.json`` and the COCO 2014 images): DensePose R-CNN R50-FPN with SyncBN in the
backbone, FPN and box head, train2014 + valminusminival -> minival, "s1x" schedule (130k iterations), DensePose AP
(GPS) /AP50/AP75; N trials per row with seeds ``seed .. seed+N-1``, rows: supervised ImageNet (MSRA R-50.pkl),
your ``--weights``, random init.

Embedded default (``--tiny``, or when no DensePose-COCO is found): the same pipeline at small scale on generated
people with DensePose part masks and points.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from benchmarks.common import CONFIGS, Benchmark, base_parser, parse_with_opts, run_benchmark


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = base_parser("run_densepose.sh", __doc__.split("\n\n")[0].replace("\n", " "), "densepose")
    return parse_with_opts(p, argv)


def has_densepose(root: Path) -> bool:
    return (root / "coco" / "annotations" / "densepose_train2014.json").is_file()


def densepose_missing() -> str | None:
    from transfer import densepose_support

    return None if densepose_support.available() else densepose_support.MISSING


def benchmark(args: argparse.Namespace) -> Benchmark:
    from benchmarks.dataset_check import check_densepose

    return Benchmark(
        name="densepose", prog="run_densepose.sh", table="Table 6", dataset="DensePose-COCO (COCO 2014 images)",
        has_data=has_densepose, check=lambda root, notes: check_densepose(root, notes=notes),
        config=CONFIGS / "densepose" / "densepose_R_50_FPN_s1x.yaml", run_dir="R50-FPN-s1x",
        tiny_config=CONFIGS / "tiny" / "densepose_R_18_FPN_tiny.yaml", tiny_run_dir="R18-FPN",
        requires=densepose_missing,
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_benchmark(benchmark(args), args)


if __name__ == "__main__":
    sys.exit(main())
