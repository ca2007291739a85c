"""Semantic segmentation of the MoCo paper (appendix A.4), as Detectron2 components registered on import.

* ``build_resnet_dilated_c5_backbone`` — ResNet whose res5 has stride 1 and dilation
  ``RES5_DILATION`` (2), so the total stride is 16 (FCN-16s). Bottleneck ResNets (R50+) are Detectron2's
  own ``build_resnet_backbone``; for basic-block ResNets (R18/34, used by the small-scale demo), which
  Detectron2 refuses to dilate, the res5 3x3 convs are switched to stride 1 / dilation 2 after building.
* ``FCNDilatedHead`` (``SEM_SEG_HEADS_REGISTRY``) — two 3x3 convs of ``CONVS_DIM`` (256) channels with
  dilation ``DILATION`` (6), each followed by ``NORM`` (SyncBN) and ReLU, then a 1x1 classifier; the
  logits are upsampled to the input resolution and trained with per-pixel cross-entropy that ignores
  ``IGNORE_VALUE`` (255). Used with Detectron2's ``SemanticSegmentor`` meta-architecture.
* ``scale_crop_flip_mapper(cfg)`` — the training augmentation (random scale in ``INPUT.RANDOM_SCALE.RANGE``,
  random crop ``INPUT.CROP.SIZE``, horizontal flip) as a Detectron2 ``DatasetMapper``. A crop larger than the
  scaled image keeps the whole image; batching then pads images with the pixel mean (0 after
  normalization) and labels with the ignore value, as DeepLab pads crops.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from detectron2.config import CfgNode
from detectron2.data import DatasetMapper
from detectron2.data import transforms as T
from detectron2.layers import Conv2d, ShapeSpec, get_norm
from detectron2.modeling import BACKBONE_REGISTRY, SEM_SEG_HEADS_REGISTRY, Backbone
from detectron2.modeling.backbone.resnet import BasicBlock, ResNet, build_resnet_backbone
from fvcore.nn import weight_init
from PIL import Image
from torch import nn


# ----------------------------------------------------------------------------- backbone

def dilate_res5(net: ResNet, dilation: int) -> ResNet:
    """Make the basic-block res5 of ``net`` stride 1 with ``dilation`` in its 3x3 convs (in place)."""
    for block in net.res5:
        if not isinstance(block, BasicBlock):
            raise TypeError("dilate_res5 handles basic blocks; Detectron2 dilates bottleneck blocks itself")
        for conv in (block.conv1, block.conv2):
            conv.stride, conv.dilation, conv.padding = (1, 1), (dilation, dilation), (dilation, dilation)
        if block.shortcut is not None:
            block.shortcut.stride = (1, 1)
    net._out_feature_strides["res5"] //= 2
    return net


@BACKBONE_REGISTRY.register()
def build_resnet_dilated_c5_backbone(cfg: CfgNode, input_shape: ShapeSpec) -> Backbone:
    """ResNet with a dilated, stride-1 res5 (total stride 16) for any depth."""
    dilation = cfg.MODEL.RESNETS.RES5_DILATION
    if dilation != 2:
        raise ValueError("build_resnet_dilated_c5_backbone needs MODEL.RESNETS.RES5_DILATION: 2 (total stride 16)")
    if cfg.MODEL.RESNETS.DEPTH >= 50:
        return build_resnet_backbone(cfg, input_shape)
    plain = cfg.clone()
    plain.defrost()
    plain.MODEL.RESNETS.RES5_DILATION = 1  # Detectron2 asserts 1 for basic blocks; dilated below instead
    return dilate_res5(build_resnet_backbone(plain, input_shape), dilation)


# ----------------------------------------------------------------------------- head

def upsample_to_input(logits: torch.Tensor, stride: int) -> torch.Tensor:
    """Bilinear upsampling of stride-``stride`` logits to ``stride`` x their size, pixel-aligned.

    Output pixel ``stride * i`` is feature ``i`` (ResNet's padded convs keep that alignment), as in
    DeepLab's ``align_corners=True`` resizing; the last ``stride - 1`` rows/columns repeat the edge.
    """
    h, w = logits.shape[-2:]
    out = F.interpolate(logits, size=((h - 1) * stride + 1, (w - 1) * stride + 1), mode="bilinear",
                        align_corners=True)
    return F.pad(out, (0, stride - 1, 0, stride - 1), mode="replicate")


@SEM_SEG_HEADS_REGISTRY.register()
class FCNDilatedHead(nn.Module):
    """FCN-16s head of the MoCo paper: [3x3 conv (dilated) + norm + ReLU] x N, 1x1 classifier."""

    def __init__(self, cfg: CfgNode, input_shape: dict[str, ShapeSpec]) -> None:
        super().__init__()
        head = cfg.MODEL.SEM_SEG_HEAD
        if len(head.IN_FEATURES) != 1:
            raise ValueError(f"FCNDilatedHead reads one feature map, not {list(head.IN_FEATURES)}")
        self.in_feature = head.IN_FEATURES[0]
        shape = input_shape[self.in_feature]
        self.stride = shape.stride
        self.ignore_value = head.IGNORE_VALUE
        self.loss_weight = head.LOSS_WEIGHT
        d, dim = head.DILATION, head.CONVS_DIM
        convs = []
        for k in range(head.NUM_CONVS):
            conv = Conv2d(shape.channels if k == 0 else dim, dim, kernel_size=3, padding=d, dilation=d,
                          bias=not head.NORM, norm=get_norm(head.NORM, dim), activation=F.relu)
            weight_init.c2_msra_fill(conv)
            convs.append(conv)
        self.convs = nn.Sequential(*convs)
        self.predictor = Conv2d(dim if convs else shape.channels, head.NUM_CLASSES, kernel_size=1)
        nn.init.normal_(self.predictor.weight, std=0.01)
        nn.init.zeros_(self.predictor.bias)

    def forward(self, features: dict[str, torch.Tensor], targets: torch.Tensor | None = None):
        logits = upsample_to_input(self.predictor(self.convs(features[self.in_feature])), self.stride)
        if not self.training:
            return logits, {}
        logits = logits[..., : targets.shape[-2], : targets.shape[-1]]  # padded input size <= stride x features
        # mean over labelled pixels; 0 (not NaN) for a batch of crops that are all ignore
        valid = (targets != self.ignore_value).sum().clamp(min=1)
        loss = F.cross_entropy(logits, targets, reduction="sum", ignore_index=self.ignore_value) / valid
        return None, {"loss_sem_seg": loss * self.loss_weight}


# ----------------------------------------------------------------------------- training augmentation

class RandomScale(T.Augmentation):
    """Resize by a factor drawn uniformly from ``[min_scale, max_scale]`` (both sides, aspect kept)."""

    def __init__(self, min_scale: float, max_scale: float) -> None:
        super().__init__()
        self.min_scale, self.max_scale = float(min_scale), float(max_scale)

    def get_transform(self, image: np.ndarray) -> T.Transform:
        h, w = image.shape[:2]
        s = np.random.uniform(self.min_scale, self.max_scale)
        return T.ResizeTransform(h, w, max(1, round(h * s)), max(1, round(w * s)), Image.BILINEAR)


def scale_crop_flip_augmentations(cfg: CfgNode) -> list[T.Augmentation]:
    lo, hi = cfg.INPUT.RANDOM_SCALE.RANGE
    augs: list[T.Augmentation] = [RandomScale(lo, hi)]
    if cfg.INPUT.CROP.ENABLED:
        augs.append(T.RandomCrop(cfg.INPUT.CROP.TYPE, cfg.INPUT.CROP.SIZE))
    if cfg.INPUT.RANDOM_FLIP != "none":
        augs.append(T.RandomFlip(horizontal=cfg.INPUT.RANDOM_FLIP == "horizontal",
                                 vertical=cfg.INPUT.RANDOM_FLIP == "vertical"))
    return augs


def scale_crop_flip_mapper(cfg: CfgNode) -> DatasetMapper:
    """Training ``DatasetMapper`` with random scale, crop and flip (``cfg.INPUT.RANDOM_SCALE.ENABLED``)."""
    return DatasetMapper(cfg, is_train=True, augmentations=scale_crop_flip_augmentations(cfg))
