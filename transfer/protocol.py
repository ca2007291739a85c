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
ENVIRONMENT_KEYS = ("world_size", "detectron2", "norm_classes")
# The DensePose head settings that differ between the paper-era recipe and today's (protocol.yaml variants).
DENSEPOSE_HEAD_KEYS = tuple(f"MODEL.ROI_DENSEPOSE_HEAD.{k}" for k in (
    "NAME", "NUM_COARSE_SEGM_CHANNELS", "POOLER_RESOLUTION", "HEATMAP_SIZE", "INDEX_WEIGHTS", "PART_WEIGHTS",
    "POINT_REGRESSION_WEIGHTS", "DECODER_ON"))


VIT_KEYS = ("EMBED_DIM", "DEPTH", "NUM_HEADS", "MLP_RATIO", "PATCH_SIZE", "IMG_SIZE", "PRETRAIN_IMG_SIZE",
            "PRETRAIN_USE_CLS_TOKEN", "DROP_PATH_RATE", "WINDOW_SIZE", "WINDOW_BLOCK_INDEXES", "USE_REL_POS")
VITDET_KEYS = ("SCALE_FACTORS", "OUT_CHANNELS", "NORM", "SQUARE_PAD")


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
            keys += ["MODEL.DENSEPOSE_ON", *DENSEPOSE_HEAD_KEYS]
    if _get(cfg, "MODEL.META_ARCHITECTURE") == "SemanticSegmentor":
        keys += ["MODEL.SEM_SEG_HEAD.NAME", "MODEL.SEM_SEG_HEAD.NORM", "INPUT.CROP.ENABLED", "INPUT.CROP.SIZE",
                 "INPUT.RANDOM_SCALE.ENABLED", "INPUT.RANDOM_SCALE.RANGE"]
    if _get(cfg, "MODEL.BACKBONE.NAME") == "build_vitdet_backbone":  # the ViT size, pyramid, optimizer and LSJ
        keys += [f"MODEL.VIT.{k}" for k in VIT_KEYS] + [f"MODEL.VITDET.{k}" for k in VITDET_KEYS]
        keys += ["MODEL.RPN.CONV_DIMS", "MODEL.ROI_BOX_HEAD.CONV_DIM", "SOLVER.OPTIMIZER", "SOLVER.BETAS",
                 "SOLVER.LAYER_DECAY", "SOLVER.WEIGHT_DECAY_NORM", "SOLVER.POS_EMBED_NO_DECAY", "SOLVER.WARMUP_FACTOR",
                 "INPUT.LSJ.ENABLED", "INPUT.LSJ.IMAGE_SIZE", "INPUT.LSJ.MIN_SCALE", "INPUT.LSJ.MAX_SCALE"]
    if _get(cfg, "MODEL.BACKBONE.NAME") == "build_resnet_dc5_reduce_backbone":
        keys.append("MODEL.DC5_REDUCE.CHANNELS")
    if _get(cfg, "DATALOADER.SAMPLER_TRAIN") not in (None, "TrainingSampler"):
        keys += ["DATALOADER.SAMPLER_TRAIN", "DATALOADER.REPEAT_THRESHOLD"]
    return keys


def finetune_precision(cfg: Any) -> str:
    """The arithmetic a fine-tuning run used: ``amp-fp16`` (Detectron2 AMP: fp16 autocast), ``tf32`` (TF32
    convolutions and matmuls, on a GPU), else ``fp32`` (the paper's; also every CPU run)."""
    if _get(cfg, "SOLVER.AMP.ENABLED"):
        return "amp-fp16"
    on_gpu = str(_get(cfg, "MODEL.DEVICE") or "cuda").startswith("cuda")
    return "tf32" if on_gpu and _get(cfg, "SOLVER.TF32") else "fp32"


