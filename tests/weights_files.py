"""Weights files as users bring them, made from a seeded torchvision ResNet for the tests.

* ``caffe2_pkl``: MSRA/Detectron1 ImageNet layout: raw Caffe2 blob names (``conv1_w``, ``res2_0_branch2a_w``,
  ``res_conv1_bn_s``, BN folded into scale and bias), no ``model``/``__author__``;
* ``d2_pkl(author="MOCO")``: what the reference MoCo converter (``convert-pretrain-to-detectron2.py``) writes,
  ``author="torchvision"``: Detectron2's ``convert-torchvision-to-d2.py``: Detectron2 names, numpy arrays,
  ``{"model", "__author__", "matching_heuristics": True}``;
* ``evil_pkl``: a pickle whose loading calls ``os.system``.

The key-renaming rules are those the two converters document (torchvision ``layerN`` -> ``res{N+1}``,
``bnK`` -> ``convK.norm``, ``downsample.0/1`` -> ``shortcut``/``shortcut.norm``, stem keys under ``stem.``).
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import torch
import torchvision


def resnet_state(arch: str = "resnet18", seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    net = getattr(torchvision.models, arch)()
    with torch.no_grad():  # non-trivial BN statistics, so a lost buffer changes features
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return {k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}


def d2_name(key: str) -> str:
    if not key.startswith("layer"):
        key = "stem." + key
    for i in range(1, 5):
        key = key.replace(f"layer{i}", f"res{i + 1}")
    for i in range(1, 4):
        key = key.replace(f"bn{i}", f"conv{i}.norm")
    return key.replace("downsample.0", "shortcut").replace("downsample.1", "shortcut.norm")


def d2_pkl(path: Path, state: dict[str, torch.Tensor], author: str, prefix: str = "") -> Path:
    model = {prefix + d2_name(k): v.numpy() for k, v in state.items() if not k.startswith("fc.")}
    with open(path, "wb") as f:
        pickle.dump({"model": model, "__author__": author, "matching_heuristics": True}, f)
    return path


def _caffe2_name(key: str) -> str | None:
    parts = key.split(".")
    if key.startswith("fc."):
        return f"fc1000_{'w' if parts[-1] == 'weight' else 'b'}"
    if parts[0] == "conv1":
        return "conv1_w"
    if parts[0] == "bn1":
        return {"weight": "res_conv1_bn_s", "bias": "res_conv1_bn_b"}.get(parts[-1])
    stage, block, layer, what = int(parts[0][5:]) + 1, parts[1], parts[2], parts[-1]
    branch = {"conv1": "branch2a", "bn1": "branch2a", "conv2": "branch2b", "bn2": "branch2b",
              "conv3": "branch2c", "bn3": "branch2c", "downsample": "branch1"}[layer]
    is_bn = layer.startswith("bn") or (layer == "downsample" and parts[3] == "1")
    if is_bn:
        suffix = {"weight": "bn_s", "bias": "bn_b"}.get(what)
        return None if suffix is None else f"res{stage}_{block}_{branch}_{suffix}"
    return f"res{stage}_{block}_{branch}_w"


def caffe2_pkl(path: Path, state: dict[str, torch.Tensor]) -> Path:
    blobs = {}
    for k, v in state.items():
        name = _caffe2_name(k)
        if name is not None:  # running statistics are folded into scale and bias in these files
            blobs[name] = v.numpy()
    with open(path, "wb") as f:
        pickle.dump(blobs, f, protocol=2)
    return path


class _RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def evil_pkl(path: Path, marker: Path) -> Path:
    with open(path, "wb") as f:
        pickle.dump({"model": {"stem.conv1.weight": _RunsCode(marker)}, "__author__": "x"}, f)
    return path


def evil_pth(path: Path, marker: Path) -> Path:
    torch.save({"state_dict": {"conv1.weight": torch.zeros(1)}, "hook": _RunsCode(marker)}, path)
    return path
