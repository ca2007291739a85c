"""ResNet encoders used by pretraining: torchvision's, plus the fully widened R50 (w2, w4).

The MoCo paper's R50w2x / R50w4x widen *every* layer (stem, bottleneck and output channels), as in
CPC v2 / SimCLR: 94M and 375M parameters. torchvision's ``wide_resnet50_2`` instead widens only the
bottleneck's inner 3x3 (69M parameters); both are accepted here and by ``transfer/convert.py``.
"""

from __future__ import annotations

import torch.nn as nn
import torchvision.models as tvm
from torchvision.models.resnet import Bottleneck, ResNet

TORCHVISION_ARCHS = (
    "resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "wide_resnet50_2", "wide_resnet101_2",
)
WIDENED_ARCHS = {"resnet50w2": 2, "resnet50w4": 4}
ARCHS = TORCHVISION_ARCHS + tuple(WIDENED_ARCHS)


def widened_resnet(layers: list[int], multiplier: int, num_classes: int = 1000) -> ResNet:
    """Bottleneck ResNet with all channel counts multiplied (stem 64m, stage widths 64m..512m)."""
    net = ResNet(Bottleneck, layers, num_classes=num_classes)
    base = 64 * multiplier
    net.inplanes = base
    net.conv1 = nn.Conv2d(3, base, kernel_size=7, stride=2, padding=3, bias=False)
    net.bn1 = nn.BatchNorm2d(base)
    # ResNet._make_layer tracks self.inplanes, so the stages are rebuilt in order.
    net.layer1 = net._make_layer(Bottleneck, base, layers[0])
    net.layer2 = net._make_layer(Bottleneck, base * 2, layers[1], stride=2)
    net.layer3 = net._make_layer(Bottleneck, base * 4, layers[2], stride=2)
    net.layer4 = net._make_layer(Bottleneck, base * 8, layers[3], stride=2)
    net.fc = nn.Linear(base * 8 * Bottleneck.expansion, num_classes)
    for m in net.modules():  # same init as torchvision's constructor
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.constant_(m.weight, 1)
            nn.init.constant_(m.bias, 0)
    return net


def build_resnet(arch: str, num_classes: int = 1000, zero_init_residual: bool = False) -> ResNet:
    """Build an (untrained) ResNet encoder by name; ``fc`` has ``num_classes`` outputs. ``zero_init_residual``:
    the last BN of each residual branch starts at 0 (torchvision's option; MoCo v3 uses it)."""
    if arch in WIDENED_ARCHS:
        net = widened_resnet([3, 4, 6, 3], WIDENED_ARCHS[arch], num_classes)
        if zero_init_residual:
            for m in net.modules():
                if isinstance(m, Bottleneck):
                    nn.init.constant_(m.bn3.weight, 0)
        return net
    if arch in TORCHVISION_ARCHS:
        return getattr(tvm, arch)(weights=None, num_classes=num_classes, zero_init_residual=zero_init_residual)
    raise ValueError(f"unknown arch {arch!r}; choose one of {', '.join(ARCHS)}")
