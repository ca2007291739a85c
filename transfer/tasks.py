"""The fine-tuning tasks, as entries of one registry: which datasets belong to a task, which evaluator
scores it, and how the evaluator's output becomes the paper's metric names.

A new benchmark task is a config family plus one :class:`Task` registered here (and, for the runner, a
``benchmarks`` entry with its dataset check); ``transfer/train_net.py`` and the records read nothing else.
Evaluators are built lazily, so importing this module does not import Detectron2.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

Metrics = dict[str, float]


@dataclass(frozen=True)
class Task:
    name: str                                        # record task id, e.g. "voc_det"
    dataset_prefixes: tuple[str, ...]                # registered dataset names of this task start with one
    build_evaluator: Callable[[Any, str, str], Any]  # (cfg, dataset name, output folder) -> DatasetEvaluator
    to_metrics: Callable[[dict], Metrics]            # evaluator results -> paper metric names (percent)
    applies: Callable[[Any], bool] = field(default=lambda cfg: True)  # e.g. needs MODEL.MASK_ON

    def owns(self, dataset_name: str) -> bool:
        return dataset_name.startswith(self.dataset_prefixes)


TASKS: dict[str, Task] = {}


def register_task(task: Task) -> Task:
    """Add ``task``; later registrations of a name replace earlier ones (as Detectron2's catalogs refuse,
    this is deliberate: a project may override the suite's evaluator for a task)."""
    TASKS[task.name] = task
    return task


def task_of(cfg: Any) -> str:
    """The task whose datasets are all of ``cfg.DATASETS.TRAIN`` and ``TEST`` ("custom" if none)."""
    names = list(cfg.DATASETS.TRAIN) + list(cfg.DATASETS.TEST)
    for task in TASKS.values():
        if names and all(task.owns(n) for n in names) and task.applies(cfg):
            return task.name
    return "custom"


def evaluator_for(cfg: Any, dataset_name: str, output_folder: str) -> Any:
    """The paper's evaluator for a registered dataset."""
    for task in TASKS.values():
        if task.owns(dataset_name) and task.applies(cfg):
            return task.build_evaluator(cfg, dataset_name, output_folder)
    raise ValueError(f"no evaluator configured for dataset {dataset_name!r} (register a Task in transfer/tasks.py)")


def paper_metrics(task: str, results: dict) -> Metrics:
    """Map evaluator output to the paper's metric names (see core/records.py)."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}")
    return TASKS[task].to_metrics(results)


# ----------------------------------------------------------------------------- the suite's tasks

def _voc_evaluator(cfg: Any, name: str, out: str) -> Any:
    from transfer.evaluators import VOCDetectionEvaluator

    return VOCDetectionEvaluator(name)


def _coco_evaluator(cfg: Any, name: str, out: str) -> Any:
    from transfer.evaluators import COCOEvaluatorZeroWithoutDetections

    tasks = ("bbox", "segm") if cfg.MODEL.MASK_ON else ("bbox",)
    return COCOEvaluatorZeroWithoutDetections(name, tasks=tasks, output_dir=out, use_fast_impl=False)


def _cityscapes_instance_evaluator(cfg: Any, name: str, out: str) -> Any:
    from transfer.evaluators import CityscapesInstanceEvaluatorInFolder

    return CityscapesInstanceEvaluatorInFolder(name, out)


def _sem_seg_evaluator(cfg: Any, name: str, out: str) -> Any:
    from detectron2.evaluation import SemSegEvaluator

    return SemSegEvaluator(name, distributed=True, output_dir=out)


def _keypoint_evaluator(cfg: Any, name: str, out: str) -> Any:
    from transfer.evaluators import COCOEvaluatorZeroWithoutDetections

    return COCOEvaluatorZeroWithoutDetections(name, tasks=("bbox", "keypoints"), output_dir=out, use_fast_impl=False,
                                              kpt_oks_sigmas=cfg.TEST.KEYPOINT_OKS_SIGMAS)


def _lvis_evaluator(cfg: Any, name: str, out: str) -> Any:
    from transfer.evaluators import LVISEvaluatorNumpyCompat

    return LVISEvaluatorNumpyCompat(name, tasks=("bbox", "segm"), output_dir=out,
                                    max_dets_per_image=cfg.TEST.DETECTIONS_PER_IMAGE)


def _densepose_evaluator(cfg: Any, name: str, out: str) -> Any:
    from transfer.densepose_support import build_evaluator

    return build_evaluator(cfg, name, out)


def _is_semantic(cfg: Any) -> bool:
    return cfg.MODEL.META_ARCHITECTURE == "SemanticSegmentor"


def _voc_and_coco_evaluator(cfg: Any, name: str, out: str) -> Any:
    from transfer.evaluators import VOCAndCOCOEvaluator

    return VOCAndCOCOEvaluator(name, out)


_COCO_SUFFIXES = (("AP", ""), ("AP50", "50"), ("AP75", "75"), ("APs", "S"), ("APm", "M"), ("APl", "L"))


def coco_style_metrics(results: dict, iou_types: dict[str, str]) -> Metrics:
    """``{"bbox": {"AP": ..}, "segm": ..}`` -> ``{"APbb": .., "APbb50": .., "APmk": ..}`` for ``iou_types``
    ``{"bbox": "APbb", "segm": "APmk"}``."""
    out = {}
    for src, dst in iou_types.items():
        r = results.get(src, {})
        out.update({dst + suffix: r[k] for k, suffix in _COCO_SUFFIXES if k in r})
    return out


def lvis_metrics(results: dict) -> Metrics:
    """LVIS mask and box AP/AP50/AP75 and AP of the rare/common/frequent groups (``APmkr``, ``APbbf``, ...); a
    group without ground truth (the lvis package's -1, -100 after Detectron2's x100) is NaN, not a number."""
    out = {}
    for src, dst in (("segm", "APmk"), ("bbox", "APbb")):
        r = results.get(src, {})
        for key, suffix in (("AP", ""), ("AP50", "50"), ("AP75", "75"), ("APr", "r"), ("APc", "c"), ("APf", "f")):
            if key in r:
                out[dst + suffix] = r[key] if r[key] >= 0 else float("nan")
    return out


def densepose_metrics(results: dict) -> Metrics:
    """DensePose AP with the geodesic point similarity (GPS; Guler et al. 2018) as ``APdp``/``APdp50``/``APdp75``;
    the GPSm variant as ``APdpm*``, box AP as ``APbb*``."""
    out = coco_style_metrics(results, {"bbox": "APbb"})
    for src, dst in (("densepose_gps", "APdp"), ("densepose_gpsm", "APdpm")):
        r = results.get(src, {})
        out.update({dst + suffix: r[k] for k, suffix in (("AP", ""), ("AP50", "50"), ("AP75", "75")) if k in r})
    return out


register_task(Task("voc_det", ("voc_",), _voc_evaluator,
                   lambda r: {"AP50": r["bbox"]["AP50"], "AP": r["bbox"]["AP"], "AP75": r["bbox"]["AP75"]},
                   applies=lambda cfg: not _is_semantic(cfg)))
register_task(Task("coco_maskrcnn", ("coco_",), _coco_evaluator,
                   lambda r: coco_style_metrics(r, {"bbox": "APbb", "segm": "APmk"}),
                   applies=lambda cfg: bool(cfg.MODEL.MASK_ON)))
register_task(Task("coco_det", ("coco_",), _coco_evaluator, lambda r: coco_style_metrics(r, {"bbox": "APbb"})))
register_task(Task("cityscapes_instance", ("cityscapes_fine_instance_seg_",), _cityscapes_instance_evaluator,
                   lambda r: {"APmk": r["segm"]["AP"], "APmk50": r["segm"]["AP50"]}))
register_task(Task("cityscapes_semseg", ("cityscapes_fine_sem_seg_",), _sem_seg_evaluator,
                   lambda r: {"mIoU": r["sem_seg"]["mIoU"]}))
# MoCo v1 Table 6, with the ids and metric names of results/tables.py
register_task(Task("voc_semseg", ("voc_2012_sem_seg_",), _sem_seg_evaluator,
                   lambda r: {"mIoU": r["sem_seg"]["mIoU"]}, applies=_is_semantic))
register_task(Task("coco_keypoints", ("keypoints_coco_",), _keypoint_evaluator,
                   lambda r: coco_style_metrics(r, {"keypoints": "APkp", "bbox": "APbb"}),
                   applies=lambda cfg: bool(cfg.MODEL.KEYPOINT_ON)))
register_task(Task("lvis_v0.5", ("lvis_v0.5_",), _lvis_evaluator, lvis_metrics))
register_task(Task("coco_densepose", ("densepose_coco_",), _densepose_evaluator, densepose_metrics,
                   applies=lambda cfg: bool(cfg.MODEL.get("DENSEPOSE_ON", False))))


# Your own data (benchmarks/run_custom.sh; datasets registered by transfer/custom_data.py): COCO json is
# scored by pycocotools (box, and mask with MODEL.MASK_ON), a VOC-layout folder by the VOC07 metric and by
# pycocotools (APbb*) on the same predictions.
register_task(Task("custom_coco_maskrcnn", ("custom_coco_",), _coco_evaluator,
                   lambda r: coco_style_metrics(r, {"bbox": "APbb", "segm": "APmk"}),
                   applies=lambda cfg: bool(cfg.MODEL.MASK_ON)))
register_task(Task("custom_coco_det", ("custom_coco_",), _coco_evaluator,
                   lambda r: coco_style_metrics(r, {"bbox": "APbb"})))
register_task(Task("custom_voc", ("custom_voc_",), _voc_and_coco_evaluator,
                   lambda r: {"AP50": r["bbox"]["AP50"], "AP": r["bbox"]["AP"], "AP75": r["bbox"]["AP75"],
                              **coco_style_metrics({"bbox": r["coco_bbox"]}, {"bbox": "APbb"})}))
