"""PASCAL VOC semantic segmentation transfer (MoCo paper Table 6):
``bash benchmarks/run_voc_semseg.sh [flags] [-- D2 opts]``.

Full protocol (VOC2012 with the SBD-augmented train_aug set under ``$DETECTRON2_DATASETS``; build
``SegmentationClassAug`` and ``train_aug.txt`` from SBD with ``python -m benchmarks.voc_sbd``): the paper's FCN-16s
on R50 with a dilated res5, train_aug2012 (10,582 images) -> val2012 (1,449), crop 513, 30k iterations, lr 0.003,
mIoU over 21 classes; N trials per row with seeds ``seed .. seed+N-1``, rows: supervised ImageNet (MSRA R-50.pkl),
your ``--weights``, random init.

Embedded default (``--tiny``, or when no VOC2012 segmentation is found): the same pipeline at small scale on the
generated tiny VOC2012 images with SBD-style labels: short MoCo v2 pretraining and a supervised counterpart
(ResNet-18), fine-tuned next to random init with a small FCN-16s.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from benchmarks.common import CONFIGS, Benchmark, base_parser, parse_with_opts, run_benchmark


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = base_parser("run_voc_semseg.sh", __doc__.split("\n\n")[0].replace("\n", " "), "voc_semseg")
    return parse_with_opts(p, argv)


def has_voc_semseg(root: Path) -> bool:
    return (root / "VOC2012" / "SegmentationClass").is_dir()


def benchmark(args: argparse.Namespace) -> Benchmark:
    from benchmarks.dataset_check import check_voc_semseg

    return Benchmark(
        name="voc_semseg", prog="run_voc_semseg.sh", table="Table 6", dataset="VOC2012 segmentation (train_aug, val)",
        has_data=has_voc_semseg, check=lambda root, notes: check_voc_semseg(root, notes=notes),
        config=CONFIGS / "voc_semseg" / "voc_semseg_R_50_FCN16s_30k.yaml", run_dir="R50-dilated-FCN16s",
        tiny_config=CONFIGS / "tiny" / "voc_semseg_R_18_FCN16s_tiny.yaml", tiny_run_dir="R18-dilated-FCN16s",
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_benchmark(benchmark(args), args)


if __name__ == "__main__":
    sys.exit(main())
