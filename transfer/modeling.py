"""Detectron2 components for normalized fine-tuning, registered by importing this module.

* ``Res5ROIHeadsExtraNorm`` — the C4 box head of the MoCo paper: Detectron2's res5 ROI head with a
  norm layer (cfg.MODEL.RESNETS.NORM, i.e. SyncBN) after res5. For ResNet-18/34 the res5 head is built
  from basic blocks (Detectron2 always builds bottleneck blocks), so pretrained res5 weights of small
  backbones are used instead of being skipped for a shape mismatch.
* ``build_resnet_dc5_reduce_backbone`` — the paper's R50-dilated-C5: res5 with dilation 2 / stride 1,
  followed by a 3x3 conv + norm + ReLU reducing to ``MODEL.DC5_REDUCE.CHANNELS`` (512) channels, which
  the RPN and the 2-fc box head read as feature ``res5``.
* ``build_vitdet_backbone`` (``transfer/vitdet.py``) — Detectron2's ViT + simple feature pyramid of ViTDet.
* ``KRCNNConvNormDeconvUpsampleHead`` — Detectron2's keypoint head (3x3 convs, deconv, 2x upsampling) with
  ``MODEL.ROI_KEYPOINT_HEAD.NORM`` (SyncBN) after each conv: normalized fine-tuning puts BN in the heads too.

Importing this module also registers the semantic-segmentation pieces of ``transfer/semseg.py`` and the
PASCAL VOC semantic segmentation datasets of ``transfer/tasks/voc_semseg.py``.
"""

from __future__ import annotations

import torch.nn.functional as F
from detectron2.config import CfgNode
from detectron2.layers import Conv2d, ShapeSpec, get_norm
from detectron2.layers import ConvTranspose2d, interpolate
from detectron2.modeling import BACKBONE_REGISTRY, ROI_HEADS_REGISTRY, Backbone
from detectron2.modeling.backbone.resnet import BasicBlock, ResNet, build_resnet_backbone
from detectron2.modeling.roi_heads import Res5ROIHeads
from detectron2.modeling.roi_heads.keypoint_head import ROI_KEYPOINT_HEAD_REGISTRY, BaseKeypointRCNNHead
from fvcore.nn import weight_init
from torch import nn

from transfer.vitdet import add_vitdet_config  # also registers build_vitdet_backbone

_BASIC_RES5_BLOCKS = {18: 2, 34: 3}


def add_suite_config(cfg: CfgNode) -> CfgNode:
    """Config keys this suite adds to Detectron2's defaults."""
    cfg.MODEL.DC5_REDUCE = CfgNode()
    cfg.MODEL.DC5_REDUCE.CHANNELS = 512  # paper: "a 3x3 convolution (with BN) that reduces dimension to 512"
    # FCN head of transfer/semseg.py (paper A.4): N extra 3x3 convs with this dilation before the classifier
    cfg.MODEL.SEM_SEG_HEAD.NUM_CONVS = 2
    cfg.MODEL.SEM_SEG_HEAD.DILATION = 6
    # Random rescaling of whole training images (semantic segmentation); when enabled, the training
    # loader uses transfer.semseg.scale_crop_flip_mapper (scale, then INPUT.CROP, then INPUT.RANDOM_FLIP)
    cfg.INPUT.RANDOM_SCALE = CfgNode()
    cfg.INPUT.RANDOM_SCALE.ENABLED = False
    cfg.INPUT.RANDOM_SCALE.RANGE = (0.5, 2.0)
    # Periodic checkpoints kept per run (0: all, as Detectron2 does). One is enough to resume: the older
    # file is removed only after the newer one is written; model_final.pth is never removed.
    cfg.SOLVER.KEEP_CHECKPOINTS = 1
    # Gradient accumulation (transfer/accumulate.py): the batch of an iteration is run as this many slices,
    # for GPUs that cannot hold IMS_PER_BATCH / #GPUs images. 1 (the paper): no accumulation.
    cfg.SOLVER.ACCUMULATE_STEPS = 1
    # TF32 convolutions and matmuls on GPUs that have them (Ampere and later). Off: fp32 as the paper (V100s);
    # set explicitly either way, since PyTorch's own default turns TF32 convolutions on (runner flag --tf32).
    cfg.SOLVER.TF32 = False
    # Norm after each 3x3 conv of KRCNNConvNormDeconvUpsampleHead ("" : none, as Detectron2's keypoint head)
    cfg.MODEL.ROI_KEYPOINT_HEAD.NORM = ""
    # ViTDet (transfer/vitdet.py): MODEL.VIT, MODEL.VITDET, SOLVER.OPTIMIZER/BETAS/LAYER_DECAY, INPUT.LSJ
    add_vitdet_config(cfg)
    return cfg


