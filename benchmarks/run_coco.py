"""COCO detection and instance segmentation transfer (MoCo paper Table 5):
``bash benchmarks/run_coco.sh --arch C4|FPN --schedule 1x|2x [flags] [-- D2 opts]``.

Full protocol (COCO 2017 under ``$DETECTRON2_DATASETS``): Mask R-CNN R50-C4 or R50-FPN with normalized
fine-tuning (SyncBN), train2017 -> val2017, 1x (90k) or 2x (180k) iterations, box and mask AP from
pycocotools; N trials per row with seeds ``seed .. seed+N-1``, rows: supervised ImageNet (MSRA R-50.pkl),
your ``--weights``, random init. The annotation files are validated first (categories, image and category
ids, boxes, segmentations).

Embedded default (``--tiny``, or when no COCO is found): the same pipeline at small scale on the generated
tiny COCO-layout data (the real 80 categories, 6 of them drawn): short MoCo v2 pretraining and a supervised
counterpart (ResNet-18), fine-tuned next to random init with a small Mask R-CNN of the chosen ``--arch``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from benchmarks.common import CONFIGS, Benchmark, base_parser, parse_with_opts, run_benchmark
from benchmarks.sweep_data import add_fraction_args, fraction_prepare


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = base_parser("run_coco.sh", __doc__.split("\n\n")[0].replace("\n", " "), "coco")
    p.add_argument("--arch", choices=["C4", "FPN"], default="FPN", help="Mask R-CNN R50-C4 or R50-FPN (default FPN)")
    p.add_argument("--schedule", choices=["1x", "2x"], default="1x", help="1x (90k iterations) or 2x (180k)")
    add_fraction_args(p)
    return parse_with_opts(p, argv)


def has_coco(root: Path) -> bool:
    return (root / "coco" / "annotations").is_dir()


def benchmark(args: argparse.Namespace) -> Benchmark:
    from benchmarks.dataset_check import check_coco

    return Benchmark(
        name="coco", prog="run_coco.sh", table="Table 5", dataset="COCO 2017", has_data=has_coco,
        check=lambda root, notes: check_coco(root, need_masks=True, notes=notes),
        config=CONFIGS / "coco" / f"coco_R_50_{args.arch}_{args.schedule}.yaml",
        run_dir=f"R50-{args.arch}-{args.schedule}",
        prepare=fraction_prepare if args.train_fraction else None,
        tiny_config=CONFIGS / "tiny" / f"coco_R_18_{args.arch}_tiny.yaml", tiny_run_dir=f"R18-{args.arch}",
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_benchmark(benchmark(args), args)


if __name__ == "__main__":
    sys.exit(main())
