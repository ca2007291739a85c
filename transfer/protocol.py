"""The protocol fingerprint of a fine-tuning run, and the papers' protocol it is compared with.

A fingerprint is the set of values that define *how* a number was obtained (norm and where, frozen
stages, input format and pixel statistics, head, batch, lr and its schedule, warm-up, weight decay,
image sizes, precise BN, precision, world size, Detectron2 version). Every trial record carries one;
``results`` averages only trials with identical fingerprints and footnotes a row whose fingerprint
differs from the paper's protocol for its table, naming the keys.

The paper's values live once, as data, in ``transfer/configs/protocol.yaml``; the config tests, the
fingerprint comparison and the tables all read them from there (:func:`paper_protocol`).
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

PROTOCOL_FILE = Path(__file__).resolve().parent / "configs" / "protocol.yaml"
VERSION = 1
# Values compared with the row's pretraining kind (Caffe2 supervised: BGR; torchvision-style: RGB).
INPUT_KEYS = ("INPUT.FORMAT", "MODEL.PIXEL_MEAN", "MODEL.PIXEL_STD", "MODEL.RESNETS.STRIDE_IN_1X1")
# Part of the fingerprint (runs differing here are not averaged) but not a deviation from the paper.
ENVIRONMENT_KEYS = ("world_size", "detectron2")


def _get(cfg: Any, dotted: str) -> Any:
    node = cfg
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, dict) else getattr(node, part, None)
        if node is None:
            return None
    return node


def _plain(value: Any) -> Any:
    """JSON-stable form: tuples -> lists, floats rounded to 6 significant digits."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, float):
        return float(f"{value:.6g}")
    return value


def protocol_keys(cfg: Any) -> list[str]:
    """The config keys that define the protocol of this kind of model (heads it does not have are left out)."""
    keys = ["MODEL.META_ARCHITECTURE", "MODEL.BACKBONE.NAME", "MODEL.BACKBONE.FREEZE_AT", "MODEL.RESNETS.DEPTH",
            "MODEL.RESNETS.NORM", "MODEL.RESNETS.RES5_DILATION", *INPUT_KEYS,
            "INPUT.MIN_SIZE_TRAIN", "INPUT.MAX_SIZE_TRAIN", "INPUT.MIN_SIZE_TEST", "INPUT.MAX_SIZE_TEST",
            "SOLVER.IMS_PER_BATCH", "SOLVER.BASE_LR", "SOLVER.LR_SCHEDULER_NAME", "SOLVER.STEPS", "SOLVER.GAMMA",
            "SOLVER.MAX_ITER", "SOLVER.WARMUP_ITERS", "SOLVER.WEIGHT_DECAY", "SOLVER.MOMENTUM", "SOLVER.AMP.ENABLED",
            "SOLVER.ACCUMULATE_STEPS",
            "TEST.PRECISE_BN.ENABLED"]
    if _get(cfg, "TEST.PRECISE_BN.ENABLED"):
        keys.append("TEST.PRECISE_BN.NUM_ITER")
    if "fpn" in str(_get(cfg, "MODEL.BACKBONE.NAME")).lower():
        keys.append("MODEL.FPN.NORM")
    if _get(cfg, "MODEL.META_ARCHITECTURE") == "GeneralizedRCNN":
        keys += ["MODEL.ROI_HEADS.NAME", "MODEL.ROI_BOX_HEAD.NORM", "MODEL.ROI_BOX_HEAD.NUM_FC",
                 "MODEL.ROI_BOX_HEAD.NUM_CONV", "MODEL.MASK_ON", "MODEL.KEYPOINT_ON"]
        if _get(cfg, "MODEL.MASK_ON"):
            keys.append("MODEL.ROI_MASK_HEAD.NORM")
        if _get(cfg, "MODEL.KEYPOINT_ON"):
            keys += ["MODEL.ROI_KEYPOINT_HEAD.NAME", "MODEL.ROI_KEYPOINT_HEAD.NORM"]
        if _get(cfg, "MODEL.DENSEPOSE_ON"):
            keys += ["MODEL.DENSEPOSE_ON", "MODEL.ROI_DENSEPOSE_HEAD.NAME"]
    if _get(cfg, "MODEL.META_ARCHITECTURE") == "SemanticSegmentor":
        keys += ["MODEL.SEM_SEG_HEAD.NAME", "MODEL.SEM_SEG_HEAD.NORM", "INPUT.CROP.ENABLED", "INPUT.CROP.SIZE",
                 "INPUT.RANDOM_SCALE.ENABLED", "INPUT.RANDOM_SCALE.RANGE"]
    if _get(cfg, "MODEL.BACKBONE.NAME") == "build_resnet_dc5_reduce_backbone":
        keys.append("MODEL.DC5_REDUCE.CHANNELS")
    if _get(cfg, "DATALOADER.SAMPLER_TRAIN") not in (None, "TrainingSampler"):
        keys += ["DATALOADER.SAMPLER_TRAIN", "DATALOADER.REPEAT_THRESHOLD"]
    return keys


