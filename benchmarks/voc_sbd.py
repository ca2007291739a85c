"""Build PASCAL VOC's "train_aug" semantic segmentation set from VOC2012 and SBD (MoCo paper Table 6).

The paper trains on train_aug2012: VOC2012 train plus the Semantic Boundaries Dataset (SBD, Hariharan et al.
2011; its ``train.txt`` and ``val.txt``) minus VOC2012 val, 10,582 images. SBD ships its labels as MATLAB files
(``dataset/cls/<id>.mat``, struct ``GTcls`` with a ``Segmentation`` class map); Detectron2 has no reader for
them. This writes what ``transfer/voc_semseg.py`` reads::

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

import argparse
import sys
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

PAPER_TRAIN_AUG = 10582


class SbdError(RuntimeError):
    """A file of the VOC/SBD layout is missing or unreadable (one line naming it)."""


def read_sbd_cls(path: Path | str) -> np.ndarray:
    """The class map (uint8, 0-20) of one SBD ``cls/<id>.mat``."""
    from scipy.io import loadmat
    from scipy.io.matlab import MatReadError

    try:
        mat = loadmat(str(path), squeeze_me=True, struct_as_record=False)
        seg = np.asarray(mat["GTcls"].Segmentation)
    except (OSError, KeyError, AttributeError, ValueError, TypeError, MatReadError) as e:
        raise SbdError(f"{path}: not an SBD cls file with GTcls.Segmentation ({type(e).__name__}: {e})") from None
    if seg.ndim != 2 or seg.max(initial=0) > 20:
        raise SbdError(f"{path}: GTcls.Segmentation is not a 2-D map of classes 0-20")
    return seg.astype(np.uint8)


def write_sbd_cls(path: Path | str, seg: np.ndarray) -> None:
    """Write ``seg`` as SBD does (struct ``GTcls`` with ``Segmentation``), e.g. for generated test data."""
    import io

    from scipy.io import savemat

    buf = io.BytesIO()
    savemat(buf, {"GTcls": {"Segmentation": seg.astype(np.uint8),
                            "CategoriesPresent": np.unique(seg[(seg > 0) & (seg < 255)]).astype(np.uint8)}})
    data = bytearray(buf.getvalue())
    data[:116] = b"MATLAB 5.0 MAT-file, written by benchmarks.voc_sbd".ljust(116)  # no creation time: same bytes
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_bytes(bytes(data))


def _ids(path: Path) -> list[str]:
    from transfer.voc_semseg import read_split

    if not path.is_file():
        raise SbdError(f"{path}: split file missing")
    return read_split(path)


def _save_index_png(labels: np.ndarray, path: Path) -> None:
    Image.fromarray(labels.astype(np.uint8), mode="L").save(path)


def prepare(voc_dir: Path | str, sbd_dir: Path | str | None = None,
            log: Callable[[str], None] | None = None) -> list[str]:
    """Write ``SegmentationClassAug/*.png`` and ``ImageSets/Segmentation/train_aug.txt`` under ``voc_dir``
    (``sbd_dir``: SBD's ``dataset/`` folder with ``cls/``, ``train.txt``, ``val.txt``); return the train_aug ids."""
    voc_dir = Path(voc_dir)
    say = log or (lambda line: None)
    seg_sets = voc_dir / "ImageSets" / "Segmentation"
    voc_train, voc_val = _ids(seg_sets / "train.txt"), set(_ids(seg_sets / "val.txt"))
    out = voc_dir / "SegmentationClassAug"
    out.mkdir(exist_ok=True)
    sbd_ids: list[str] = []
    if sbd_dir is not None:
        sbd_dir = Path(sbd_dir)
        sbd_ids = list(dict.fromkeys(_ids(sbd_dir / "train.txt") + _ids(sbd_dir / "val.txt")))
    train_aug = sorted((set(voc_train) | set(sbd_ids)) - voc_val)
    if sbd_dir is None:
        train_aug = sorted((set(voc_train) | {p.stem for p in out.glob("*.png")}) - voc_val)
    written = {"voc": 0, "sbd": 0, "palette": 0}
    voc_labels = voc_dir / "SegmentationClass"
    for i in train_aug:
        target = out / f"{i}.png"
        if (voc_labels / f"{i}.png").is_file():
            with Image.open(voc_labels / f"{i}.png") as img:
                _save_index_png(np.asarray(img), target)  # a palette PNG's array holds the class indices
            written["voc"] += 1
        elif sbd_dir is not None and (sbd_dir / "cls" / f"{i}.mat").is_file():
            _save_index_png(read_sbd_cls(sbd_dir / "cls" / f"{i}.mat"), target)
            written["sbd"] += 1
        elif target.is_file():
            with Image.open(target) as img:
                if img.mode != "P":
                    continue
                labels = np.asarray(img)
            _save_index_png(labels, target)
            written["palette"] += 1
        else:
            where = f" or {sbd_dir / 'cls' / (i + '.mat')}" if sbd_dir is not None else ""
            raise SbdError(f"no label for train_aug image {i}: neither {voc_labels / (i + '.png')}{where}")
    (seg_sets / "train_aug.txt").write_text("".join(f"{i}\n" for i in train_aug))
    say(f"train_aug: {len(train_aug)} images ({written['voc']} VOC2012 labels, {written['sbd']} from SBD .mat, "
        f"{written['palette']} palette PNGs rewritten) -> {out}, {seg_sets / 'train_aug.txt'}"
        + ("" if len(train_aug) == PAPER_TRAIN_AUG else f"; the paper's train_aug has {PAPER_TRAIN_AUG}"))
    return train_aug


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.voc_sbd", description=__doc__.split("\n\n")[0])
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
