"""Trial records: the one JSON file each fine-tuning trial leaves in its output dir.

Writers: ``transfer/train_net.py`` (one per trial). Readers: ``results`` (tables, plots) and the
``benchmarks/run_*.sh`` runners (skip finished trials). A record is written atomically, so a crash
never leaves a half-written file that could be mistaken for a finished trial.

Schema ``SCHEMA`` (version 1)::

    {
      "schema": "moco-transfer-bench/trial-record/1",
      "task": "voc_det" | "coco_maskrcnn" | "cityscapes_instance" | "cityscapes_semseg" | "voc_semseg",
      "arch": "R50-C4" | "R50-dilated-C5" | "R50-FPN" | "R50-dilated-FCN16s" | e.g. "R18-C4" (tiny),
      "schedule": "24k" | "1x" | "2x" | "d2-cityscapes" | "90k" | "30k" | e.g. "tiny-40",
      "pretrain": {"label": "MoCo IN-1M", "kind": "pretrained" | "supervised" | "random",
                   "method": "MoCo v2" | ... | "unknown" | null, "order": 2 | null,
                   "weights": "path or null", "sha256": "hex or null"},
      "trial": 0, "seed": 1234, "trials_requested": 5,
      "status": "finished" | "failed",
      "error": null | "one line",
      "metrics": {"AP50": 81.5, "AP": 55.9, "AP75": 62.6, ...},   # percent, paper metric names
      "dataset": {"train": [...], "test": [...]},
      "config_file": "...", "config": "full YAML of the run",
      "timings": {"train_and_eval_s": ..., "iterations_run": ..., "s_per_iter": ...},   # failed: {"train_s": ...}
      "world_size": 8,                      # processes (one per GPU) the trial ran on
      "gpu_hours": 41.2 | null,             # optional: time in this run x world size / 3600 on GPUs; null on a CPU
      "tiny": false, "created": "ISO-8601 UTC", "host": "...", "versions": {...},
      "demonstrates": null | {"arch": "ViTDet-B", "schedule": "table11"}   # tiny only: the full-scale benchmark
    }

``gpu_hours`` is optional (records written before it existed do not have it and still read; :func:`gpu_hours_of`
derives it from their time and world size when they ran on a GPU). ``kind`` is generic: ``pretrained`` (a backbone under test, whatever its method), ``supervised`` (the reference row
of the gaps) or ``random``; ``method`` is what the weights' layout says made them (``transfer/methods.py``) and
``order`` the row's place in the sweep (tables list pretrained rows in that order). Records written before these
existed read through :func:`pretrain_of`: kind ``moco`` is ``pretrained``, its method guessed from the label.

Metric names follow the paper tables (``results/data/paper_tables.csv``): VOC ``AP50/AP/AP75``;
COCO ``APbb, APbb50, APbb75, APmk, APmk50, APmk75`` (+ ``APbbS/M/L``, ``APmkS/M/L``);
Cityscapes instance ``APmk, APmk50``; semantic segmentation ``mIoU``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from core.atomic import write_atomic

SCHEMA = "moco-transfer-bench/trial-record/1"
RECORD_NAME = "trial_record.json"
REQUIRED_KEYS = ("schema", "task", "arch", "schedule", "pretrain", "trial", "seed", "status", "metrics")
KINDS = ("random", "supervised", "pretrained")
LEGACY_KINDS = {"moco": "pretrained"}  # written by versions before rows had a method: every pretrained row was "moco"
UNKNOWN_METHOD = "unknown"


class RecordError(ValueError):
    """A record that cannot be used (corrupt, partial, or of an unknown schema version)."""


def write_json_atomic(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as JSON to ``path`` via a temp file + rename (never a partial file)."""
    def write(tmp: Path) -> None:
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())

    return write_atomic(path, write)


def write_record(output_dir: str | os.PathLike, record: dict[str, Any]) -> Path:
    """Validate and atomically write ``record`` as ``output_dir/trial_record.json``."""
    record = {"schema": SCHEMA, **record}
    validate_record(record)
    return write_json_atomic(Path(output_dir) / RECORD_NAME, record)


