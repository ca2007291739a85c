"""What loading pretrained weights into a Detectron2 model actually did, counted per backbone tensor.

Detectron2 loads weights leniently: a tensor it cannot place is logged and skipped, so a file under an
unexpected prefix trains from random weights and still produces a plausible row. The report counts the
model's *backbone* tensors (the pretrained ResNet: ``stem`` and the blocks of ``res2``..``res5``, wherever
the model keeps them, e.g. ``roi_heads.res5`` in C4) that were loaded, missing or shape-mismatched, and
the file's tensors that found no place. Misses outside the backbone (heads, FPN, the extra norm after
res5, the dilated-C5 reduction) are expected: those layers are new and trained from scratch.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Mapping

_BACKBONE = re.compile(r"(^|\.)(stem|res[2-5]\.\d+)\.")
_IGNORED = ("num_batches_tracked",)  # BN step counters: never in weight files, carry no weights
_STATS = ("running_mean", "running_var")
_STATS_IN_FILE = (*_STATS, "_bn_rm", "_bn_riv", "bn.running_mean", "bn.running_var")
SHOWN = 4


def is_backbone_key(key: str) -> bool:
    """True for a tensor of the pretrained ResNet (stem, residual blocks) or ViT (ViTDet's ``backbone.net``: patch
    embedding, position embedding, blocks; its relative position biases are new, zero-initialised layers), not of a
    new layer."""
    if key.startswith("backbone.net."):
        return ".rel_pos_" not in key
    return bool(_BACKBONE.search(key)) and not key.endswith(_IGNORED)


def _group(key: str) -> str:
    """A readable module group for an expected miss: ``roi_heads.box_predictor``, ``backbone.fpn_lateral2``."""
    parts = key.split(".")
    return ".".join(parts[:2]) if len(parts) > 2 else parts[0]


@dataclass
class LoadReport:
    """Counts (and a few names) of what a weights file filled in the model."""

    source: str
    backbone_total: int = 0
    backbone_loaded: int = 0
    backbone_missing: list[str] = field(default_factory=list)
    shape_mismatch: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    expected_missing: list[str] = field(default_factory=list)  # module groups of new layers
    folded_stats: int = 0  # BN running statistics absent from a folded-BN (Caffe2) file: defaults are right

    @property
    def ok(self) -> bool:
        return not self.backbone_missing and not self.shape_mismatch

    def summary(self) -> str:
        """One line: ``backbone 265/265 tensors loaded, 0 missing, 0 shape-mismatched; 2 unused (fc.bias, ...)``."""
        text = (f"backbone {self.backbone_loaded}/{self.backbone_total} tensors loaded, "
                f"{len(self.backbone_missing)} missing, {len(self.shape_mismatch)} shape-mismatched")
        if self.folded_stats:
            text += f", {self.folded_stats} BN statistics folded into scale/bias by the file (mean 0, var 1)"
        text += f"; {len(self.unexpected)} unused in the file"
        if self.unexpected:
            text += f" ({_few(self.unexpected)})"
        return text

    def refusal(self) -> str:
        """The one-line reason to stop before training (empty when :attr:`ok`)."""
        if self.ok:
            return ""
        parts = []
        if self.backbone_missing:
            parts.append(f"{len(self.backbone_missing)} backbone tensors not filled ({_few(self.backbone_missing)})")
        if self.shape_mismatch:
            parts.append(f"{len(self.shape_mismatch)} with another shape ({_few(self.shape_mismatch)})")
        hint = ("its keys do not match Detectron2's names; convert it with transfer/convert.py "
                "(--prefix for an unusual key prefix)" if self.backbone_loaded == 0 else
                "the architecture differs from the config's (depth, width or block type)")
        return (f"{self.source}: only {self.backbone_loaded}/{self.backbone_total} backbone tensors loaded: "
                f"{'; '.join(parts)}; {hint}")

    def as_record(self) -> dict[str, Any]:
        """Counts plus the first few names, for the trial record."""
        out: dict[str, Any] = asdict(self)
        for key in ("backbone_missing", "shape_mismatch", "unexpected"):
            names = out.pop(key)
            out[f"{key}_count"] = len(names)
            out[key] = names[:SHOWN * 2]
        return out


def _few(names: list[str]) -> str:
    shown = ", ".join(names[:SHOWN])
    return shown + (f", ... (+{len(names) - SHOWN})" if len(names) > SHOWN else "")


def build_report(source: str, model_shapes: Mapping[str, tuple[int, ...]], file_shapes: Mapping[str, tuple[int, ...]],
                 missing: Iterable[str], unexpected: Iterable[str],
                 incorrect_shapes: Iterable[tuple[str, Any, Any]]) -> LoadReport:
    """Classify the outcome of ``load_state_dict``-style loading.

    ``model_shapes``: every tensor of the model; ``file_shapes``: the file's tensors (after Detectron2's
    renaming, when it renamed); ``missing``/``unexpected``/``incorrect_shapes`` as Detectron2 returns them.
    A missing backbone tensor whose name ends with a file tensor of another shape is a shape mismatch
    (Detectron2's name-matching heuristics skip such tensors and only log them).
    """
    missing = [k for k in missing if not k.endswith(_IGNORED)]
    folded = []
    if not any(f.endswith(_STATS_IN_FILE) for f in file_shapes):
        # A file without any BN running statistics (Caffe2/MSRA weights fold them into scale and bias): the
        # model's defaults (mean 0, var 1) are what the weights were made for.
        folded = [k for k in missing if k.endswith(_STATS)]
        missing = [k for k in missing if not k.endswith(_STATS)]
    mismatched = {k for k, *_ in incorrect_shapes}
    for key in missing:
        if key in mismatched or not is_backbone_key(key):
            continue
        want = tuple(model_shapes.get(key, ()))
        if any((key == f or key.endswith("." + f)) and tuple(s) != want for f, s in file_shapes.items()):
            mismatched.add(key)
    backbone = [k for k in model_shapes if is_backbone_key(k)]
    missing_set = set(missing)
    report = LoadReport(source=source, backbone_total=len(backbone))
    report.shape_mismatch = sorted(k for k in mismatched if is_backbone_key(k))
    report.backbone_missing = sorted(k for k in backbone if k in missing_set and k not in mismatched)
    report.folded_stats = len(folded)
    report.backbone_loaded = len(backbone) - len(report.backbone_missing) - len(report.shape_mismatch) - len(folded)
    report.unexpected = sorted(unexpected)
    report.expected_missing = sorted({_group(k) for k in missing if not is_backbone_key(k)})
    return report
