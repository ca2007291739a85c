"""Detectron2's checkpointer, made safe for untrusted weights and for interrupted runs.

:class:`SuiteCheckpointer` is ``DetectionCheckpointer`` with three changes:

* **No code runs from a weights file**: ``.pkl`` files go through ``transfer.safe_pickle`` (an allow-list
  unpickler) and every other file through ``torch.load(weights_only=True)``; a refusal is one line.
  ``install()`` puts the same reading into every ``DetectionCheckpointer`` (conversion checks, eval-only).
* **Atomic saves**: a checkpoint is written to a temporary file and renamed, so a kill or a full disk never
  leaves a truncated ``model_final.pth``; files get the user's umask (shared lab folders stay readable).
* **Load report**: loading pretrained weights leaves a :class:`transfer.load_report.LoadReport`.

A ``.pkl``'s values are checked before Detectron2 copies them (``transfer/weight_checks.py``: non-finite,
non-float, all-zero or negative-variance tensors are refused in one line; float16 is widened, said in a note).
"""

from __future__ import annotations

import os
from typing import Any

from detectron2.checkpoint import DetectionCheckpointer

import logging

from transfer import safe_pickle
from core.atomic import torch_save_atomic, write_atomic
from transfer.checkpoint_io import ConvertError, load_untrusted
from transfer.load_report import LoadReport, build_report
from transfer.weight_checks import WeightValuesError, check_tensors

_logger = logging.getLogger("transfer.checkpointer")


class WeightsError(Exception):
    """A weights or checkpoint file that cannot be used; one actionable line."""


def read_pkl_for_detectron2(filename: str, notes: list[str] | None = None) -> dict[str, Any]:
    """A ``.pkl`` in the form Detectron2's loader expects, read without running code, its values checked
    (``notes`` receives what was converted, e.g. float16 widened).

    Detectron2's rules: a dict with ``model`` and ``__author__`` is a model-zoo file and is used as it is;
    anything else is a Caffe2 / Detectron1 file: its ``blobs`` (if any) are the weights, ``*_momentum``
    entries are dropped, and its names are converted by heuristics. A pretraining checkpoint saved as
    ``.pkl`` (tensors one level down) or anything else is refused in one line.
    """
    from transfer.weights import layout_of, not_weights_line

    try:
        data = safe_pickle.load(filename)
    except safe_pickle.UnsafePickleError as e:
        raise WeightsError(str(e)) from None
    kind, why = layout_of(data)
    if kind in ("foreign", "checkpoint"):
        raise WeightsError(not_weights_line(filename, kind, why))
    if kind == "caffe2":
        blobs = data.get("blobs", data)
        blobs = {k: v for k, v in blobs.items() if not str(k).endswith("_momentum")}
        data = {"model": blobs, "__author__": "Caffe2", "matching_heuristics": True}
    if any(not isinstance(k, str) for k in data["model"]):
        raise WeightsError(f"{filename}: not a weights file (its tensor names are not all strings)")
    try:
        data["model"], found = check_tensors(data["model"], filename)
    except WeightValuesError as e:
        raise WeightsError(str(e)) from None
    for line in found:
        _logger.warning(line)
    if notes is not None:
        notes += found
    return data


def _safe_load_file(self: DetectionCheckpointer, filename: str) -> Any:
    if filename.endswith(".pkl"):
        self.value_notes = []
        return read_pkl_for_detectron2(filename, self.value_notes)
    if filename.endswith(".pyth"):
        raise WeightsError(f"{filename}: pycls .pyth files are not supported; convert it with transfer/convert.py")
    return _ORIGINAL_LOAD_FILE(self, filename)  # its .pth branch calls _torch_load below


def _safe_torch_load(self: DetectionCheckpointer, f: str) -> Any:
    try:
        return load_untrusted(f)
    except ConvertError as e:
        raise WeightsError(str(e)) from None


_ORIGINAL_LOAD_FILE = DetectionCheckpointer._load_file


def install() -> None:
    """Route every ``DetectionCheckpointer`` through the safe readers (idempotent)."""
    DetectionCheckpointer._load_file = _safe_load_file
    DetectionCheckpointer._torch_load = _safe_torch_load


class SuiteCheckpointer(DetectionCheckpointer):
    """``DetectionCheckpointer`` with safe reading, atomic saving and a load report (module doc)."""

    last_load_report: LoadReport | None = None
    report_source: str = "weights"
    value_notes: list[str] = []  # what reading the weights converted (float16 widened)

    _load_file = _safe_load_file
    _torch_load = _safe_torch_load

    def save(self, name: str, **kwargs: Any) -> None:
        if not self.save_dir or not self.save_to_disk:
            return
        data = {"model": self.model.state_dict()}
        data.update({key: obj.state_dict() for key, obj in self.checkpointables.items()})
        data.update(kwargs)
        basename = f"{name}.pth"
        path = os.path.join(self.save_dir, basename)
        self.logger.info(f"Saving checkpoint to {path}")

        torch_save_atomic(data, path)
        self.tag_last_checkpoint(basename)

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        write_atomic(os.path.join(self.save_dir, "last_checkpoint"), lambda tmp: tmp.write_text(last_filename_basename))

    def _load_model(self, checkpoint: Any) -> Any:
        file_shapes = {str(k): tuple(getattr(v, "shape", ())) for k, v in checkpoint.get("model", {}).items()}
        model_shapes = {k: tuple(v.shape) for k, v in self.model.state_dict().items()}
        incompatible = super()._load_model(checkpoint)
        self.last_load_report = build_report(self.report_source, model_shapes, file_shapes,
                                             incompatible.missing_keys, incompatible.unexpected_keys,
                                             incompatible.incorrect_shapes)
        return incompatible
