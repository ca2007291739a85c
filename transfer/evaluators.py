"""Evaluators picked by dataset name, and the mapping of their outputs to the paper's metric names.

VOC: Detectron2's PascalVOCDetectionEvaluator (VOC07 11-point metric on voc_2007_test; "AP" is the
mean over IoU 0.50:0.05:0.95). The subclass here averages over the classes that have ground truth the
metric counts (a non-difficult object), as pycocotools does for COCO: identical on real VOC07 test (all 20
classes present); on subsets (tiny data) or your own data a class without such ground truth would otherwise
make the mean NaN, or count as AP 0 (all its objects difficult) and cap an ideal detector below 100. The
classes left out are logged. It also reports per-class AP50.
COCO: COCOEvaluator with the pure-Python pycocotools path (Detectron2's compiled evaluator may be absent),
box AP and, with MODEL.MASK_ON, mask AP (AP, AP50, AP75, APs/APm/APl, per category); a model without any
detection scores 0 instead of Detectron2's NaN.
Cityscapes instance segmentation: the official cityscapesscripts evaluator through Detectron2's
CityscapesInstanceEvaluator (mask AP and AP50 over the 8 thing classes); the script's matches.json goes
to the output folder instead of the working directory.
Cityscapes semantic segmentation: Detectron2's SemSegEvaluator on the 19 train ids (ignore 255): mIoU,
per-class IoU, pixel accuracy. IoUs are accumulated over the whole split, as in cityscapesscripts (and the same
for VOC's 21 classes).
LVIS v0.5: Detectron2's LVISEvaluator (the ``lvis`` package: AP, AP50, AP75, APr/APc/APf, up to 300 detections
per image); the last ``lvis`` release on PyPI (0.5.3) still calls ``np.float``, removed in NumPy 1.24, so the
alias is provided while it evaluates (and removed after).

Which evaluator a dataset gets, and how its output maps to the paper's metric names, is stated per
task module in ``transfer/tasks/``.
"""

from __future__ import annotations

import os
import tempfile
from collections import OrderedDict

import numpy as np
from contextlib import contextmanager

from detectron2.evaluation import (
    CityscapesInstanceEvaluator,
    COCOEvaluator,
    DatasetEvaluator,
    LVISEvaluator,
    PascalVOCDetectionEvaluator,
)
from detectron2.evaluation.pascal_voc_evaluation import voc_eval
from detectron2.utils import comm

from transfer.voc_xml import parse_rec


class VOCDetectionEvaluator(PascalVOCDetectionEvaluator):
    """PascalVOCDetectionEvaluator averaging over classes with ground truth (see module doc)."""

    def _classes_with_gt(self) -> set[str]:
        """Classes with a test object the VOC metric counts (not ``difficult``)."""
        with open(self._image_set_path) as f:
            ids = [line.split()[0] for line in f if line.strip()]
        return {obj["name"] for image_id in ids for obj in parse_rec(self._anno_file_template.format(image_id))
                if not obj["difficult"]}

    def evaluate(self):
        all_predictions = comm.gather(self._predictions, dst=0)
        if not comm.is_main_process():
            return None
        merged: dict[int, list[str]] = {}
        for per_rank in all_predictions:
            for cls_id, lines in per_rank.items():
                merged.setdefault(cls_id, []).extend(lines)
        present = self._classes_with_gt()
        self._logger.info(
            f"Evaluating {self._dataset_name} with the VOC{2007 if self._is_2007 else 2012} metric over "
            f"{len(present)}/{len(self._class_names)} classes with ground truth"
        )
        absent = [c for c in self._class_names if c not in present]
        if absent:
            self._logger.warning(f"no test object the VOC metric counts (non-difficult) for {', '.join(absent)}: "
                                 "left out of the mean AP (undefined, not 0)")
        aps: dict[int, list[float]] = {t: [] for t in range(50, 100, 5)}
        per_class = {}
        with tempfile.TemporaryDirectory(prefix="voc_eval_") as tmp:
            template = os.path.join(tmp, "{}.txt")
            for cls_id, name in enumerate(self._class_names):
                if name not in present:
                    continue
                with open(template.format(name), "w") as f:
                    f.write("\n".join(merged.get(cls_id, [""])))
                for t in aps:
                    _, _, ap = voc_eval(template, self._anno_file_template, self._image_set_path, name,
                                        ovthresh=t / 100.0, use_07_metric=self._is_2007)
                    aps[t].append(ap * 100)
                per_class[name] = aps[50][-1]
        m = {t: float(np.mean(v)) for t, v in aps.items()}
        ret = OrderedDict(bbox={"AP": float(np.mean(list(m.values()))), "AP50": m[50], "AP75": m[75]})
        ret["bbox_per_class_AP50"] = per_class
        return ret


