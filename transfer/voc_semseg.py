"""PASCAL VOC 2012 semantic segmentation (MoCo paper Table 6) as Detectron2 datasets.

Detectron2 registers no VOC semantic segmentation; :func:`register_voc_semseg` adds, under
``$DETECTRON2_DATASETS`` (or ``datasets``), as ``transfer/modeling.py`` is imported:

* ``voc_2012_sem_seg_train_aug`` — the "train_aug" set (VOC2012 train + SBD train/val, minus VOC2012 val:
  10,582 images), ids in ``VOC2012/ImageSets/Segmentation/train_aug.txt``, labels
  ``VOC2012/SegmentationClassAug/<id>.png``;
* ``voc_2012_sem_seg_val`` — VOC2012 val (1,449 images), ids in ``ImageSets/Segmentation/val.txt``, labels
  the official ``VOC2012/SegmentationClass/<id>.png``;

images ``VOC2012/JPEGImages/<id>.jpg``. Labels are class indices 0-20 (0 background, then Detectron2's 20
VOC ``CLASS_NAMES``) and 255 (object borders and "difficult" regions: ignored). ``benchmarks/voc_sbd.py``
writes ``SegmentationClassAug`` and ``train_aug.txt`` from SBD's ``cls/*.mat``; ``python -m
benchmarks.dataset_check voc_semseg`` checks the layout.

Why not Detectron2's ``load_sem_seg``: it pairs every file of an image folder with every file of a label
folder, while VOC's splits are list files over one shared ``JPEGImages`` (17k images, of which 1,449 are val
and would otherwise be trained on). The metadata is what ``SemSegEvaluator`` reads (``stuff_classes``,
``ignore_label``).
"""

from __future__ import annotations

import os
from pathlib import Path

VOC_SEMSEG_SPLITS: dict[str, tuple[str, str]] = {  # name: (split list, label folder), under VOC2012/
    "voc_2012_sem_seg_train_aug": ("ImageSets/Segmentation/train_aug.txt", "SegmentationClassAug"),
    "voc_2012_sem_seg_val": ("ImageSets/Segmentation/val.txt", "SegmentationClass"),
}
IGNORE_LABEL = 255
NUM_CLASSES = 21


def voc_semseg_classes() -> list[str]:
    """``["background", "aeroplane", ..., "tvmonitor"]``: label index -> name."""
    from detectron2.data.datasets.pascal_voc import CLASS_NAMES

    return ["background", *CLASS_NAMES]


def read_split(path: Path | str) -> list[str]:
    """Image ids of a split file: one id per line, or DeepLab's ``/JPEGImages/<id>.jpg /Seg.../<id>.png``
    lines (the id is the stem of the first column)."""
    ids = []
    for line in Path(path).read_text().splitlines():
        first = line.split()[0] if line.strip() else ""
        if first:
            ids.append(Path(first).stem if "/" in first or first.endswith(".jpg") else first)
    return ids


def load_voc_sem_seg(voc_dir: Path | str, split_file: str, label_dir: str) -> list[dict]:
    """Detectron2 dicts (``file_name``, ``sem_seg_file_name``, ``image_id``) of the ids in ``split_file``."""
    voc_dir = Path(voc_dir)
    return [{"file_name": str(voc_dir / "JPEGImages" / f"{i}.jpg"),
             "sem_seg_file_name": str(voc_dir / label_dir / f"{i}.png"), "image_id": i}
            for i in read_split(voc_dir / split_file)]


def register_voc_semseg(root: Path | str) -> None:
    """Register both splits under ``root/VOC2012`` (names already registered are left alone)."""
    from detectron2.data import DatasetCatalog, MetadataCatalog

    voc_dir = Path(root) / "VOC2012"
    for name, (split_file, label_dir) in VOC_SEMSEG_SPLITS.items():
        if name in DatasetCatalog.list():
            continue
        DatasetCatalog.register(name, lambda s=split_file, d=label_dir: load_voc_sem_seg(voc_dir, s, d))
        MetadataCatalog.get(name).set(stuff_classes=voc_semseg_classes(), ignore_label=IGNORE_LABEL,
                                      evaluator_type="sem_seg", image_root=str(voc_dir / "JPEGImages"),
                                      sem_seg_root=str(voc_dir / label_dir))


def default_root() -> str:
    return os.path.expanduser(os.getenv("DETECTRON2_DATASETS", "datasets"))