def fingerprint(cfg: Any, world_size: int, detectron2: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """``{"version", "values": {key: value}, "hash"}`` of a run's config (``extra``: runner-level values,
    e.g. gradient accumulation or the norm classes that ran, that are not config keys)."""
    values = {k: _plain(_get(cfg, k)) for k in protocol_keys(cfg)}
    values["precision"] = finetune_precision(cfg)
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


def paper_protocol(task: str, arch: str, schedule: str, path: str | Path | None = None,
                   kind: str | None = None) -> dict[str, Any] | None:
    """The paper's protocol values for one benchmark table (``None`` if the paper has no such table), for a row
    of pretraining ``kind`` when the entry's ``rows:`` say that kind was run otherwise.

    A schedule the paper did not run (e.g. ``12k`` on VOC) is compared with the benchmark's paper entry
    when there is exactly one for ``(task, arch)``, so the differing iteration count is named.
    """
    entry = _entry(task, arch, schedule, path)
    if entry is None:
        return None
    return {**entry["values"], **((entry.get("rows") or {}).get(kind) or {})}


def _entry(task: str, arch: str, schedule: str, path: str | Path | None = None) -> dict[str, Any] | None:
    benches = protocol_document(path)["benchmarks"]
    entry = benches.get(f"{task}/{arch}/{schedule}")
    if entry is None:
        same = [v for k, v in benches.items() if k.startswith(f"{task}/{arch}/")]
        entry = same[0] if len(same) == 1 else None
    return _resolved(entry, benches) if entry is not None else None


def _resolved(entry: dict[str, Any], benches: dict[str, Any], depth: int = 0) -> dict[str, Any]:
    """An entry with ``same_as: KEY``: that entry's values and per-kind rows, updated by its own."""
    if "same_as" not in entry:
        return entry
    if depth > 4 or entry["same_as"] not in benches:
        raise ValueError(f"protocol.yaml: same_as {entry['same_as']!r} is not a benchmark entry (or loops)")
    base = _resolved(benches[entry["same_as"]], benches, depth + 1)
    rows = {**(base.get("rows") or {}), **(entry.get("rows") or {})}
    return {**base, **{k: v for k, v in entry.items() if k != "same_as"},
            "values": {**base["values"], **(entry.get("values") or {})},
            "rows": {kind: {**((base.get("rows") or {}).get(kind) or {}), **((entry.get("rows") or {}).get(kind) or {})}
                     for kind in rows}}


def expected_input(kind: str, path: str | Path | None = None) -> dict[str, Any]:
    """The paper's input-format values for a row of pretraining ``kind`` (supervised: Caffe2 BGR)."""
    formats = protocol_document(path)["input_formats"]
    return dict(formats["supervised" if kind == "supervised" else "torchvision"]["values"])


def expected_input_values(input_format: str, path: str | Path | None = None, style: str = "") -> dict[str, Any]:
    """The config values an input format means: BGR (Caffe2 weights; ``style`` "fair": the FAIR ImageNet models'
    std and stride) or RGB (torchvision-style)."""
    if input_format == "BGR" and style == "fair":
        return dict(protocol_document(path)["input_formats"]["fair"]["values"])
    return expected_input("supervised" if input_format == "BGR" else "pretrained", path)


def input_style_values(input_format: str, style: str, path: str | Path | None = None) -> dict[str, Any]:
    """The values a weights style needs beyond its format's config flavour (FAIR: std and stride); {} for none."""
    if not style:
        return {}
    base, want = expected_input_values(input_format, path), expected_input_values(input_format, path, style)
    return {k: v for k, v in want.items() if v != base[k]}


def variant(name: str, path: str | Path | None = None) -> dict[str, Any]:
    """A named variant of the protocol (``variants:`` in protocol.yaml): ``{"flag", "source", "values"}``."""
    return dict(protocol_document(path)["variants"][name])


def readings(path: str | Path | None = None) -> list[dict[str, str]]:
    """The suite's readings of what the paper leaves open (``readings:`` in protocol.yaml)."""
    return list(protocol_document(path).get("readings") or [])


PAPER_WORLD_SIZE = 8  # the recipes' 8 GPUs (batch 16, 2 images per GPU)


def world_size_deviation(values: dict[str, Any]) -> str | None:
    """``"world size 4 with naiveSyncBN (paper 8 GPUs: ...)"`` for a fingerprint of a run with naiveSyncBN on another
    number of GPUs (its BN statistics are pooled over other images, and per-GPU padding differs); None otherwise."""
    world = values.get("world_size")
    norms = {str(v) for k, v in values.items() if str(k).endswith(".NORM")}
    if not isinstance(world, int) or isinstance(world, bool) or world == PAPER_WORLD_SIZE or "naiveSyncBN" not in norms:
        return None
    return (f"world size {world} with naiveSyncBN (paper {PAPER_WORLD_SIZE} GPUs: BN statistics pooled over "
            f"{world} GPU(s)' images instead of {PAPER_WORLD_SIZE}, and per-GPU padding differs)")


def _applies(entry: dict[str, Any], task: str, arch: str) -> bool:
    return any(t in (task, f"{task}/{arch}") for t in entry.get("tables") or [])


def unconfirmed_readings(task: str, arch: str, kinds: set[str] | None = None,
                         path: str | Path | None = None) -> list[dict[str, Any]]:
    """The readings no source confirms that a (task, arch) table depends on (for rows of ``kinds``, if given)."""
    return [r for r in readings(path) if r.get("unconfirmed") and _applies(r, task, arch)
            and (not r.get("kinds") or kinds is None or set(r["kinds"]) & kinds)]


def code_changes(task: str, arch: str = "", path: str | Path | None = None) -> list[dict[str, Any]]:
    """Upstream code changes under a recipe the (task, arch) table runs (``code_changes:`` in protocol.yaml)."""
    return [c for c in protocol_document(path).get("code_changes") or [] if _applies(c, task, arch)]


def deviations(values: dict[str, Any], task: str, arch: str, schedule: str, kind: str,
               path: str | Path | None = None) -> list[str] | None:
    """``["SOLVER.WARMUP_ITERS 200 (paper 100)", ...]`` for one fingerprint; ``None``: no paper protocol."""
    paper = paper_protocol(task, arch, schedule, path, kind)
    if paper is None:
        return None
    entry_input = (_entry(task, arch, schedule, path) or {}).get("input")  # one input format for every row (ViTDet)
    paper.update(dict(protocol_document(path)["input_formats"][entry_input]["values"]) if entry_input
                 else expected_input(kind, path))
    out = []
    for key, want in paper.items():
        if want is None:  # the entry leaves it to the weights (e.g. a ViT-S's heads): not compared
            continue
        got = values.get(key)
        if _plain(got) != _plain(want):
            out.append(f"{key} {_show(got)} (paper {_show(want)})")
    return out


def _show(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ",".join(_show(v) for v in value) + "]"
    return "absent" if value is None else str(value)


def describe(path: str | Path | None = None) -> list[str]:
    """The protocol's choices in words: SyncBN's meaning, the per-row-kind entries, the variants, the readings."""
    doc = protocol_document(path)
    lines = ["Norm: the paper's SyncBN is run as Detectron2's naiveSyncBN (NaiveSyncBatchNorm), what \"SyncBN\" built "
             "before Detectron2 02478d2e (which made it torch's SyncBatchNorm, for PyTorch >= 1.6 only); every trial "
             "records the norm classes that ran.",
             "Precision: fine-tuning in fp32 with TF32 off (runner --tf32 / --amp: footnoted).", "Per row kind:"]
    for key, entry in doc["benchmarks"].items():
        for kind, values in (entry.get("rows") or {}).items():
            lines.append(f"  {key}, {kind} row: " + ", ".join(f"{k} {_show(v)}" for k, v in values.items()))
    lines.append("Variants:")
    for name, var in (doc.get("variants") or {}).items():
        lines.append(f"  {name} ({var.get('flag', '')}): {' '.join(str(var.get('source', '')).split())}")
    lines.append("Readings (what the paper leaves open):")
    for r in readings(path):
        lines.append(f"  - {r['what']}. Paper: {r['paper']}. Source: {r['source']}.")
    return lines


if __name__ == "__main__":
    print("\n".join(describe()))

