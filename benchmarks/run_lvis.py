"""LVIS v0.5 instance segmentation transfer (MoCo paper Table 6): ``bash benchmarks/run_lvis.sh [flags] [-- D2 opts]``.

Full protocol (LVIS v0.5 json under ``$DETECTRON2_DATASETS/lvis`` with the COCO 2017 images under ``coco/``):
Mask R-CNN R50-FPN with SyncBN in the backbone, FPN and heads, lvis_v0.5_train -> val, 2x schedule (180k
iterations), repeat-factor sampling, mask AP/AP50/AP75 (and APr/APc/APf) from the lvis package; N trials per row
with seeds ``seed .. seed+N-1``, rows: supervised ImageNet (MSRA R-50.pkl), your ``--weights``, random init.
``--supervised-frozen-bn``: the supervised row fine-tunes with the backbone's BN frozen, as the paper's supervised
LVIS row (its dagger; appendix A.4: tuning BN made that baseline worse); the row is labelled "(BN frozen)" and its
records carry norm FrozenBN.

Embedded default (``--tiny``, or when no LVIS is found): the same pipeline at small scale on the generated tiny COCO
images relabelled with LVIS categories: short MoCo v2 pretraining and a supervised counterpart (ResNet-18),
fine-tuned next to random init with a small Mask R-CNN.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from benchmarks.common import CONFIGS, RGB_FLAVOUR, Benchmark, base_parser, parse_with_opts, run_benchmark
from benchmarks.runner import Row

FROZEN_BN_SUFFIX = "_frozenbn"
FROZEN_BN_LABEL = " (BN frozen)"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = base_parser("run_lvis.sh", __doc__.split("\n\n")[0].replace("\n", " "), "lvis")
    p.add_argument("--supervised-frozen-bn", action="store_true",
                   help="fine-tune the supervised row with the backbone's BN frozen (the paper's supervised LVIS row)")
    return parse_with_opts(p, argv)


def has_lvis(root: Path) -> bool:
    return (root / "lvis" / "lvis_v0.5_train.json").is_file()


def frozen_bn_supervised(rows: list[Row], tiny: bool) -> None:
    """Point the supervised row at the ``_frozenbn`` flavour of its config and label it."""
    for row in rows:
        if row.kind != "supervised":
            continue
        stem = row.config.stem
        stem = (stem[: -len(RGB_FLAVOUR)] + FROZEN_BN_SUFFIX + RGB_FLAVOUR if stem.endswith(RGB_FLAVOUR)
                else stem + FROZEN_BN_SUFFIX)
        row.config = row.config.with_name(stem + ".yaml")
        row.label += FROZEN_BN_LABEL


def benchmark(args: argparse.Namespace) -> Benchmark:
    from benchmarks.dataset_check import check_lvis

    return Benchmark(
        name="lvis", prog="run_lvis.sh", table="Table 6", dataset="LVIS v0.5 (with COCO 2017 images)",
        has_data=has_lvis, check=lambda root, notes: check_lvis(root, notes=notes),
        config=CONFIGS / "lvis" / "lvis_v0.5_R_50_FPN_2x.yaml", run_dir="R50-FPN-2x",
        tiny_config=CONFIGS / "tiny" / "lvis_v0.5_R_18_FPN_tiny.yaml", tiny_run_dir="R18-FPN",
        adjust_rows=frozen_bn_supervised if args.supervised_frozen_bn else None,
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_benchmark(benchmark(args), args)


if __name__ == "__main__":
    sys.exit(main())
