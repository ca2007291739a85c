"""COCO DensePose (MoCo paper Table 6) through Detectron2's DensePose project, when it is installed.

DensePose lives in Detectron2's ``projects/DensePose`` (package ``densepose``); it is not part of the
Detectron2 wheels and not on PyPI, so the suite does not vendor or reimplement it. What this module adds
around it, so that ``transfer/train_net.py`` trains a DensePose config like any other:

* :func:`is_densepose_config` tells from the YAML (following ``_BASE_``) that a config needs DensePose, and
  :func:`add_config` adds DensePose's config keys (``densepose.add_densepose_config``) before the file is
  merged — or, without the package, stops with :data:`MISSING` (one line naming what to install);
  ``read_only=True`` merges the file without it (unknown keys allowed) to read its values (tests, plans);
* :func:`register_datasets` re-registers ``densepose_coco_2014_*`` under ``$DETECTRON2_DATASETS``
  (the project registers them under ``./datasets``, unlike Detectron2's builtin datasets);
* :func:`train_mapper` / :func:`test_mapper` are the project's ``DatasetMapper`` (DensePose annotations);
* :func:`build_evaluator` is the project's trainer's evaluator: Detectron2's COCO box AP plus
  ``DensePoseCOCOEvaluator`` (AP with the geodesic point similarity, GPS and GPSm).

Evaluation (and horizontal-flip training) reads DensePose's SMPL-based data files (``SMPL_subdiv.mat``,
``Pdist_matrix.pkl``, ``UV_symmetry_transforms.mat``), which the project downloads on first use.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

MISSING = ("COCO DensePose needs Detectron2's DensePose project (Python package 'densepose'), which is not "
           "installed: install Detectron2 from source and then `pip install -e projects/DensePose` from its "
           "checkout (or `pip install 'git+https://github.com/facebookresearch/detectron2@main"
           "#subdirectory=projects/DensePose'`)")
DATASET_FILES = {  # name: (image folder, annotation file), relative to the dataset root (DensePose's layout)
    "densepose_coco_2014_train": ("coco/train2014", "coco/annotations/densepose_train2014.json"),
    "densepose_coco_2014_valminusminival": ("coco/val2014", "coco/annotations/densepose_valminusminival2014.json"),
    "densepose_coco_2014_minival": ("coco/val2014", "coco/annotations/densepose_minival2014.json"),
}


class DensePoseMissing(RuntimeError):
    """The config needs the ``densepose`` package and it is not importable (message: :data:`MISSING`)."""


def available() -> bool:
    import importlib.util

    return importlib.util.find_spec("densepose") is not None


def require() -> Any:
    """The ``densepose`` module, or :class:`DensePoseMissing`."""
    if not available():
        raise DensePoseMissing(MISSING)
    import densepose

    return densepose


def _yaml_chain(path: Path, depth: int = 0) -> list[dict]:
    """The YAML documents of ``path`` and its ``_BASE_`` files, nearest first."""
    doc = yaml.safe_load(path.read_text()) or {}
    base = doc.get("_BASE_")
    if not base or depth > 10 or "://" in str(base):
        return [doc]
    return [doc, *_yaml_chain((path.parent / base).resolve(), depth + 1)]


def is_densepose_config(config_file: str | Path) -> bool:
    """Whether ``config_file`` (or a ``_BASE_`` of it) sets ``MODEL.DENSEPOSE_ON: True``."""
    path = Path(config_file)
    if not path.is_file():
        return False
    for doc in _yaml_chain(path):
        model = doc.get("MODEL") if isinstance(doc, dict) else None
        if isinstance(model, dict) and "DENSEPOSE_ON" in model:
            return bool(model["DENSEPOSE_ON"])
    return False


def add_config(cfg: Any, read_only: bool = False) -> Any:
    """DensePose's config keys on ``cfg``; without the package, :class:`DensePoseMissing` (``read_only``:
    allow the file's unknown keys instead, to read its values)."""
    if available():
        require().add_densepose_config(cfg)
        return cfg
    if not read_only:
        raise DensePoseMissing(MISSING)
    cfg.set_new_allowed(True)
    return cfg


def register_datasets(root: str | Path) -> None:
    """Register the DensePose COCO 2014 splits under ``root`` (replacing the project's ``./datasets`` ones)."""
    from detectron2.data import DatasetCatalog, MetadataCatalog

    require()
    from densepose.data.datasets.coco import CocoDatasetInfo, register_dataset

    for name, (images, annotations) in DATASET_FILES.items():
        if name in DatasetCatalog.list():
            DatasetCatalog.remove(name)
            MetadataCatalog.remove(name)
        register_dataset(CocoDatasetInfo(name=name, images_root=images, annotations_fpath=annotations), str(root))


def train_mapper(cfg: Any) -> Any:
    from densepose.data import DatasetMapper

    return DatasetMapper(cfg, True)


def test_mapper(cfg: Any) -> Any:
    from densepose.data import DatasetMapper

    return DatasetMapper(cfg, False)


def build_evaluator(cfg: Any, dataset_name: str, output_folder: str) -> Any:
    """COCO box AP and DensePose GPS/GPSm AP, as the project's own trainer evaluates."""
    require()
    from densepose.evaluation import DensePoseCOCOEvaluator
    from densepose.evaluation.evaluator import build_densepose_evaluator_storage
    from detectron2.evaluation import COCOEvaluator, DatasetEvaluators

    ev = cfg.DENSEPOSE_EVALUATION
    return DatasetEvaluators([
        COCOEvaluator(dataset_name, tasks=("bbox",), output_dir=output_folder, use_fast_impl=False),
        DensePoseCOCOEvaluator(dataset_name, True, output_folder, evaluator_type=ev.TYPE,
                               min_iou_threshold=ev.MIN_IOU_THRESHOLD,
                               storage=build_densepose_evaluator_storage(cfg, output_folder)),
    ])