@ROI_HEADS_REGISTRY.register()
class Res5ROIHeadsExtraNorm(Res5ROIHeads):
    """Res5 ROI head followed by an extra norm layer (MoCo paper, normalized fine-tuning, C4)."""

    @classmethod
    def _build_res5_block(cls, cfg: CfgNode) -> tuple[nn.Sequential, int]:
        depth = cfg.MODEL.RESNETS.DEPTH
        if depth in _BASIC_RES5_BLOCKS:
            out_channels = cfg.MODEL.RESNETS.RES2_OUT_CHANNELS * 8
            blocks = ResNet.make_stage(
                BasicBlock, _BASIC_RES5_BLOCKS[depth], stride_per_block=[2] + [1] * (_BASIC_RES5_BLOCKS[depth] - 1),
                in_channels=out_channels // 2, out_channels=out_channels, norm=cfg.MODEL.RESNETS.NORM,
            )
            res5 = nn.Sequential(*blocks)
        else:
            res5, out_channels = super()._build_res5_block(cfg)
        res5.add_module("norm", get_norm(cfg.MODEL.RESNETS.NORM, out_channels))
        return res5, out_channels


class ResNetDC5Reduce(Backbone):
    """Dilated-C5 ResNet plus a 3x3 conv-norm-ReLU to a smaller width, exposed as ``res5``."""

    def __init__(self, cfg: CfgNode, input_shape: ShapeSpec) -> None:
        super().__init__()
        assert cfg.MODEL.RESNETS.RES5_DILATION == 2, "R50-dilated-C5 needs MODEL.RESNETS.RES5_DILATION: 2"
        self.body = build_resnet_backbone(cfg, input_shape)
        res5 = self.body.output_shape()["res5"]
        width = cfg.MODEL.DC5_REDUCE.CHANNELS
        norm = cfg.MODEL.RESNETS.NORM
        self.reduce = Conv2d(res5.channels, width, kernel_size=3, padding=1, bias=not norm,
                             norm=get_norm(norm, width), activation=F.relu)
        weight_init.c2_msra_fill(self.reduce)
        self._out_shape = ShapeSpec(channels=width, stride=res5.stride)

    def forward(self, x):
        return {"res5": self.reduce(self.body(x)["res5"])}

    def output_shape(self) -> dict[str, ShapeSpec]:
        return {"res5": self._out_shape}


@BACKBONE_REGISTRY.register()
def build_resnet_dc5_reduce_backbone(cfg: CfgNode, input_shape: ShapeSpec) -> Backbone:
    return ResNetDC5Reduce(cfg, input_shape)


@ROI_KEYPOINT_HEAD_REGISTRY.register()
class KRCNNConvNormDeconvUpsampleHead(BaseKeypointRCNNHead, nn.Sequential):
    """Keypoint head of Mask R-CNN: [3x3 conv + norm + ReLU] x N, a stride-2 deconv to one heatmap per
    keypoint, 2x bilinear upsampling (Detectron2's ``KRCNNConvDeconvUpsampleHead`` plus the norm)."""

    def __init__(self, cfg: CfgNode, input_shape: ShapeSpec) -> None:
        head = cfg.MODEL.ROI_KEYPOINT_HEAD
        super().__init__(**BaseKeypointRCNNHead.from_config(cfg, input_shape))
        channels = input_shape.channels
        for k, dim in enumerate(head.CONV_DIMS, 1):
            self.add_module(f"conv_fcn{k}", Conv2d(channels, dim, 3, padding=1, bias=not head.NORM,
                                                  norm=get_norm(head.NORM, dim), activation=F.relu))
            channels = dim
        self.score_lowres = ConvTranspose2d(channels, head.NUM_KEYPOINTS, 4, stride=2, padding=1)
        for name, param in self.named_parameters():
            if name.endswith("bias"):
                nn.init.zeros_(param)
            elif name.endswith("weight") and param.dim() > 1:  # norm weights keep their init (1)
                nn.init.kaiming_normal_(param, mode="fan_out", nonlinearity="relu")

    def layers(self, x):
        for layer in self:
            x = layer(x)
        return interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)


import transfer.semseg  # noqa: E402,F401  (registers the FCN head and the dilated-C5 backbone)
