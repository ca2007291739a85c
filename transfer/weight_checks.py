"""The values of a weights file, checked before a trial trains on them.

Detectron2 copies whatever numbers a file holds into the model: NaN in one BatchNorm ``running_var`` gives a
*finished* trial with AP 0, integer or boolean tensors are cast silently, and a file of zeros trains as
well as it can from nothing. :func:`check_tensors` looks at every tensor of a file's model (numpy arrays or
torch tensors) and refuses, in one line naming a few of them:

* entries that are not numeric tensors (strings, nested dicts, ...);
* integer, boolean or complex tensors (only BatchNorm step counters, ``num_batches_tracked``, are integers);
* NaN or infinite values;
* convolution or linear weights (2 or more dimensions) that are all zero;
* negative BatchNorm variances (``running_var``; Caffe2's ``_bn_riv``).

float16 and bfloat16 tensors are widened to float32 (the precision they lost stays lost), said in one note.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

SHOWN = 3
_COUNTERS = ("num_batches_tracked",)
_VARIANCES = ("running_var", "_bn_riv")


class WeightValuesError(ValueError):
    """Weights whose values cannot be trained on; one line."""


def _few(names: list[str]) -> str:
    shown = ", ".join(names[:SHOWN])
    return shown + (f", ... (+{len(names) - SHOWN})" if len(names) > SHOWN else "")


def _as_numpy(value: Any) -> np.ndarray | None:
    if isinstance(value, np.ndarray):
        return value
    try:
        import torch
    except ImportError:  # pragma: no cover
        return None
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu()
        try:
            return (t.float() if t.dtype == torch.bfloat16 else t).numpy()
        except (TypeError, RuntimeError):  # sparse, quantized, meta tensors
            return None
    return None


def check_tensors(named: Mapping[Any, Any], where: str) -> tuple[dict[Any, Any], list[str]]:
    """(``named`` with float16/bfloat16 tensors widened to float32, notes); raise :class:`WeightValuesError`."""
    not_tensor, not_float, non_finite, zero, negative_var, widened = [], [], [], [], [], []
    out = dict(named)
    for key, value in named.items():
        name = str(key)
        arr = _as_numpy(value)
        if arr is None:
            not_tensor.append(f"{name} ({type(value).__name__})")
            continue
        is_bf16 = not isinstance(value, np.ndarray) and str(getattr(value, "dtype", "")) == "torch.bfloat16"
        kind = arr.dtype.kind
        if kind != "f":
            if not (name.endswith(_COUNTERS) and kind in "iu"):
                not_float.append(f"{name} ({arr.dtype})")
            continue
        if not np.isfinite(arr).all():
            bad = int(arr.size - np.isfinite(arr).sum())
            non_finite.append(f"{name} ({bad} of {arr.size})")
            continue
        if arr.ndim >= 2 and arr.size and not arr.any():
            zero.append(name)
        if name.endswith(_VARIANCES) and arr.size and (arr < 0).any():
            negative_var.append(name)
        if arr.dtype == np.float16 or is_bf16:
            widened.append(name)
            out[key] = _widen(value)
    problems = []
    if not_tensor:
        problems.append(f"{len(not_tensor)} entries are not tensors ({_few(not_tensor)})")
    if not_float:
        problems.append(f"{len(not_float)} tensors are not floating point ({_few(not_float)}); trained weights are "
                        "float32")
    if non_finite:
        problems.append(f"{len(non_finite)} tensors hold NaN or infinite values ({_few(non_finite)})")
    if zero:
        problems.append(f"{len(zero)} weight tensors are all zero ({_few(zero)})")
    if negative_var:
        problems.append(f"{len(negative_var)} BatchNorm variances are negative ({_few(negative_var)})")
    if problems:
        raise WeightValuesError(f"{where}: unusable weights: {'; '.join(problems)}; re-export the weights of a "
                                "trained network")
    notes = [f"{where}: {len(widened)} float16/bfloat16 tensors widened to float32 (the precision lost when they "
             f"were saved stays lost; {_few(widened)})"] if widened else []
    return out, notes


def _widen(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.astype(np.float32)
    return value.float()