def fingerprint(cfg: Any, world_size: int, detectron2: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """``{"version", "values": {key: value}, "hash"}`` of a run's config (``extra``: runner-level values,
    e.g. gradient accumulation, that are not config keys)."""
    values = {k: _plain(_get(cfg, k)) for k in protocol_keys(cfg)}
    values.update({"world_size": int(world_size), "detectron2": detectron2})
    values.update({k: _plain(v) for k, v in (extra or {}).items()})
    return {"version": VERSION, "values": values, "hash": fingerprint_hash(values)}


def detectron2_id() -> str:
    """Detectron2's version and whether its compiled ops are present (they change some kernels)."""
    import detectron2

    try:
        from detectron2 import _C  # noqa: F401

        ops = "compiled ops"
    except ImportError:
        ops = "pure Python"
    return f"{detectron2.__version__} ({ops})"


def fingerprint_hash(values: dict[str, Any]) -> str:
    blob = json.dumps(values, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


@lru_cache(maxsize=2)
def _load(path: str) -> dict[str, Any]:
    with open(path) as f:
        doc = yaml.safe_load(f)
    return doc


def protocol_document(path: str | Path | None = None) -> dict[str, Any]:
    """The whole ``protocol.yaml`` (``input_formats`` and ``benchmarks``)."""
    return _load(str(path or PROTOCOL_FILE))


def paper_protocol(task: str, arch: str, schedule: str, path: str | Path | None = None) -> dict[str, Any] | None:
    """The paper's protocol values for one benchmark table (``None`` if the paper has no such table).

    A schedule the paper did not run (e.g. ``12k`` on VOC) is compared with the benchmark's paper entry
    when there is exactly one for ``(task, arch)``, so the differing iteration count is named.
    """
    benches = protocol_document(path)["benchmarks"]
    entry = benches.get(f"{task}/{arch}/{schedule}")
    if entry is None:
        same = [v for k, v in benches.items() if k.startswith(f"{task}/{arch}/")]
        entry = same[0] if len(same) == 1 else None
    return None if entry is None else dict(entry["values"])


def expected_input(kind: str, path: str | Path | None = None) -> dict[str, Any]:
    """The paper's input-format values for a row of pretraining ``kind`` (supervised: Caffe2 BGR)."""
    formats = protocol_document(path)["input_formats"]
    return dict(formats["supervised" if kind == "supervised" else "torchvision"]["values"])


def expected_input_values(input_format: str, path: str | Path | None = None) -> dict[str, Any]:
    """The config values an input format means: BGR (Caffe2 weights) or RGB (torchvision-style)."""
    return expected_input("supervised" if input_format == "BGR" else "pretrained", path)


def deviations(values: dict[str, Any], task: str, arch: str, schedule: str, kind: str,
               path: str | Path | None = None) -> list[str] | None:
    """``["SOLVER.WARMUP_ITERS 200 (paper 100)", ...]`` for one fingerprint; ``None``: no paper protocol."""
    paper = paper_protocol(task, arch, schedule, path)
    if paper is None:
        return None
    paper.update(expected_input(kind, path))
    out = []
    for key, want in paper.items():
        got = values.get(key)
        if _plain(got) != _plain(want):
            out.append(f"{key} {_show(got)} (paper {_show(want)})")
    return out


def _show(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ",".join(_show(v) for v in value) + "]"
    return "absent" if value is None else str(value)
