"""What libraries write beside the weights, for the facts no tensor holds: Hugging Face transformers' ``config.json``
(``save_pretrained``) and solo-learn's ``args.json`` (``solo/utils/checkpointer.py``: the run's whole config in the
checkpoint's folder). Read as bounded JSON only (``core.files.read_text``): nothing in them runs, and an unreadable
file is as if absent (the tensors' names and shapes still say what the network is), except where it says the network
is not one Detectron2 can rebuild, which is refused in one line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from transfer.checkpoint_io import ConvertError

MAX_BYTES = 1 << 20
# solo-learn's method names (solo/methods/__init__.py METHODS) -> the name its rows are shown with
SOLO_METHODS = {"barlow_twins": "Barlow Twins", "byol": "BYOL", "deepclusterv2": "DeepCluster v2", "dino": "DINO",
                "mae": "MAE", "mocov2plus": "MoCo v2+", "mocov3": "MoCo v3", "nnbyol": "NNBYOL", "nnclr": "NNCLR",
                "nnsiam": "NNSiam", "ressl": "ReSSL", "simclr": "SimCLR", "simsiam": "SimSiam", "supcon": "SupCon",
                "swav": "SwAV", "vibcreg": "VIbCReg", "vicreg": "VICReg", "wmse": "W-MSE", "all4one": "All4One"}
# solo-learn's ViT heads (solo/backbones/vit/__init__.py): timm's models (vit.py), except for mocov3 and mae, which
# build their own (vit_mocov3.py, vit_mae.py) with 12 heads for ViT-T/S/B
SOLO_VIT_HEADS = {"default": {"vit_tiny": 3, "vit_small": 6, "vit_base": 12, "vit_large": 16},
                  "mocov3": {"vit_tiny": 12, "vit_small": 12, "vit_base": 12, "vit_large": 16},
                  "mae": {"vit_tiny": 12, "vit_small": 12, "vit_base": 12, "vit_large": 16, "vit_huge": 16}}


def read_json_beside(src: Path, name: str, what: str) -> dict[str, Any] | None:
    """``src``'s sibling ``name`` as a JSON object, or None (absent, unreadable, not an object)."""
    from core.files import read_text

    path = Path(src).parent / name
    if not path.is_file():
        return None
    try:
        doc = json.loads(read_text(path, MAX_BYTES, what))
    except (ValueError, RecursionError, OSError):
        return None
    return doc if isinstance(doc, dict) else None


# ----------------------------------------------------------------------------- transformers' config.json

def transformers_resnet_check(src: Path) -> None:
    """Refuse (one line) a transformers ResNet whose ``config.json`` says it is not torchvision's network with the
    same shapes: a stride in the bottleneck's first 1x1 conv (``downsample_in_bottleneck``) or in the first stage
    (``downsample_in_first_stage``). Without a readable config.json, transformers' defaults (neither) hold."""
    cfg = read_json_beside(src, "config.json", "transformers config.json")
    if cfg is None:
        return
    bottleneck = cfg.get("layer_type", "bottleneck") == "bottleneck"
    for flag, where in (("downsample_in_first_stage", "in its first stage"),
                        ("downsample_in_bottleneck", "in the bottleneck's first 1x1 conv")):
        if cfg.get(flag) is True and (bottleneck or flag == "downsample_in_first_stage"):
            raise ConvertError(f"{src}: its config.json sets {flag}: the network strides {where}, unlike the "
                               "torchvision ResNet Detectron2 builds from these weights; it cannot transfer as one")


def transformers_vit(src: Path, norm_eps: float) -> tuple[tuple[int, str] | None, list[str]]:
    """A transformers ViT's heads (``num_attention_heads``) as ``(heads, source)``, and notes; an activation other than
    GELU is refused in one line. ``norm_eps``: the LayerNorm eps the detector's ViT uses (a different one is noted)."""
    cfg = read_json_beside(src, "config.json", "transformers config.json")
    if cfg is None:
        return None, []
    act = cfg.get("hidden_act", "gelu")
    if act != "gelu":
        raise ConvertError(f"{src}: its config.json sets hidden_act {str(act)[:40]!r}: Detectron2's ViT uses GELU, "
                           "so these weights cannot transfer as the same network")
    notes = []
    eps = cfg.get("layer_norm_eps")
    if isinstance(eps, (int, float)) and not isinstance(eps, bool) and eps != norm_eps:
        notes.append(f"config.json layer_norm_eps {eps:g}; Detectron2's ViT (ViTDet) normalises with {norm_eps:g}, "
                     "a difference far below the features' scale")
    heads = cfg.get("num_attention_heads")
    if isinstance(heads, int) and not isinstance(heads, bool) and heads > 0:
        kind = str(cfg.get("model_type", "vit"))[:40]
        return (heads, f"config.json beside the weights (model_type {kind!r}, num_attention_heads)"), notes
    return None, notes


# ----------------------------------------------------------------------------- solo-learn's args.json

def solo_learn_args(src: Path) -> dict[str, Any] | None:
    """solo-learn's ``args.json`` beside the checkpoint (its run config), when it names a method."""
    args = read_json_beside(src, "args.json", "solo-learn args.json")
    return args if args is not None and isinstance(args.get("method"), str) else None


def solo_learn_method(src: Path) -> tuple[str, str] | None:
    """(method, reason) from solo-learn's ``args.json``, or None."""
    args = solo_learn_args(src)
    if args is None:
        return None
    name = args["method"][:40]
    shown = SOLO_METHODS.get(name.lower(), name)
    return shown, f"args.json beside the checkpoint: method {name!r} (solo-learn's checkpointer writes it)"


def solo_learn_heads(src: Path) -> tuple[int, str] | None:
    """(heads, source) of a solo-learn ViT from ``args.json``'s method and backbone name, or None."""
    args = solo_learn_args(src)
    backbone = args.get("backbone") if args is not None else None
    name = backbone.get("name") if isinstance(backbone, dict) else None
    if not isinstance(name, str):
        return None
    method = args["method"].lower()
    heads = SOLO_VIT_HEADS.get(method, SOLO_VIT_HEADS["default"]).get(name)
    if heads is None:
        return None
    table = {"mocov3": "vit_mocov3.py", "mae": "vit_mae.py"}.get(method, "vit.py (timm's)")
    return heads, (f"args.json beside the checkpoint (method {method!r}, backbone {name!r}: solo-learn "
                   f"solo/backbones/vit/{table})")
