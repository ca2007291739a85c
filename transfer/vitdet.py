"""ViTDet (Li, Mao, Girshick, He, arXiv 2203.16527) in the suite: Detectron2's own ViT and simple feature pyramid,
built from the suite's YAML keys, with the optimizer and the LSJ data of Detectron2's ``projects/ViTDet`` recipe.

* :func:`build_vitdet_backbone` (``MODEL.BACKBONE.NAME: build_vitdet_backbone``): ``SimpleFeaturePyramid(net=ViT(..))``
  as ``configs/common/models/mask_rcnn_vitdet.py`` builds it, sized by ``MODEL.VIT.*`` and ``MODEL.VITDET.*``.
* :func:`build_adamw` (``SOLVER.OPTIMIZER: ADAMW``): AdamW with layer-wise lr decay (``get_vit_lr_decay_rate``),
  weight decay 0 for norm layers and ``pos_embed`` (ViTDet-B's exemptions).
* :func:`lsj_mapper` (``INPUT.LSJ.ENABLED``): flip, ``ResizeScale``, ``FixedSizeCrop`` (large-scale jitter).
* :func:`size_overrides` / :func:`apply_checkpoint_size`: the ViT size read from a converted ``.pkl``'s provenance
  (``arch: {"type": "vit", ...}``), so a ViT-S checkpoint gets a ViT-S detector.

The values themselves live in ``transfer/configs/coco/coco_ViTDet_*.yaml`` and ``protocol.yaml``; nothing here
patches Detectron2: the builder is registered, the trainer subclass calls the rest.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any, Iterable

import torch
from detectron2.config import CfgNode
from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY, Backbone
from detectron2.modeling.backbone.fpn import LastLevelMaxPool
from detectron2.modeling.backbone.vit import SimpleFeaturePyramid, ViT, get_vit_lr_decay_rate
from torch import nn

from transfer.vit_convert import import_timm_layers

logger = logging.getLogger("transfer.vitdet")
BACKBONE_NAME = "build_vitdet_backbone"
# provenance arch field -> config key (the converter's `arch: {"type": "vit", ...}`)
ARCH_KEYS = {"embed_dim": "EMBED_DIM", "depth": "DEPTH", "num_heads": "NUM_HEADS", "patch_size": "PATCH_SIZE",
             "pretrain_img_size": "PRETRAIN_IMG_SIZE", "pretrain_use_cls_token": "PRETRAIN_USE_CLS_TOKEN"}
SIZE_NAMES = {384: "S", 768: "B", 1024: "L", 1280: "H"}
PROTOCOL_BASE = ("coco_maskrcnn", "ViTDet-B", "table11")  # the protocol entry the configs state (ViT-B's recipe)


def add_vitdet_config(cfg: CfgNode) -> CfgNode:
    """The ViTDet keys; defaults are Detectron2's ViTDet-B (mask_rcnn_vitdet.py) except where the key is off by
    default (SOLVER.OPTIMIZER SGD, INPUT.LSJ disabled), so every ResNet config is unchanged."""
    cfg.MODEL.VIT = CfgNode()
    v = cfg.MODEL.VIT
    v.EMBED_DIM, v.DEPTH, v.NUM_HEADS, v.MLP_RATIO = 768, 12, 12, 4.0
    v.PATCH_SIZE, v.IMG_SIZE, v.PRETRAIN_IMG_SIZE, v.PRETRAIN_USE_CLS_TOKEN = 16, 1024, 224, True
    v.DROP_PATH_RATE = 0.1
    v.WINDOW_SIZE = 14
    v.WINDOW_BLOCK_INDEXES = [0, 1, 3, 4, 6, 7, 9, 10]  # all but the global blocks 2, 5, 8, 11
    v.USE_REL_POS = True
    cfg.MODEL.VITDET = CfgNode()
    cfg.MODEL.VITDET.SCALE_FACTORS = [4.0, 2.0, 1.0, 0.5]
    cfg.MODEL.VITDET.OUT_CHANNELS = 256
    cfg.MODEL.VITDET.NORM = "LN"
    cfg.MODEL.VITDET.SQUARE_PAD = 1024
    cfg.SOLVER.OPTIMIZER = "SGD"  # "SGD" (Detectron2's build_optimizer) or "ADAMW" (build_adamw)
    cfg.SOLVER.BETAS = (0.9, 0.999)
    cfg.SOLVER.LAYER_DECAY = 1.0  # layer-wise lr decay rate (1.0: none)
    cfg.SOLVER.POS_EMBED_NO_DECAY = True  # pos_embed without weight decay (ViTDet-B/L; ViT-H's recipe decays it)
    cfg.INPUT.LSJ = CfgNode()
    cfg.INPUT.LSJ.ENABLED = False
    cfg.INPUT.LSJ.IMAGE_SIZE = 1024
    cfg.INPUT.LSJ.MIN_SCALE = 0.1
    cfg.INPUT.LSJ.MAX_SCALE = 2.0
    return cfg


def is_vitdet(cfg: Any) -> bool:
    return cfg.MODEL.BACKBONE.NAME == BACKBONE_NAME


def arch_name(cfg: Any) -> str:
    """``ViTDet-B`` (``S``/``L``/``H`` by width; another width: ``ViTDet-<embed>d<depth>``)."""
    return size_name(cfg.MODEL.VIT.EMBED_DIM, cfg.MODEL.VIT.DEPTH)


@BACKBONE_REGISTRY.register()
def build_vitdet_backbone(cfg: CfgNode, input_shape: ShapeSpec) -> Backbone:
    """Detectron2's ``SimpleFeaturePyramid(net=ViT(...))`` with p2-p6 (strides 4-64), as ``mask_rcnn_vitdet.py``."""
    v, p = cfg.MODEL.VIT, cfg.MODEL.VITDET
    import_timm_layers()
    net = ViT(
        img_size=v.IMG_SIZE, patch_size=v.PATCH_SIZE, in_chans=input_shape.channels, embed_dim=v.EMBED_DIM,
        depth=v.DEPTH, num_heads=v.NUM_HEADS, mlp_ratio=v.MLP_RATIO, qkv_bias=True, drop_path_rate=v.DROP_PATH_RATE,
        norm_layer=partial(nn.LayerNorm, eps=1e-6), act_layer=nn.GELU, use_abs_pos=True, use_rel_pos=v.USE_REL_POS,
        rel_pos_zero_init=True, window_size=v.WINDOW_SIZE, window_block_indexes=list(v.WINDOW_BLOCK_INDEXES),
        residual_block_indexes=[], pretrain_img_size=v.PRETRAIN_IMG_SIZE,
        pretrain_use_cls_token=v.PRETRAIN_USE_CLS_TOKEN, out_feature="last_feat",
    )
    return SimpleFeaturePyramid(net, in_feature="last_feat", out_channels=p.OUT_CHANNELS,
                                scale_factors=tuple(p.SCALE_FACTORS), top_block=LastLevelMaxPool(), norm=p.NORM,
                                square_pad=p.SQUARE_PAD)


