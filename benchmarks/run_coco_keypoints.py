"""COCO keypoint detection transfer (MoCo paper Table 6): ``bash benchmarks/run_coco_keypoints.sh [flags] [-- D2 opts]``.

Full protocol (COCO 2017 person keypoints under ``$DETECTRON2_DATASETS``): Keypoint R-CNN R50-FPN with SyncBN in
the backbone, FPN and heads, keypoints_coco_2017_train -> val, 2x schedule (180k iterations), keypoint AP/AP50/AP75
from pycocotools; N trials per row with seeds ``seed .. seed+N-1``, rows: supervised ImageNet (MSRA R-50.pkl), your
``--weights``, random init. The keypoint annotation files are validated first.

Embedded default (``--tiny``, or when no COCO keypoints are found): the same pipeline at small scale on generated
people with COCO's 17 keypoints: short MoCo v2 pretraining and a supervised counterpart (ResNet-18), fine-tuned next
to random init with a small Keypoint R-CNN.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from benchmarks.common import CONFIGS, Benchmark, base_parser, parse_with_opts, run_benchmark


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = base_parser("run_coco_keypoints.sh", __doc__.split("\n\n")[0].replace("\n", " "), "coco_keypoints")
    return parse_with_opts(p, argv)


def has_keypoints(root: Path) -> bool:
    return (root / "coco" / "annotations" / "person_keypoints_train2017.json").is_file()


def benchmark(args: argparse.Namespace) -> Benchmark:
    from benchmarks.dataset_check import check_coco_keypoints

    return Benchmark(
        name="coco_keypoints", prog="run_coco_keypoints.sh", table="Table 6", dataset="COCO 2017 person keypoints",
        has_data=has_keypoints, check=lambda root, notes: check_coco_keypoints(root, notes=notes),
        config=CONFIGS / "keypoints" / "coco_keypoints_R_50_FPN_2x.yaml", run_dir="R50-FPN-2x",
        tiny_config=CONFIGS / "tiny" / "coco_keypoints_R_18_FPN_tiny.yaml", tiny_run_dir="R18-FPN",
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_benchmark(benchmark(args), args)


if __name__ == "__main__":
    sys.exit(main())
