"""Build PASCAL VOC's "train_aug" semantic segmentation set from VOC2012 and SBD (MoCo paper Table 6).

The paper trains on train_aug2012: VOC2012 train plus the Semantic Boundaries Dataset (SBD, Hariharan et al.
2011; its ``train.txt`` and ``val.txt``) minus VOC2012 val, 10,582 images. SBD ships its labels as MATLAB files
(``dataset/cls/<id>.mat``, struct ``GTcls`` with a ``Segmentation`` class map); Detectron2 has no reader for
them. This writes what the voc_semseg task (``transfer/tasks/voc_semseg.py``, where the converter lives) reads::

    VOC2012/SegmentationClassAug/<id>.png          class-index PNGs (8-bit grayscale, 0-20, 255 ignored)
    VOC2012/ImageSets/Segmentation/train_aug.txt   the train_aug ids

A train id with an official VOC2012 label (``SegmentationClass/<id>.png``, palette PNG) takes that label; the
others take SBD's. Existing palette PNGs in ``SegmentationClassAug`` (some distributions ship them) are
rewritten as grayscale index PNGs: Detectron2's training loader reads labels as 8-bit grayscale and would
otherwise turn palette colours into luminance. Without ``--sbd``, train_aug is VOC2012 train plus the ids that
already have a ``SegmentationClassAug`` PNG, minus val. CLI::

    python -m benchmarks.voc_sbd --voc $DETECTRON2_DATASETS/VOC2012 --sbd /path/to/benchmark_RELEASE/dataset
"""

from __future__ import annotations

import sys
from pathlib import Path

from transfer.tasks.voc_semseg import PAPER_TRAIN_AUG, SbdError, prepare, read_sbd_cls, write_sbd_cls  # noqa: F401
from core.cli import ArgumentParser


def main(argv: list[str] | None = None) -> int:
    p = ArgumentParser(prog="python -m benchmarks.voc_sbd", description=__doc__.split("\n\n")[0])
    p.add_argument("--voc", required=True, type=Path, help="the VOC2012 folder (JPEGImages, SegmentationClass, ...)")
    p.add_argument("--sbd", type=Path, help="SBD's dataset/ folder (cls/*.mat, train.txt, val.txt)")
    args = p.parse_args(argv)
    try:
        prepare(args.voc, args.sbd, log=print)
    except SbdError as e:
        print(f"voc_sbd: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
