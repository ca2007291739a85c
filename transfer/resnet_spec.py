"""ResNet architecture inference from tensor shapes, and torchvision -> Detectron2 key names.

Name mapping (the same names the reference MoCo-to-Detectron2 conversion produces):
``conv1`` / ``bn1`` -> ``stem.conv1`` / ``stem.conv1.norm``; ``layerN.B.convK`` / ``bnK`` ->
``res{N+1}.B.convK`` / ``convK.norm``; ``downsample.0`` / ``downsample.1`` -> ``shortcut`` /
``shortcut.norm``. The classification / projection head (``fc*``) and BN's ``num_batches_tracked``
counters are not part of the backbone and are dropped.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import torch

from transfer.checkpoint_io import ConvertError

if TYPE_CHECKING:
    from torchvision.models.resnet import ResNet

_DEPTHS = {
    (False, (2, 2, 2, 2)): 18,
    (False, (3, 4, 6, 3)): 34,
    (True, (3, 4, 6, 3)): 50,
    (True, (3, 4, 23, 3)): 101,
    (True, (3, 8, 36, 3)): 152,
}
_BACKBONE_KEY = re.compile(r"^(conv1\.|bn1\.|layer[1-4]\.\d+\.)")


@dataclass(frozen=True)
class ResNetSpec:
    """What Detectron2 needs to rebuild the encoder (cfg.MODEL.RESNETS.*)."""

    depth: int
    bottleneck: bool
    layers: tuple[int, int, int, int]
    stem_out: int  # STEM_OUT_CHANNELS
    res2_out: int  # RES2_OUT_CHANNELS
    num_groups: int  # NUM_GROUPS
    width_per_group: int  # WIDTH_PER_GROUP

    @property
    def name(self) -> str:
        """Conventional architecture name (resnet50, wide_resnet50_2, resnet50w2, ...)."""
        width = self.num_groups * self.width_per_group
        if not self.bottleneck:
            return f"resnet{self.depth}"
        if self.num_groups > 1:
            return f"resnext{self.depth}_{self.num_groups}x{self.width_per_group}d"
        if self.stem_out == 64 and width == 64:
            return f"resnet{self.depth}"
        if self.stem_out == 64:
            return f"wide_resnet{self.depth}_{width // 64}"
        return f"resnet{self.depth}w{self.stem_out // 64}"

    def as_dict(self) -> dict:
        return {**asdict(self), "name": self.name}


def backbone_tensors(tensors: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Split encoder tensors into backbone tensors and the names of dropped ones (head, counters)."""
    kept, dropped = {}, []
    for k, v in tensors.items():
        if _BACKBONE_KEY.match(k) and not k.endswith("num_batches_tracked"):
            kept[k] = v
        else:
            dropped.append(k)
    return kept, sorted(dropped)


def infer_spec(tensors: dict[str, torch.Tensor], where: str) -> ResNetSpec:
    """Infer depth and widths from the tensors' names and shapes."""
    blocks = []
    for stage in range(1, 5):
        idx = {int(m.group(1)) for k in tensors if (m := re.match(rf"layer{stage}\.(\d+)\.", k))}
        if not idx or idx != set(range(len(idx))):
            raise ConvertError(f"{where}: stage layer{stage} is missing or has gaps in its block numbering")
        blocks.append(len(idx))
    bottleneck = "layer1.0.conv3.weight" in tensors
    layers = tuple(blocks)
    depth = _DEPTHS.get((bottleneck, layers))
    if depth is None:
        kind = "bottleneck" if bottleneck else "basic"
        raise ConvertError(f"{where}: unsupported ResNet layout ({kind} blocks {list(layers)}); supported depths: 18, 34, 50, 101, 152")
    stem_w = tensors["conv1.weight"]
    if stem_w.ndim != 4 or stem_w.shape[1] != 3:
        raise ConvertError(f"{where}: conv1.weight has shape {tuple(stem_w.shape)}, expected (C, 3, 7, 7)")
    stem_out = stem_w.shape[0]
    if bottleneck:
        c1 = tensors["layer1.0.conv1.weight"]
        c2 = tensors.get("layer1.0.conv2.weight")
        c3 = tensors["layer1.0.conv3.weight"]
        if c2 is None or c2.ndim != 4:
            raise ConvertError(f"{where}: layer1.0.conv2.weight is missing or not a conv weight")
        width = c1.shape[0]
        groups = max(1, width // c2.shape[1])
        spec = ResNetSpec(depth, True, layers, stem_out, c3.shape[0], groups, width // groups)
    else:
        spec = ResNetSpec(depth, False, layers, stem_out, tensors["layer1.0.conv2.weight"].shape[0], 1, 64)
    check_shapes(tensors, spec, where)
    return spec


def build_torchvision(spec: ResNetSpec, device: str | torch.device = "cpu") -> ResNet:
    """The torchvision ResNet with this spec (head of 1 class; unused)."""
    from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet  # here: torchvision takes seconds to import

    from pretrain.resnets import widened_resnet

    with torch.device(device):
        width = spec.num_groups * spec.width_per_group
        if not spec.bottleneck:
            return ResNet(BasicBlock, list(spec.layers), num_classes=1)
        if spec.stem_out == 64:
            return ResNet(Bottleneck, list(spec.layers), num_classes=1, groups=spec.num_groups,
                          width_per_group=spec.width_per_group)
        if spec.num_groups == 1 and width == spec.stem_out and spec.stem_out % 64 == 0:
            return widened_resnet(list(spec.layers), spec.stem_out // 64, num_classes=1)
    raise ConvertError(f"unsupported ResNet widths: stem {spec.stem_out}, bottleneck {width}, output {spec.res2_out}")


def check_shapes(tensors: dict[str, torch.Tensor], spec: ResNetSpec, where: str) -> None:
    """Every backbone tensor present with the shape the inferred architecture needs."""
    expected = {k: v.shape for k, v in build_torchvision(spec, "meta").state_dict().items()}
    expected = {k: s for k, s in expected.items() if _BACKBONE_KEY.match(k) and not k.endswith("num_batches_tracked")}
    missing = sorted(set(expected) - set(tensors))
    if missing:
        raise ConvertError(f"{where}: {spec.name} is missing {len(missing)} tensor(s), first: {missing[0]}")
    extra = sorted(set(tensors) - set(expected))
    if extra:
        raise ConvertError(f"{where}: unexpected tensor {extra[0]} for a {spec.name}")
    for k, shape in expected.items():
        if tuple(tensors[k].shape) != tuple(shape):
            raise ConvertError(
                f"{where}: wrong shape for {k}: {tuple(tensors[k].shape)}, a {spec.name} needs {tuple(shape)}"
            )


def detectron2_name(key: str) -> str:
    """torchvision ResNet key -> Detectron2 ResNet key."""
    if key.startswith("conv1."):
        return "stem." + key
    if key.startswith("bn1."):
        return "stem.conv1.norm." + key[len("bn1."):]
    m = re.match(r"^layer([1-4])\.(\d+)\.(.+)$", key)
    if not m:
        raise ValueError(f"not a ResNet backbone key: {key}")
    stage, block, rest = int(m.group(1)) + 1, m.group(2), m.group(3)
    rest = re.sub(r"^bn(\d)\.", r"conv\1.norm.", rest)
    rest = re.sub(r"^downsample\.0\.", "shortcut.", rest)
    rest = re.sub(r"^downsample\.1\.", "shortcut.norm.", rest)
    return f"res{stage}.{block}.{rest}"
