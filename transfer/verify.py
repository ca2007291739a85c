"""Check a converted backbone inside Detectron2: it loads cleanly and computes the same features.

Builds Detectron2's ResNet for the spec (``STRIDE_IN_1X1=False``, i.e. stride in the 3x3 conv as in
torchvision; FrozenBN = BN in eval mode), loads the ``.pkl`` through ``DetectionCheckpointer`` (the
same path training uses), and compares res2..res5 with the source torchvision network on a seeded
input. Any missing/unexpected/mis-shaped tensor or a feature mismatch is a :class:`ConvertError`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from transfer.checkpoint_io import ConvertError
from transfer.resnet_spec import ResNetSpec, build_torchvision

STAGES = ("res2", "res3", "res4", "res5")


def detectron2_available() -> bool:
    try:
        import detectron2  # noqa: F401
    except ImportError:
        return False
    return True


def build_detectron2_resnet(spec: ResNetSpec):
    """Detectron2 ResNet backbone matching ``spec``, outputs res2..res5, eval mode."""
    from detectron2.config import get_cfg
    from detectron2.layers import ShapeSpec
    from detectron2.modeling.backbone.resnet import build_resnet_backbone

    cfg = get_cfg()
    r = cfg.MODEL.RESNETS
    r.DEPTH = spec.depth
    r.OUT_FEATURES = list(STAGES)
    r.STRIDE_IN_1X1 = False
    r.NORM = "FrozenBN"
    r.STEM_OUT_CHANNELS = spec.stem_out
    r.RES2_OUT_CHANNELS = spec.res2_out
    r.NUM_GROUPS = spec.num_groups
    r.WIDTH_PER_GROUP = spec.width_per_group
    cfg.MODEL.BACKBONE.FREEZE_AT = 0
    return build_resnet_backbone(cfg, ShapeSpec(channels=3)).eval()


def torchvision_stages(net: torch.nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """res2..res5 features of a torchvision ResNet."""
    x = net.maxpool(net.relu(net.bn1(net.conv1(x))))
    out = {}
    for name, layer in zip(STAGES, (net.layer1, net.layer2, net.layer3, net.layer4)):
        x = layer(x)
        out[name] = x
    return out


def load_every_tensor(model: torch.nn.Module, pkl: Path, within: str = "", may_stay_empty: tuple[str, ...] = ()) -> None:
    """Load ``pkl`` into ``model`` the way a trial does (Detectron2's checkpointer, the suite's safe reader) and raise
    :class:`ConvertError` (one line) unless every parameter under ``within`` is filled (but those ending in
    ``may_stay_empty``), every tensor of the file is used and every shape fits."""
    from detectron2.checkpoint import DetectionCheckpointer

    from transfer.checkpointer import install

    install()  # the .pkl is read like every weights file: without running code
    checkpointer = DetectionCheckpointer(model)
    for name in ("fvcore.common.checkpoint", "detectron2.checkpoint.c2_model_loading"):
        logging.getLogger(name).setLevel(logging.ERROR)
    incompatible = checkpointer._load_model(checkpointer._load_file(str(pkl)))
    missing = [k for k in incompatible.missing_keys
               if k.startswith(within) and not (may_stay_empty and k.endswith(may_stay_empty))]
    problems = []
    if missing:
        problems.append(f"Detectron2 parameters not filled: {', '.join(sorted(missing)[:3])}")
    if incompatible.unexpected_keys:
        problems.append(f"tensors left unused by Detectron2: {', '.join(sorted(incompatible.unexpected_keys)[:3])}")
    if getattr(incompatible, "incorrect_shapes", None):
        k, got, want = incompatible.incorrect_shapes[0]
        problems.append(f"shape mismatch for {k}: file {tuple(got)} vs model {tuple(want)}")
    if problems:
        raise ConvertError(f"{pkl.name}: verification failed: {'; '.join(problems)}")


def verify_pkl(pkl: Path, spec: ResNetSpec, source: dict[str, torch.Tensor], size: int = 64, rtol: float = 1e-4) -> dict:
    """Load ``pkl`` into Detectron2 and compare features with the source tensors; return a summary."""
    d2 = build_detectron2_resnet(spec)
    load_every_tensor(d2, pkl)

    net = build_torchvision(spec)
    net.load_state_dict(source, strict=False)
    net.eval()
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, size, size, generator=gen)
    with torch.no_grad():
        want = torchvision_stages(net, x)
        got = d2(x)
    errors = {}
    for name in STAGES:
        scale = want[name].abs().max().item() + 1e-6
        err = (got[name] - want[name]).abs().max().item() / scale
        errors[name] = err
        if got[name].shape != want[name].shape or not err <= rtol:
            raise ConvertError(
                f"{pkl.name}: verification failed: Detectron2 {name} features differ from the source network "
                f"(relative max error {err:.2e} > {rtol:.0e}); the key mapping or architecture is wrong"
            )
    return {"max_relative_error": errors, "input": [2, 3, size, size]}
