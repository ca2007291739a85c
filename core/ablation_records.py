"""Ablation records: the one JSON file each sweep point (pretraining -> linear/kNN -> optional VOC) leaves.

Writer: ``benchmarks/ablation.py`` (one per point and seed). Readers: ``results`` (Figure 3, the
momentum table, MoCo v2's Table 1 and its temperature sub-table, Table 3) and the sweep runner itself
(skip a finished point). Written atomically (temp file + rename), like trial records.

Schema ``SCHEMA`` (version 1)::

    {
      "schema": "moco-transfer-bench/ablation-record/1",
      "sweep": "figure3",                     # spec name
      "view": "figure3" | "momentum" | "v2_table1" | "temperature",
      "point": "memory-bank_K4096",           # point id (folder name)
      "label": "memory bank K=4096",          # row label (and the VOC rows' label)
      "params": {"mechanism": "memory-bank", "K": 4096, "m": 0.999, "T": 0.07, "mlp": false,
                 "aug_plus": false, "cos": false, "epochs": 200, "batch_size": 256, "lr": 0.03,
                 "arch": "resnet50", "bank_loss": "infonce", "bank_m": 0.5},    # effective values
      "eval": "linear" | "knn",               # what metrics.top1 is
      "seed": 0, "tiny": false,
      "status": "finished" | "failed", "error": null | "one line",
      "metrics": {"top1": 56.5,               # linear top-1 (val) or kNN top-1 of the final encoder, percent
                  "knn_top1": ..., "knn_top1_init": ...,   # kNN monitor: final, and at random initialisation
                  "pretext_loss_first": ..., "pretext_loss_last": ..., "pretext_acc1_last": ...},
      "checkpoint": "pretrain/checkpoint_0199.pth.tar",   # relative to the record's folder
      "voc": null | {"archs": ["C4", "DC5"], "trials": 5, "dir": "voc"},   # VOC trial records under dir
      "timings": {"pretrain_s": ..., "eval_s": ..., "voc_s": ...},
      "created": "ISO-8601 UTC", "host": "..."
    }
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from core.records import check_envelope, write_json_atomic

SCHEMA = "moco-transfer-bench/ablation-record/1"
RECORD_NAME = "ablation_record.json"
VIEWS = ("figure3", "momentum", "v2_table1", "temperature")
EVALS = ("linear", "knn")
REQUIRED_KEYS = ("schema", "sweep", "view", "point", "label", "params", "eval", "seed", "status", "metrics")


class AblationRecordError(ValueError):
    """An ablation record that cannot be used; one-line reason."""


def validate(record: Any, where: str = "record") -> dict[str, Any]:
    """Raise :class:`AblationRecordError` unless ``record`` follows the schema."""
    check_envelope(record, where, SCHEMA, REQUIRED_KEYS, AblationRecordError)
    if record["view"] not in VIEWS:
        raise AblationRecordError(f"{where}: unknown view {record['view']!r} (choose from {', '.join(VIEWS)})")
    if record["eval"] not in EVALS:
        raise AblationRecordError(f"{where}: unknown eval {record['eval']!r}")
    if record["status"] not in ("finished", "failed"):
        raise AblationRecordError(f"{where}: unknown status {record['status']!r}")
    if not isinstance(record["params"], dict) or not isinstance(record["metrics"], dict):
        raise AblationRecordError(f"{where}: 'params' and 'metrics' must be objects")
    for name, value in record["metrics"].items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise AblationRecordError(f"{where}: metric {name!r} is not a number ({value!r})")
    if record["status"] == "finished":
        top1 = record["metrics"].get("top1")
        if not isinstance(top1, (int, float)) or not math.isfinite(top1):
            raise AblationRecordError(f"{where}: finished point without a numeric top1")
    return record


def write_ablation_record(folder: str | os.PathLike, record: dict[str, Any]) -> Path:
    """Validate and atomically write ``record`` as ``folder/ablation_record.json``."""
    record = {"schema": SCHEMA, **record}
    validate(record)
    return write_json_atomic(Path(folder) / RECORD_NAME, record)


def read_ablation_record(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        raise AblationRecordError(f"{path}: no such record") from None
    except RecursionError:
        raise AblationRecordError(f"{path}: JSON nested too deeply to be an ablation record") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise AblationRecordError(f"{path}: corrupt JSON ({e.__class__.__name__}: {e})") from None
    return validate(record, where=str(path))


def finished_record(folder: str | os.PathLike) -> dict[str, Any] | None:
    """The record in ``folder`` when it says finished, else None."""
    try:
        record = read_ablation_record(Path(folder) / RECORD_NAME)
    except AblationRecordError:
        return None
    return record if record["status"] == "finished" else None