def global_blocks(depth: int) -> list[int]:
    """The global-attention blocks: the last of each quarter (ViTDet Sec. 3, fn. 6; D2: 2,5,8,11 for depth 12);
    a ViT under 8 blocks (the tiny one) gets the last of each half (the suite's reading)."""
    parts = 4 if depth >= 8 else 2
    return [depth * q // parts - 1 for q in range(1, parts + 1)]


def window_blocks(depth: int) -> list[int]:
    glob = set(global_blocks(depth))
    return [i for i in range(depth) if i not in glob]


# ----------------------------------------------------------------------------- the ViT size of a checkpoint

def checkpoint_arch(prov: dict | None) -> dict[str, Any] | None:
    """The ``arch`` block a ViT converter wrote in a ``.pkl`` provenance (``type: vit``), else None."""
    arch = (prov or {}).get("arch")
    return arch if isinstance(arch, dict) and arch.get("type") == "vit" else None


def size_values(arch: dict[str, Any]) -> dict[str, Any]:
    """``MODEL.VIT.*`` values for a checkpoint's ``arch`` block (global blocks re-spread over another depth)."""
    out = {f"MODEL.VIT.{key}": arch[field] for field, key in ARCH_KEYS.items() if field in arch}
    if "depth" in arch:
        out["MODEL.VIT.WINDOW_BLOCK_INDEXES"] = window_blocks(int(arch["depth"]))
    return out


def size_name(embed_dim: int, depth: int) -> str:
    """``ViTDet-B`` (``S``/``L``/``H`` by width; another width: ``ViTDet-<embed>d<depth>``), the records' arch."""
    size = SIZE_NAMES.get(embed_dim) if depth in (12, 24, 32) else None
    return f"ViTDet-{size or f'{embed_dim}d{depth}'}"


def size_recipe(arch: str, kind: str | None) -> dict[str, Any]:
    """What ViTDet's recipe for the ViT size ``arch`` (e.g. ``ViTDet-L``) sets, for a row of ``kind``, beyond
    ViT-B's (the configs' values): drop path, layer decay, epochs (``protocol.yaml`` entries with ``same_as``).
    {} for ViT-B and for a size without an entry (the tiny ViT)."""
    from transfer.protocol import paper_protocol

    if arch == PROTOCOL_BASE[1]:
        return {}
    sized = paper_protocol(PROTOCOL_BASE[0], arch, PROTOCOL_BASE[2], kind=kind or "pretrained")
    if sized is None:
        return {}
    base = paper_protocol(*PROTOCOL_BASE, kind=kind or "pretrained") or {}
    return {k: v for k, v in sized.items() if k != "precision" and v is not None and v != base.get(k)}


def sized_keys() -> set[str]:
    """Every config key a size (from the weights or a size's recipe) may set: what re-sizing a row replaces."""
    from transfer.protocol import protocol_document

    keys = {f"MODEL.VIT.{key}" for key in ARCH_KEYS.values()} | {"MODEL.VIT.WINDOW_BLOCK_INDEXES"}
    for entry in protocol_document()["benchmarks"].values():  # a size's recipe only sets what its entry lists
        if entry.get("same_as") == "/".join(PROTOCOL_BASE):
            keys |= set(entry.get("values") or {})
            keys |= {k for row in (entry.get("rows") or {}).values() for k in row}
    return keys


def size_overrides(prov: dict | None, kind: str | None = "pretrained") -> tuple[str, ...]:
    """Detectron2 overrides (``KEY VALUE`` pairs) that size the ViT as the checkpoint and apply that size's recipe
    for a row of ``kind`` (:func:`size_recipe`); () when the checkpoint says nothing."""
    arch = checkpoint_arch(prov)
    if arch is None:
        return ()
    values = size_values(arch)
    if "embed_dim" in arch and "depth" in arch:
        values = {**size_recipe(size_name(int(arch["embed_dim"]), int(arch["depth"])), kind), **values}
    return tuple(x for k, v in values.items() for x in (k, str(v).replace(" ", "")))


def apply_checkpoint_size(cfg: CfgNode, prov: dict | None, kind: str | None = "pretrained",
                          given: Iterable[str] = ()) -> list[str]:
    """Set ``cfg``'s ViT size and that size's recipe from the weights' provenance (a ViTDet config only), through
    the same overrides a runner passes (:func:`size_overrides`), except the keys ``given`` on the command line;
    the changed keys, as lines."""
    opts = size_overrides(prov, kind) if is_vitdet(cfg) else ()
    skip = set(given)
    pairs = [(opts[i], opts[i + 1]) for i in range(0, len(opts), 2) if opts[i] not in skip]
    before = {key: _value(cfg, key) for key, _ in pairs}
    cfg.merge_from_list([x for pair in pairs for x in pair])
    name = arch_name(cfg)
    return [f"{key} {_value(cfg, key)} ("
            + ("from the weights' provenance" if key.startswith("MODEL.VIT.") and key != "MODEL.VIT.DROP_PATH_RATE"
               else f"ViTDet's {name} recipe") + f"; config {before[key]})"
            for key, _ in pairs if _value(cfg, key) != before[key]]


def _value(cfg: CfgNode, key: str) -> Any:
    node = cfg
    for part in key.split("."):
        node = node[part]
    return list(node) if isinstance(node, (list, tuple)) else node


# ----------------------------------------------------------------------------- optimizer and data

def build_adamw(cfg: CfgNode, model: nn.Module) -> torch.optim.Optimizer:
    """ViTDet's optimizer (configs/common/optim.py AdamW; mask_rcnn_vitdet_b_100ep.py:36-41): Detectron2's parameter
    groups with wd 0 for norms and ``pos_embed`` and lr x ``LAYER_DECAY ** (depth + 1 - layer)``, AdamW, and
    Detectron2's optional gradient clipping (``SOLVER.CLIP_GRADIENTS``, off as in the recipe)."""
    from detectron2.solver.build import get_default_optimizer_params, maybe_add_gradient_clipping

    params = get_default_optimizer_params(
        model, base_lr=cfg.SOLVER.BASE_LR, weight_decay=cfg.SOLVER.WEIGHT_DECAY,
        weight_decay_norm=cfg.SOLVER.WEIGHT_DECAY_NORM,
        lr_factor_func=partial(get_vit_lr_decay_rate, lr_decay_rate=cfg.SOLVER.LAYER_DECAY,
                               num_layers=cfg.MODEL.VIT.DEPTH),
        overrides={"pos_embed": {"weight_decay": 0.0}} if cfg.SOLVER.POS_EMBED_NO_DECAY else None)
    return maybe_add_gradient_clipping(cfg, torch.optim.AdamW)(
        params, lr=cfg.SOLVER.BASE_LR, betas=tuple(cfg.SOLVER.BETAS), weight_decay=cfg.SOLVER.WEIGHT_DECAY)


def lsj_augmentations(cfg: CfgNode) -> list:
    """coco_loader_lsj.py:6-16: horizontal flip, ResizeScale(min, max) to the square size, FixedSizeCrop(pad=False)."""
    from detectron2.data import transforms as T

    lsj, size = cfg.INPUT.LSJ, cfg.INPUT.LSJ.IMAGE_SIZE
    return [T.RandomFlip(horizontal=True),
            T.ResizeScale(min_scale=lsj.MIN_SCALE, max_scale=lsj.MAX_SCALE, target_height=size, target_width=size),
            T.FixedSizeCrop(crop_size=(size, size), pad=False)]


def lsj_mapper(cfg: CfgNode) -> Any:
    """Detectron2's DatasetMapper with the LSJ augmentations and boxes recomputed from the cropped masks."""
    from detectron2.data import DatasetMapper

    kwargs = DatasetMapper.from_config(cfg, is_train=True)
    kwargs.update(augmentations=lsj_augmentations(cfg), recompute_boxes=bool(cfg.MODEL.MASK_ON))
    return DatasetMapper(**kwargs)


# ----------------------------------------------------------------------------- runner rows

def rows_sized(rows: list, converted: dict[int, str] | None = None) -> None:
    """Give each runner row the ViT size of its weights (a ``.pkl`` with a ViT provenance; ``converted``: row id ->
    a converted copy to read instead, as a dry run's checks make); random init and rows whose weights do not say
    take the size of the first pretrained row that does (the config's otherwise). Rows of a ResNet are unchanged."""
    from transfer.weights import weights_provenance

    sized = {}
    for row in rows:
        weights = (converted or {}).get(id(row)) or row.weights
        prov = weights_provenance(weights) if weights.endswith(".pkl") else None
        if checkpoint_arch(prov) is not None:
            sized[id(row)] = prov
    first = next((sized[id(r)] for r in rows if r.kind == "pretrained" and id(r) in sized), None)
    replaced = sized_keys()
    for row in rows:
        pairs = [(row.opts[i], row.opts[i + 1]) for i in range(0, len(row.opts) - 1, 2)]
        keep = tuple(x for k, v in pairs if k not in replaced for x in (k, v))
        row.opts = (*keep, *size_overrides(sized.get(id(row), first), row.kind))