class COCOEvaluatorZeroWithoutDetections(COCOEvaluator):
    """COCOEvaluator scoring a model with no detection at all as AP 0 (recall 0), not NaN as Detectron2 does;
    an area range without ground truth stays NaN (undefined in pycocotools too)."""

    def _derive_coco_results(self, coco_eval, iou_type, class_names=None):
        if coco_eval is not None:
            return super()._derive_coco_results(coco_eval, iou_type, class_names)
        self._logger.warning(f"no {iou_type} detections on the whole split: AP 0")
        areas = [a.get("area", 0) for a in self._coco_api.dataset["annotations"] if not a.get("iscrowd", 0)]
        present = {"AP": bool(areas), "APs": any(a <= 32**2 for a in areas),
                   "APm": any(32**2 <= a <= 96**2 for a in areas), "APl": any(a >= 96**2 for a in areas)}
        return {m: 0.0 if present.get(m, present["AP"]) else float("nan")
                for m in ("AP", "AP50", "AP75", "APs", "APm", "APl")}


class CityscapesInstanceEvaluatorInFolder(CityscapesInstanceEvaluator):
    """CityscapesInstanceEvaluator writing cityscapesscripts' ``matches.json`` into ``output_folder``."""

    def __init__(self, dataset_name: str, output_folder: str) -> None:
        super().__init__(dataset_name)
        self._output_folder = output_folder

    def evaluate(self):
        import cityscapesscripts.evaluation.evalInstanceLevelSemanticLabeling as cs_eval

        write = cs_eval.writeDict2JSON
        os.makedirs(self._output_folder, exist_ok=True)

        def write_in_folder(data, name):
            return write(data, name if os.path.isabs(name) else os.path.join(self._output_folder, name))

        cs_eval.writeDict2JSON = write_in_folder
        try:
            return super().evaluate()
        finally:
            cs_eval.writeDict2JSON = write


@contextmanager
def numpy_float_alias():
    """``np.float`` (= ``float``, the alias NumPy 1.24 removed) for code written before it, for this block only."""
    added = "float" not in np.__dict__
    if added:
        np.float = float  # type: ignore[attr-defined]
    try:
        yield
    finally:
        if added:
            del np.float


class LVISEvaluatorNumpyCompat(LVISEvaluator):
    """Detectron2's LVISEvaluator, runnable with the PyPI ``lvis`` 0.5.3 on NumPy >= 1.24 (see module doc)."""

    def evaluate(self):
        with numpy_float_alias():
            return super().evaluate()


class VOCAndCOCOEvaluator(DatasetEvaluator):
    """A VOC-layout dataset scored twice: the VOC07 metric (``bbox``: AP50, AP, AP75, as Table 2) and
    pycocotools' box AP (``coco_bbox``) on the same predictions. Detectron2's COCOEvaluator converts the
    dataset to COCO json in ``output_dir`` first; it keeps ``difficult`` objects as ground truth (the
    loader does not read that flag), where the VOC metric ignores them."""

    def __init__(self, dataset_name: str, output_dir: str) -> None:
        self.voc = VOCDetectionEvaluator(dataset_name)
        self.coco = COCOEvaluatorZeroWithoutDetections(dataset_name, tasks=("bbox",), output_dir=output_dir,
                                                       use_fast_impl=False)

    def reset(self) -> None:
        self.voc.reset()
        self.coco.reset()

    def process(self, inputs, outputs) -> None:
        self.voc.process(inputs, outputs)
        self.coco.process(inputs, outputs)

    def evaluate(self):
        voc, coco = self.voc.evaluate(), self.coco.evaluate()
        if not comm.is_main_process():
            return None
        return OrderedDict(**voc, coco_bbox=coco["bbox"])
