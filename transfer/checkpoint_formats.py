"""Recognise where a ResNet encoder lives inside a checkpoint.

Recognised layouts (first match wins; ``--prefix`` overrides):

======================  =====================================================================
format                  encoder keys
======================  =====================================================================
moco-suite              this suite's ``pretrain/`` checkpoints: ``state_dict`` + ``module.encoder_q.``
moco                    reference MoCo v1/v2 ``main_moco.py``: ``state_dict`` + ``module.encoder_q.``
moco-nomodule           the same without the DDP ``module.`` prefix: ``encoder_q.``
moco-v3                 MoCo v3 ResNet: ``module.base_encoder.`` (or ``base_encoder.``)
torchvision-ddp         a torchvision ResNet state dict saved from DDP: ``module.conv1.weight`` ...
torchvision             a plain torchvision ResNet state dict: ``conv1.weight``, ``layer1.0...``
======================  =====================================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from transfer.checkpoint_io import ConvertError

# (format name, key prefix) in priority order; the suite/moco split is decided by the "suite" marker.
_PREFIXES: tuple[tuple[str, str], ...] = (
    ("moco", "module.encoder_q."),
    ("moco-nomodule", "encoder_q."),
    ("moco-v3", "module.base_encoder."),
    ("moco-v3", "base_encoder."),
    ("torchvision-ddp", "module."),
    ("torchvision", ""),
)
_CONTAINER_KEYS = ("state_dict", "model", "model_state", "network")
_VIT_MARKERS = ("patch_embed", "cls_token", "pos_embed", "blocks.0.attn")


@dataclass
class Encoder:
    """A ResNet encoder found in a checkpoint: its tensors with the prefix stripped."""

    format: str
    prefix: str
    tensors: dict[str, torch.Tensor]
    epoch: int | None
    arch_hint: str | None


def _state_dict_of(obj: Any, where: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise ConvertError(f"{where}: not a checkpoint (top level is a {type(obj).__name__}, expected a dict)")
    for key in _CONTAINER_KEYS:
        inner = obj.get(key)
        if isinstance(inner, dict) and any(isinstance(v, torch.Tensor) for v in inner.values()):
            return inner
    if any(isinstance(v, torch.Tensor) for v in obj.values()):
        return obj
    raise ConvertError(
        f"{where}: no tensors found (top-level keys: {', '.join(map(str, list(obj)[:8]))}); "
        "expected a state_dict or a dict with 'state_dict'/'model'"
    )


def find_encoder(obj: Any, where: str, prefix: str | None = None) -> Encoder:
    """Locate the ResNet encoder in a loaded checkpoint, or raise a one-line :class:`ConvertError`."""
    sd = _state_dict_of(obj, where)
    keys = [k for k in sd if isinstance(k, str)]
    if any(any(m in k for m in _VIT_MARKERS) for k in keys):
        raise ConvertError(
            f"{where}: looks like a Vision Transformer (keys such as patch_embed/blocks.N.attn); "
            "only ResNet backbones can be converted to Detectron2's ResNet"
        )
    epoch = obj.get("epoch") if isinstance(obj, dict) and isinstance(obj.get("epoch"), int) else None
    arch_hint = obj.get("arch") if isinstance(obj, dict) and isinstance(obj.get("arch"), str) else None
    candidates = [("custom", prefix)] if prefix is not None else list(_PREFIXES)
    for fmt, pre in candidates:
        sub = {k[len(pre):]: v for k, v in sd.items() if isinstance(k, str) and k.startswith(pre)}
        if "conv1.weight" in sub and "layer1.0.conv1.weight" in sub:
            if fmt == "moco" and isinstance(obj, dict) and isinstance(obj.get("suite"), dict):
                fmt = "moco-suite"
            bad = [k for k, v in sub.items() if not isinstance(v, torch.Tensor)]
            if bad:
                raise ConvertError(f"{where}: entry {pre}{bad[0]} is a {type(sub[bad[0]]).__name__}, not a tensor")
            return Encoder(fmt, pre, sub, epoch, arch_hint)
    sample = ", ".join(keys[:4]) + (" ..." if len(keys) > 4 else "")
    if prefix is not None:
        raise ConvertError(f"{where}: no ResNet encoder under prefix {prefix!r} (keys look like: {sample})")
    raise ConvertError(
        f"{where}: no ResNet encoder found (keys look like: {sample}); "
        "pass --prefix with the key prefix of the encoder, e.g. --prefix module.backbone."
    )
