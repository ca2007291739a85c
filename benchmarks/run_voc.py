"""PASCAL VOC detection transfer (MoCo paper Table 2): ``bash benchmarks/run_voc.sh [flags] [-- D2 opts]``.

Full protocol (VOC2007 + VOC2012 under ``$DETECTRON2_DATASETS``): Faster R-CNN R50-C4 or
R50-dilated-C5, trainval07+12 -> test2007, 24k iterations, N trials per row with seeds
``seed .. seed+N-1``, rows: supervised ImageNet (MSRA R-50.pkl), your ``--weights``, random init.

Embedded default (``--tiny``, or when no VOC is found): the same pipeline at small scale on the
generated tiny VOC-layout data: short MoCo v2 pretraining and a supervised counterpart (ResNet-18 on
the tiny ImageFolder), each converted and fine-tuned next to random init with a small C4 detector.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from benchmarks.common import (  # noqa: F401  (MSRA_R50, dataset_root: part of this module's interface)
    CONFIGS,
    MSRA_R50,
    Benchmark,
    base_parser,
    dataset_root,
    parse_with_opts,
    run_benchmark,
    tiny_banner,
)
from benchmarks.sweep_data import add_fraction_args, fraction_prepare

TINY_BANNER = tiny_banner("Table 2")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = base_parser("run_voc.sh", __doc__.split("\n\n")[0], "voc")
    p.add_argument("--arch", choices=["C4", "DC5"], default="C4", help="R50-C4 or R50-dilated-C5")
    add_fraction_args(p)
    return parse_with_opts(p, argv)


def has_voc(root: Path) -> bool:
    return (root / "VOC2007").is_dir() or (root / "VOC2012").is_dir()


def benchmark(args: argparse.Namespace) -> Benchmark:
    from benchmarks.dataset_check import check_voc

    return Benchmark(
        name="voc", prog="run_voc.sh", table="Table 2", dataset="VOC2007/VOC2012", has_data=has_voc,
        check=lambda root, notes: check_voc(root, notes=notes),
        config=CONFIGS / "voc" / f"voc_R_50_{args.arch}_24k.yaml", run_dir=f"R50-{args.arch}",
        prepare=fraction_prepare if args.train_fraction else None,
        tiny_config=CONFIGS / "tiny" / "voc_R_18_C4_tiny.yaml" if args.arch == "C4" else None, tiny_run_dir="R18-C4",
        tiny_unavailable="the embedded small-scale default runs the C4 detector only (drop --arch DC5 or provide "
                         "VOC under $DETECTRON2_DATASETS)",
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_benchmark(benchmark(args), args)


if __name__ == "__main__":
    sys.exit(main())
