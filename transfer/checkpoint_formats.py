"""Recognise where a ResNet encoder lives inside a checkpoint.

The layouts recognised, in priority order, with the library and save code each follows, are the registry
``transfer/layouts.py`` (``LAYOUTS``); the first that fits wins. ``prefix`` (``convert.py --prefix``, the runners'
``--weights PATH#prefix=P`` or ``prefix:`` in a backbones list) overrides it: ``P`` is a key prefix in the
checkpoint's tensors, or ``PATH:P`` with ``PATH`` a ``/``-separated path of nested dicts (``teacher:module.backbone.``).
A file that no layout fits is refused in one line that lists where ResNet encoders were found and how to pick one.
A Vision Transformer (a layout with ``arch="vit"``, or a timm-style ViT under an explicit prefix) is returned with
``arch == "vit"`` and its timm names; ``transfer/convert.py`` converts it with ``transfer/vit_convert.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from transfer import layouts
from transfer.checkpoint_io import ConvertError

_VIT_MARKERS = ("patch_embed", "cls_token", "pos_embed", "blocks.0.attn")
OVERRIDE_HINT = "convert.py --prefix P, or --weights PATH#prefix=P for the runners"


@dataclass
class Encoder:
    """A ResNet encoder found in a checkpoint: its tensors with the prefix stripped (torchvision names)."""

    format: str
    prefix: str
    tensors: dict[str, torch.Tensor]
    epoch: int | None
    arch_hint: str | None
    layout: str = ""      # what was taken, for the plan and provenance (layouts.Match.describe)
    notes: list[str] = field(default_factory=list)
    arch: str = "resnet"  # resnet | vit
    heads: str = "timm"   # vit: the heads table of transfer/vit_convert.py


def _sample(sd: dict) -> str:
    keys = [str(k) for k in sd]
    return ", ".join(keys[:4]) + (" ..." if len(keys) > 4 else "")


def _custom(obj: dict, where: str, prefix: str) -> tuple[str, dict[str, Any], bool]:
    """(description, encoder tensors, compiled) under an explicit ``[PATH:]PREFIX``."""
    path, sep, pre = prefix.rpartition(":")
    if sep and path:
        sd = layouts.walk(obj, tuple(path.split("/")))
        if sd is None:
            raise ConvertError(f"{where}: no nested dict {path!r} (top-level keys: {_sample(obj)}); {OVERRIDE_HINT}")
    else:
        sd = layouts.default_state(obj)
        if sd is None:
            raise ConvertError(f"{where}: no tensors found (top-level keys: {_sample(obj)}); name the nested dict "
                               "as PATH:PREFIX, e.g. teacher:module.backbone.")
    keys = layouts.decompiled(sd)
    pre = pre.replace(layouts.COMPILED, "")
    sub = layouts.under(keys, pre)
    if layouts.is_vit(sub):
        return f"custom prefix {prefix!r} (a Vision Transformer)", sub, \
            any(isinstance(k, str) and layouts.COMPILED in k for k in sd)
    for names in layouts.NAMING_SCHEMES:
        sub = layouts.under(keys, pre, names)
        if layouts.is_resnet(sub):
            return f"custom prefix {prefix!r}" + (f" ({names} names)" if names != "torchvision" else ""), sub, \
                any(isinstance(k, str) and layouts.COMPILED in k for k in sd)
    found = layouts.candidates(obj)
    raise ConvertError(f"{where}: no ResNet encoder under prefix {prefix!r} (keys look like: {_sample(keys)})"
                       + (f"; ResNet encoders found at: {', '.join(found)}" if found else ""))


def find_encoder(obj: Any, where: str, prefix: str | None = None) -> Encoder:
    """Locate the ResNet (or ViT) encoder in a loaded checkpoint, or raise a one-line :class:`ConvertError`."""
    if not isinstance(obj, dict):
        raise ConvertError(f"{where}: not a checkpoint (top level is a {type(obj).__name__}, expected a dict)")
    sd = layouts.default_state(obj)
    epoch = obj.get("epoch") if isinstance(obj.get("epoch"), int) else None
    arch_hint = obj.get("arch") if isinstance(obj.get("arch"), str) else None
    arch, heads = "resnet", "timm"
    if prefix is not None:
        desc, sub, compiled = _custom(obj, where, prefix)
        if layouts.is_vit(sub):  # the heads table of the layout the file fits, if it is a ViT one
            fits = layouts.match(obj)
            arch, heads = "vit", (fits.layout.heads if fits is not None and fits.layout.arch == "vit" else "timm")
        fmt, pre, notes = "custom", prefix, []
    else:
        found = layouts.match(obj)
        if found is None:
            _refuse(obj, sd, where)
        assert found is not None
        if found.layout.arch == "vit":
            arch, heads = "vit", found.layout.heads or "timm"
        fmt, pre, sub, desc = found.layout.name, found.prefix, found.tensors, found.describe()
        if fmt == "moco" and isinstance(obj.get("suite"), dict):
            fmt, desc = "moco-suite", desc.replace("(moco)", "(moco-suite)")
        notes = ["torch.compile's _orig_mod. dropped from the key names"] if found.compiled else []
    bad = [k for k, v in sub.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise ConvertError(f"{where}: entry {pre}{bad[0]} is a {type(sub[bad[0]]).__name__}, not a tensor")
    return Encoder(fmt, pre, sub, epoch, arch_hint, desc, notes, arch, heads)


def _refuse(obj: dict, sd: dict | None, where: str) -> None:
    keys = [k for k in (sd or {}) if isinstance(k, str)]
    if any(any(m in k for m in _VIT_MARKERS) for k in keys):
        raise ConvertError(f"{where}: looks like a Vision Transformer (keys such as patch_embed/blocks.N.attn) but "
                           "not a timm-style one with patch_embed.proj and blocks.0.attn.qkv (a conv stem?); "
                           f"give its prefix with {OVERRIDE_HINT} if it is one")
    found = layouts.candidates(obj)
    if sd is None and not found:
        raise ConvertError(
            f"{where}: no tensors found (top-level keys: {_sample(obj)}); "
            "expected a state_dict or a dict with 'state_dict'/'model'"
        )
    if found:
        raise ConvertError(f"{where}: no known checkpoint layout (top-level keys: {_sample(obj)}); ResNet encoders "
                           f"found at: {', '.join(found)}; pick the one to transfer with {OVERRIDE_HINT}")
    raise ConvertError(
        f"{where}: no ResNet encoder found (keys look like: {_sample(sd or obj)}); "
        f"give the key prefix of the encoder ({OVERRIDE_HINT}), e.g. module.backbone."
    )
