"""PASCAL VOC 2012 semantic segmentation (MoCo paper Table 6): the Cityscapes FCN-16s recipe on train_aug2012
(VOC2012 train + SBD, 10,582 images) -> val2012 (1,449), crop 513, 30k iterations, mIoU over 21 classes
(``transfer/configs/voc_semseg/``; runner ``bash benchmarks/run_voc_semseg.sh``). All the suite knows about it
is here: the datasets, the train_aug builder from SBD (``python -m benchmarks.voc_sbd``), the dataset check, the
tiny layout, the task and its runner entry.

The datasets.

Detectron2 registers no VOC semantic segmentation; :func:`register_voc_semseg` adds, under
``$DETECTRON2_DATASETS`` (or ``datasets``), when the trainer reads its config:

* ``voc_2012_sem_seg_train_aug`` — the "train_aug" set (VOC2012 train + SBD train/val, minus VOC2012 val:
  10,582 images), ids in ``VOC2012/ImageSets/Segmentation/train_aug.txt``, labels
  ``VOC2012/SegmentationClassAug/<id>.png``;
* ``voc_2012_sem_seg_val`` — VOC2012 val (1,449 images), ids in ``ImageSets/Segmentation/val.txt``, labels
  the official ``VOC2012/SegmentationClass/<id>.png``;

images ``VOC2012/JPEGImages/<id>.jpg``. Labels are class indices 0-20 (0 background, then Detectron2's 20
VOC ``CLASS_NAMES``) and 255 (object borders and "difficult" regions: ignored). :func:`prepare` (``python -m benchmarks.voc_sbd``)
writes ``SegmentationClassAug`` and ``train_aug.txt`` from SBD's ``cls/*.mat``; ``python -m
benchmarks.dataset_check voc_semseg`` checks the layout.

Why not Detectron2's ``load_sem_seg``: it pairs every file of an image folder with every file of a label
folder, while VOC's splits are list files over one shared ``JPEGImages`` (17k images, of which 1,449 are val
and would otherwise be trained on). The metadata is what ``SemSegEvaluator`` reads (``stuff_classes``,
``ignore_label``).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image

from transfer.tasks.registry import register
from transfer.tasks.base import CONFIGS, Benchmark, RunSpec, Task
from transfer.tasks.checks import Problems, _listdir
from transfer.tasks.images import image_problem

import os  # noqa: E402



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


# ----------------------------------------------------------------------------- train_aug from SBD

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


# ----------------------------------------------------------------------------- check and tiny layout

VOC_SEMSEG_PAPER_SIZES = {"train_aug": 10582, "val": 1449}


def _label_png_problem(path: Path, size: tuple[int, int] | None, train: bool) -> str | None:
    """A VOC class-label PNG: readable, 8-bit grayscale (training) or palette (val), classes 0-20 or 255."""
    import numpy as np
    from PIL import Image

    from core.files import irregular

    if irregular(path):
        return f"{path}: {irregular(path)}"
    try:
        with Image.open(path) as img:
            mode, got = img.mode, img.size
            values = np.bincount(np.asarray(img, dtype=np.uint8).ravel(), minlength=256)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        return f"{path}: cannot read as a label PNG ({str(exc).splitlines()[0][:120]})"
    if mode not in ("L", "P"):
        return f"{path}: {mode} image; labels are 8-bit class indices (grayscale or VOC palette PNG)"
    if train and mode == "P":
        return (f"{path}: palette PNG; Detectron2's training loader reads labels as grayscale and would turn its "
                "colours into luminance: rewrite it with `python -m benchmarks.voc_sbd --voc <VOC2012>`")
    bad = [v for v in np.nonzero(values)[0].tolist() if 20 < v < 255]
    if bad:
        return f"{path}: holds values {bad[:5]} that are neither classes 0-20 nor 255 (ignore)"
    if size is not None and got != size:
        return f"{path}: size {got[0]}x{got[1]} differs from its image's {size[0]}x{size[1]}"
    return None


def check_voc_semseg(root: Path | str, notes: list[str] | None = None) -> list[str]:
    """Check ``<root>/VOC2012`` for ``voc_2012_sem_seg_{train_aug,val}`` (registered above): the split
    lists, every listed image (present, complete) and label PNG (present, class indices 0-20/255, grayscale
    for training, the image's size), and that no val image is in train_aug."""
    from PIL import Image

    root, problems = Path(root), Problems()
    notes = [] if notes is None else notes
    base = root / "VOC2012"
    if not base.is_dir():
        problems.add("missing-dir", f"{base}: directory missing (Pascal VOC2012 devkit folder)")
        return problems.lines()
    fix = f"`python -m benchmarks.voc_sbd --voc {base} --sbd <SBD>/dataset`"
    splits: dict[str, list[str]] = {}
    for name, (split_file, label_dir) in VOC_SEMSEG_SPLITS.items():
        short = name.rsplit("_sem_seg_", 1)[1]
        path = base / split_file
        if not path.is_file():
            hint = f"; build it (and {label_dir}/ from SBD's cls/*.mat) with {fix}" if short == "train_aug" else ""
            problems.add("missing-split", f"{path}: split file missing{hint}")
            continue
        if not (base / label_dir).is_dir():
            hint = f"; write it from SBD's cls/*.mat with {fix}" if label_dir == "SegmentationClassAug" else ""
            problems.add("missing-dir", f"{base / label_dir}: directory missing{hint}")
        ids = splits[short] = read_split(path)
        if not ids:
            problems.add("short-split", f"{path}: lists no image")
        if len(ids) != VOC_SEMSEG_PAPER_SIZES[short]:
            notes.append(f"{path}: {len(ids)} images (the paper's {short} has {VOC_SEMSEG_PAPER_SIZES[short]})")
        jpegs, labels = _listdir(base / "JPEGImages"), _listdir(base / label_dir)
        for i in ids:
            jpeg, label = base / "JPEGImages" / f"{i}.jpg", base / label_dir / f"{i}.png"
            size = None
            if f"{i}.jpg" not in jpegs:
                problems.add("missing-jpeg", f"{jpeg}: missing (listed in {path})")
            else:
                line = image_problem(jpeg)
                if line:
                    problems.add("bad-image", line)
                else:
                    with Image.open(jpeg) as img:
                        size = img.size
            if f"{i}.png" not in labels:
                problems.add("missing-label", f"{label}: missing (listed in {path})"
                             + (f"; write the train_aug labels with {fix}" if short == "train_aug" else ""))
                continue
            line = _label_png_problem(label, size, train=short == "train_aug")
            if line:
                problems.add("bad-label", line)
    both = sorted(set(splits.get("train_aug", [])) & set(splits.get("val", [])))
    if both:
        problems.add("val-in-train", f"{base / VOC_SEMSEG_SPLITS['voc_2012_sem_seg_train_aug'][0]}: lists "
                                     f"{len(both)} val image(s) (e.g. {both[0]}); train_aug excludes val: rebuild it "
                                     f"with {fix}")
    return problems.lines()








def write_voc_semseg(root: Path, seed: int) -> Path:
    """VOC2012 segmentation splits and an SBD-layout folder over the tiny VOC2012 images, then the train_aug
    set built from them by ``benchmarks/voc_sbd.py`` (as a user does).

    VOC2012 ``ImageSets/Segmentation``: the first 40% of the ids are ``train``, the next 30% ``val``. SBD
    (``sbd/dataset/cls/<id>.mat``, ``train.txt``, ``val.txt``; no borders): everything from 20% on, so it
    overlaps VOC train (the VOC label is kept), covers VOC val (left out of train_aug) and adds the rest.
    """
    base = root / "VOC2012"
    ids = (base / "ImageSets" / "Main" / "trainval.txt").read_text().split()
    n = len(ids)
    train, val = ids[: max(1, int(0.4 * n))], ids[max(1, int(0.4 * n)): max(2, int(0.7 * n))]
    seg_sets = base / "ImageSets" / "Segmentation"
    seg_sets.mkdir(parents=True, exist_ok=True)
    (seg_sets / "train.txt").write_text("".join(f"{i}\n" for i in train))
    (seg_sets / "val.txt").write_text("".join(f"{i}\n" for i in val))
    (seg_sets / "trainval.txt").write_text("".join(f"{i}\n" for i in train + val))
    sbd = root / "sbd" / "dataset"
    sbd_ids = ids[int(0.2 * n):]
    for i in sbd_ids:
        with Image.open(base / "SegmentationClass" / f"{i}.png") as img:
            labels = np.asarray(img).copy()
        labels[labels == 255] = 0  # SBD has no border class
        write_sbd_cls(sbd / "cls" / f"{i}.mat", labels)
    for i in ids:  # VOC2012 has official labels for its segmentation train/val images only
        if i not in train and i not in val:
            (base / "SegmentationClass" / f"{i}.png").unlink()
    cut = len(sbd_ids) * 3 // 4
    (sbd / "train.txt").write_text("".join(f"{i}\n" for i in sbd_ids[:cut]))
    (sbd / "val.txt").write_text("".join(f"{i}\n" for i in sbd_ids[cut:]))
    prepare(base, sbd)
    return base












# ----------------------------------------------------------------------------- the task and the runner


def _evaluator(cfg: Any, name: str, out: str) -> Any:
    from detectron2.evaluation import SemSegEvaluator

    return SemSegEvaluator(name, distributed=True, output_dir=out)


VOC_SEMSEG = Task("voc_semseg", ("voc_2012_sem_seg_",), _evaluator, lambda r: {"mIoU": r["sem_seg"]["mIoU"]},
                  title="PASCAL VOC semantic segmentation", paper_table="Table 6", metrics=("mIoU",), short="VOC sem. seg.",
                  applies=lambda cfg: cfg.MODEL.META_ARCHITECTURE == "SemanticSegmentor")


def has_voc_semseg(root: Path) -> bool:
    return (root / "VOC2012" / "SegmentationClass").is_dir()


def _spec(args: argparse.Namespace) -> RunSpec:
    return RunSpec(
        name="voc_semseg", prog="run_voc_semseg.sh", table="Table 6", dataset="VOC2012 segmentation (train_aug, val)",
        has_data=has_voc_semseg, check=lambda root, notes: check_voc_semseg(root, notes=notes),
        config=CONFIGS / "voc_semseg" / "voc_semseg_R_50_FCN16s_30k.yaml", run_dir="R50-dilated-FCN16s",
        tiny_config=CONFIGS / "tiny" / "voc_semseg_R_18_FCN16s_tiny.yaml", tiny_run_dir="R18-dilated-FCN16s",
    )


def _write_tiny(root: Path, seed: int, sizes: dict[str, int]) -> str:
    write_voc_semseg(root, seed)  # over the tiny VOC2012 images the voc task wrote
    n = sizes.get("voc2012_trainval", 40)
    return f"segmentation train {int(0.4 * n)}, val {int(0.7 * n) - int(0.4 * n)}, SBD .mat -> train_aug"


BENCHMARK = register(Benchmark(
    name="voc_semseg", summary="PASCAL VOC semantic segmentation, FCN-16s (MoCo v1 Table 6)", tasks=(VOC_SEMSEG,),
    dataset="VOC2012 segmentation (train_aug, val)", has_data=has_voc_semseg, check=check_voc_semseg,
    needs=("VOC2012/JPEGImages", "VOC2012/SegmentationClass", "VOC2012/SegmentationClassAug",
           "VOC2012/ImageSets/Segmentation/val.txt", "VOC2012/ImageSets/Segmentation/train_aug.txt"),
    spec=_spec, write_tiny=_write_tiny, tiny_dirs=("sbd",), register_datasets=register_voc_semseg,
))
