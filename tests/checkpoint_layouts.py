"""One small checkpoint per layout of ``transfer/layouts.py``, laid out as each library's save code lays it out
(keys, nesting, DDP ``module.``, extra top-level entries), with ResNet-18 tensors (``weights_files.resnet_state``).

Every writer returns (path, the tensors of the encoder that must transfer, torchvision names). Where a file holds
two ResNets (teacher and student, query and key), they differ in value, so a test can tell which one was taken.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Callable

import torch
from weights_files import d2_name, resnet_state

Tensors = dict[str, torch.Tensor]
OPTIMIZER = {"state": {}, "param_groups": [{"lr": 0.03, "momentum": 0.9, "params": [0, 1]}]}


def backbone(seed: int = 0) -> Tensors:
    """A ResNet-18 encoder without its classifier."""
    return {k: v for k, v in resnet_state("resnet18", seed).items() if not k.startswith("fc.")}


def _pre(prefix: str, tensors: Tensors) -> Tensors:
    return {prefix + k: v for k, v in tensors.items()}


def _head(prefix: str, *names: str) -> Tensors:
    return {f"{prefix}{n}": torch.ones(4, 4) for n in names}


def _save(path: Path, obj: object) -> Path:
    torch.save(obj, path)
    return path


def solo_learn(d: Path) -> tuple[Path, Tensors]:
    """solo-learn (Lightning): ``state_dict`` with ``backbone.``, momentum copy, projector, online classifier."""
    enc = backbone(0)
    sd = {**_pre("backbone.", enc), **_pre("momentum_backbone.", backbone(1)),
          **_head("projector.", "0.weight", "3.weight"), "classifier.weight": torch.zeros(10, 512),
          "classifier.bias": torch.zeros(10)}
    return _save(d / "solo_byol.ckpt", {"epoch": 99, "global_step": 1000, "pytorch-lightning_version": "2.0.0",
                                         "state_dict": sd, "optimizer_states": [OPTIMIZER], "lr_schedulers": []}), enc


def mmpretrain(d: Path) -> tuple[Path, Tensors]:
    """mmpretrain/mmselfsup (mmengine): ``meta`` + ``state_dict`` with ``backbone.``, ``neck.``, momentum target."""
    enc = backbone(0)
    sd = {**_pre("backbone.", enc), **_head("neck.mlp.", "0.weight", "2.weight"),
          **_pre("target_net.module.0.", backbone(1)), "target_net.steps": torch.tensor(5)}
    return _save(d / "epoch_200.pth", {"meta": {"epoch": 200, "iter": 1000, "mmengine_version": "0.8.0"},
                                       "state_dict": sd, "optimizer": OPTIMIZER}), enc


def barlowtwins(d: Path) -> tuple[Path, Tensors]:
    """Barlow Twins main.py: ``dict(epoch, model=DDP state, optimizer)``; affine-free ``bn``."""
    enc = backbone(0)
    model = {**_pre("module.backbone.", enc), **_head("module.projector.", "0.weight", "3.weight"),
             "module.bn.running_mean": torch.zeros(4), "module.bn.running_var": torch.ones(4)}
    return _save(d / "checkpoint.pth", {"epoch": 300, "model": model, "optimizer": OPTIMIZER}), enc


def simsiam(d: Path) -> tuple[Path, Tensors]:
    """SimSiam main_simsiam.py: ``state_dict`` with ``module.encoder.`` (its fc is the projector) + predictor."""
    enc = backbone(0)
    sd = {**_pre("module.encoder.", enc), **_head("module.encoder.fc.", "0.weight", "3.weight", "6.weight"),
          **_head("module.predictor.", "0.weight", "3.weight")}
    return _save(d / "checkpoint_0099.pth.tar", {"epoch": 100, "arch": "resnet18", "state_dict": sd,
                                                 "optimizer": OPTIMIZER}), enc


def pixpro(d: Path) -> tuple[Path, Tensors]:
    """PixPro main_pretrain.py: ``model`` with ``module.encoder.`` (transfers) and ``module.encoder_k.``."""
    enc = backbone(0)
    model = {**_pre("module.encoder.", enc), **_pre("module.encoder_k.", backbone(1)),
             **_head("module.projector.", "linear1.weight"), **_head("module.projector_k.", "linear1.weight"),
             **_head("module.value_transform.", "linear1.weight")}
    return _save(d / "ckpt_epoch_100.pth", {"model": model, "optimizer": OPTIMIZER, "scheduler": {}, "epoch": 100}), enc


def soco(d: Path) -> tuple[Path, Tensors]:
    """SoCo (C4) contrast/util.py: like PixPro, plus the MoCo-style ``queue``; ``module.encoder.`` transfers."""
    enc = backbone(0)
    model = {**_pre("module.encoder.", enc), **_pre("module.encoder_k.", backbone(1)),
             **_head("module.projector.", "linear1.weight"), **_head("module.projector_k.", "linear1.weight"),
             **_head("module.predictor.", "linear1.weight"), "module.queue": torch.zeros(4, 8),
             "module.queue_ptr": torch.zeros(1, dtype=torch.long)}
    return _save(d / "current.pth", {"model": model, "optimizer": OPTIMIZER, "scheduler": {}, "epoch": 100}), enc


def byol_pytorch(d: Path) -> tuple[Path, Tensors]:
    """byol-pytorch ``BYOL.state_dict()``: ``online_encoder.net.`` (transfers), its projector, target, predictor."""
    enc = backbone(0)
    sd = {**_pre("online_encoder.net.", enc), **_head("online_encoder.projector.net.", "0.weight"),
          **_pre("target_encoder.net.", backbone(1)), **_head("online_predictor.net.", "0.weight")}
    return _save(d / "byol.pt", sd), enc


def compiled(d: Path) -> tuple[Path, Tensors]:
    """A ``torch.compile``d torchvision ResNet saved from DDP: ``module._orig_mod.conv1.weight`` ..."""
    enc = backbone(0)
    return _save(d / "compiled.pth", {"model": _pre("module._orig_mod.", enc), "epoch": 3}), enc


def dino(d: Path) -> tuple[Path, Tensors]:
    """DINO main_dino.py ``save_dict`` (without its argparse ``args``): DDP student and teacher; the TEACHER transfers."""
    teacher = backbone(1)
    return _save(d / "checkpoint.pth", {
        "student": {**_pre("module.backbone.", backbone(0)), **_head("module.head.mlp.", "0.weight"),
                    "module.head.last_layer.weight_g": torch.ones(8, 1)},
        "teacher": {**_pre("module.backbone.", teacher), **_head("module.head.mlp.", "0.weight"),
                    "module.head.last_layer.weight_g": torch.ones(8, 1)},
        "optimizer": OPTIMIZER, "epoch": 100, "fp16_scaler": None, "dino_loss": {"center": torch.zeros(1, 8)}}), teacher


def slotcon(d: Path) -> tuple[Path, Tensors]:
    """SlotCon main_pretrain.py (without ``args``): ``model`` of DDP SlotCon; the teacher ``encoder_k`` transfers."""
    teacher = backbone(1)
    model = {**_pre("module.encoder_q.", backbone(0)), **_pre("module.encoder_k.", teacher),
             **_head("module.projector_q.mlp.", "0.weight"), **_head("module.projector_k.mlp.", "0.weight"),
             "module.center": torch.zeros(1, 8), "module.grouping_q.slot_embed.weight": torch.zeros(8, 4),
             "module.grouping_k.slot_embed.weight": torch.zeros(8, 4),
             **_head("module.predictor_slot.mlp.", "0.weight")}
    return _save(d / "ckpt_epoch_800.pth", {"model": model, "optimizer": OPTIMIZER, "scheduler": {},
                                            "epoch": 800}), teacher


def vissl(d: Path) -> tuple[Path, Tensors]:
    """VISSL checkpoint: ``classy_state_dict/base_model/model/trunk`` with ``_feature_blocks.`` names, plus heads."""
    enc = backbone(0)
    base = {"model": {"trunk": _pre("_feature_blocks.", enc), "heads": _head("0.clf.", "0.weight")}, "meta": {}}
    return _save(d / "model_final_checkpoint_phase199.torch", {
        "phase_idx": 199, "iteration": 5000, "train_phase_idx": 199, "iteration_num": 5000,
        "classy_state_dict": {"base_model": base, "optim": OPTIMIZER}}), enc


_SEQUENTIAL = {"conv1": "0", "bn1": "1", "layer1": "4", "layer2": "5", "layer3": "6", "layer4": "7"}


def lightly(d: Path) -> tuple[Path, Tensors]:
    """lightly + Lightning: ``backbone = nn.Sequential(*list(resnet.children())[:-1])`` (numbered keys), momentum."""
    enc = backbone(0)

    def seq(tensors: Tensors) -> Tensors:
        return {_SEQUENTIAL[k.split(".")[0]] + k[len(k.split(".")[0]):]: v for k, v in tensors.items()}

    sd = {**_pre("backbone.", seq(enc)), **_pre("backbone_momentum.", seq(backbone(1))),
          **_head("projection_head.layers.", "0.weight")}
    return _save(d / "lightly_moco.ckpt", {"epoch": 9, "pytorch-lightning_version": "2.0.0", "state_dict": sd}), enc


def detectron2_names(d: Path) -> tuple[Path, Tensors]:
    """A backbone in Detectron2 names (``stem.conv1.weight``, ``res2.0.conv1.weight``) saved as a ``.pth``."""
    enc = backbone(0)
    return _save(d / "vissl_d2.pth", {d2_name(k): v for k, v in enc.items()}), enc


def soco_c4_pkl(d: Path) -> Path:
    """SoCo's ``current_detectron2_C4.pkl``: its converter writes PixPro's ``__author__``."""
    model = {d2_name(k): v.numpy() for k, v in backbone(0).items()}
    path = d / "current_detectron2_C4.pkl"
    with open(path, "wb") as f:
        pickle.dump({"model": model, "__author__": "PixPro", "matching_heuristics": True}, f)
    return path


# name -> (writer, layout, method, which encoder the layout must say it takes)
LAYOUTS: dict[str, tuple[Callable[[Path], tuple[Path, Tensors]], str, str, str]] = {
    "solo-learn": (solo_learn, "solo-learn", "unknown", "online backbone"),
    "mmpretrain": (mmpretrain, "mmpretrain", "unknown", "backbone"),
    "barlowtwins": (barlowtwins, "barlowtwins", "Barlow Twins", "backbone"),
    "simsiam": (simsiam, "simsiam", "SimSiam", "encoder"),
    "pixpro": (pixpro, "pixpro", "PixPro", "online encoder"),
    "soco": (soco, "soco", "SoCo", "online encoder"),
    "byol-pytorch": (byol_pytorch, "byol-pytorch", "BYOL", "online encoder"),
    "torch.compile": (compiled, "torchvision-ddp", "unknown", "the network"),
    "dino": (dino, "dino", "DINO", "teacher"),
    "slotcon": (slotcon, "slotcon", "SlotCon", "teacher (momentum) encoder_k"),
    "vissl": (vissl, "vissl", "unknown", "trunk"),
    "lightly": (lightly, "lightly", "unknown", "backbone"),
    "detectron2 names": (detectron2_names, "detectron2", "unknown", "Detectron2 naming"),
}