def check_envelope(record: Any, where: str, schema: str, required: tuple[str, ...],
                   error: type[Exception]) -> None:
    """Raise ``error`` with a one-line reason unless ``record`` is a JSON object of ``schema`` with every
    ``required`` key (the part every record kind shares)."""
    if not isinstance(record, dict):
        raise error(f"{where}: not a JSON object")
    if record.get("schema") != schema:
        raise error(f"{where}: unknown schema {record.get('schema')!r} (expected {schema!r})")
    missing = [k for k in required if k not in record]
    if missing:
        raise error(f"{where}: partial record, missing {', '.join(missing)}")


def validate_record(record: Any, where: str = "record") -> dict[str, Any]:
    """Raise :class:`RecordError` with a one-line reason unless ``record`` follows the schema."""
    check_envelope(record, where, SCHEMA, REQUIRED_KEYS, RecordError)
    if record["status"] not in ("finished", "failed"):
        raise RecordError(f"{where}: unknown status {record['status']!r}")
    if not isinstance(record["metrics"], dict):
        raise RecordError(f"{where}: 'metrics' is not an object")
    if record["status"] == "finished" and not record["metrics"]:
        raise RecordError(f"{where}: finished trial without metrics")
    pre = record["pretrain"]
    if not isinstance(pre, dict) or "label" not in pre:
        raise RecordError(f"{where}: 'pretrain' must be an object with a 'label'")
    return record


def read_record(path: str | os.PathLike) -> dict[str, Any]:
    """Read and validate one record file; raises :class:`RecordError` on any problem."""
    path = Path(path)
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        raise RecordError(f"{path}: no such record") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RecordError(f"{path}: corrupt JSON ({e.__class__.__name__}: {e})") from None
    except RecursionError:
        raise RecordError(f"{path}: JSON nested too deeply to be a trial record") from None
    except OSError as e:
        raise RecordError(f"{path}: unreadable ({e.strerror or e})") from None
    return validate_record(record, where=str(path))


def is_finished(output_dir: str | os.PathLike) -> bool:
    """True when ``output_dir`` holds a valid record of a finished trial."""
    try:
        return read_record(Path(output_dir) / RECORD_NAME)["status"] == "finished"
    except RecordError:
        return False


def spent_gpu_hours(seconds: float | None, world_size: int, device: str) -> float | None:
    """GPU-hours of ``seconds`` on ``world_size`` processes (one GPU each); None on a CPU or without a time."""
    if seconds is None or not str(device).startswith("cuda"):
        return None
    return round(float(seconds) * max(int(world_size), 1) / 3600, 4)


def gpu_hours_of(record: dict[str, Any]) -> float | None:
    """The GPU-hours a record says its trial spent: ``gpu_hours`` when written, else (older records) its training
    time x ``world_size`` when its config ran on a GPU; None when it cannot say."""
    value = record.get("gpu_hours")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value) if value >= 0 and value == value and value != float("inf") else None
    timings = record.get("timings") if isinstance(record.get("timings"), dict) else {}
    seconds = timings.get("train_and_eval_s", timings.get("train_s"))
    world = record.get("world_size")
    config = record.get("config") if isinstance(record.get("config"), str) else ""
    on_gpu = "DEVICE: cuda" in config
    if not (isinstance(seconds, (int, float)) and isinstance(world, int) and not isinstance(world, bool)
            and world >= 1 and on_gpu and seconds >= 0):
        return None
    return spent_gpu_hours(seconds, world, "cuda")


def method_from_label(label: str) -> str:
    """The method an older record's label names: ``MoCo v1``/``v2``/``v3``, ``MoCo``, else ``unknown`` (older versions
    gave every pretrained row kind ``moco`` whatever made its weights, so the kind alone proves nothing)."""
    import re

    low = str(label).lower()
    version = re.search(r"moco[\s_-]*(v[123])\b", low)
    if version:
        return f"MoCo {version.group(1)}"
    return "MoCo" if "moco" in low else UNKNOWN_METHOD


def pretrain_of(record: dict[str, Any]) -> dict[str, Any]:
    """A record's ``pretrain`` block as this version reads it: a legacy kind renamed (``moco`` -> ``pretrained``), with
    the method its label names (:func:`method_from_label`) when it recorded none."""
    pre = dict(record.get("pretrain") or {})
    kind = pre.get("kind")
    if kind in LEGACY_KINDS:
        pre["kind"] = LEGACY_KINDS[kind]
        if not (isinstance(pre.get("method"), str) and pre["method"]):
            pre["method"] = method_from_label(str(pre.get("label", "")))
    return pre
