"""Cityscapes instance and semantic segmentation transfer (MoCo paper Table 6):
``bash benchmarks/run_cityscapes.sh --task instance|semantic [flags] [-- D2 opts]``.

Full protocol (Cityscapes under ``$DETECTRON2_DATASETS``, with gtFine labelTrainIds for ``semantic``):
``instance``: Mask R-CNN R50-FPN with SyncBN on Detectron2's Cityscapes recipe (24k iterations), mask AP
and AP50 from the official cityscapesscripts evaluator; ``semantic``: the paper's FCN-16s on R50 with a
dilated res5 (90k iterations, crop 769), mIoU over the 19 classes. N trials per row with seeds
``seed .. seed+N-1``, rows: supervised ImageNet (MSRA R-50.pkl), your ``--weights``, random init.

Embedded default (``--tiny``, or when no Cityscapes is found): the same pipeline at small scale on the
generated tiny Cityscapes-layout data (256x128 frames): short MoCo v2 pretraining and a supervised
counterpart (ResNet-18), fine-tuned next to random init with a small model of the chosen ``--task``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from benchmarks.common import CONFIGS, Benchmark, base_parser, parse_with_opts, run_benchmark

TASKS = {  # --task: (dataset_check task, full config, run dir, tiny config, tiny run dir)
    "instance": ("instance_seg", "cityscapes/cityscapes_instance_R_50_FPN_24k.yaml", "instance-R50-FPN",
                 "tiny/cityscapes_instance_R_18_FPN_tiny.yaml", "instance-R18-FPN"),
    "semantic": ("sem_seg", "cityscapes/cityscapes_semseg_R_50_FCN16s_90k.yaml", "semantic-R50-dilated-FCN16s",
                 "tiny/cityscapes_semseg_R_18_FCN16s_tiny.yaml", "semantic-R18-dilated-FCN16s"),
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = base_parser("run_cityscapes.sh", __doc__.split("\n\n")[0].replace("\n", " "), "cityscapes")
    p.add_argument("--task", choices=sorted(TASKS), default="instance",
                   help="instance (Mask R-CNN, APmk) or semantic (FCN-16s, mIoU) segmentation")
    return parse_with_opts(p, argv)


def has_cityscapes(root: Path) -> bool:
    return (root / "cityscapes" / "leftImg8bit").is_dir()


def benchmark(args: argparse.Namespace) -> Benchmark:
    from benchmarks.dataset_check import check_cityscapes

    check_task, config, run_dir, tiny_config, tiny_run_dir = TASKS[args.task]
    return Benchmark(
        name="cityscapes", prog="run_cityscapes.sh", table="Table 6", dataset="Cityscapes", has_data=has_cityscapes,
        check=lambda root, notes: check_cityscapes(root, check_task, notes=notes),
        config=CONFIGS / config, run_dir=run_dir, tiny_config=CONFIGS / tiny_config, tiny_run_dir=tiny_run_dir,
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_benchmark(benchmark(args), args)


if __name__ == "__main__":
    sys.exit(main())
