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


def solo_learn_args(d: Path) -> tuple[Path, Tensors]:
    """solo-learn with the ``args.json`` its checkpointer writes beside the checkpoint (the run's config: method,
    backbone, ...); the method is read from it."""
    import json

    path, enc = solo_learn(d)
    (d / "args.json").write_text(json.dumps({"name": "byol-imagenet100", "method": "byol",
                                             "backbone": {"name": "resnet18", "kwargs": {}},
                                             "method_kwargs": {"proj_hidden_dim": 4096}, "wandb_run_id": None}))
    return path, enc


MM_MOCO_CFG = """_base_ = ['../_base_/default_runtime.py']
model = dict(
    type='MoCo',
    queue_len=65536,
    backbone=dict(type='ResNet', depth=18, norm_cfg=dict(type='BN')),
    neck=dict(type='MoCoV2Neck', in_channels=512, hid_channels=512, out_channels=128, with_avg_pool=True),
    head=dict(type='ContrastiveHead', loss=dict(type='CrossEntropyLoss'), temperature=0.2))
"""


def mmpretrain(d: Path, cfg: bool = True) -> tuple[Path, Tensors]:
    """mmengine ``Runner.save_checkpoint`` of mmpretrain's MoCo: ``meta`` (``cfg`` text, ...), ``state_dict``
    (``backbone.``, ``neck.``, the EMA ``encoder_k.module.0/1``, queue), ``message_hub`` (its HistoryBuffer
    ``log_scalars`` left empty), ``optimizer``, ``param_schedulers``."""
    enc = backbone(0)
    sd = {**_pre("backbone.", enc), **_head("neck.mlp.", "0.weight", "2.weight"),
          **_pre("encoder_k.module.0.", backbone(1)), **_head("encoder_k.module.1.mlp.", "0.weight", "2.weight"),
          "encoder_k.steps": torch.tensor(5), "queue": torch.zeros(128, 8), "queue_ptr": torch.zeros(1, dtype=torch.long)}
    meta = {"epoch": 200, "iter": 1000, "seed": 0, "experiment_name": "mocov2_resnet18_20240101_000000",
            "time": "20240101_000000", "mmengine_version": "0.8.0", "dataset_meta": {}, **({"cfg": MM_MOCO_CFG} if cfg else {})}
    return _save(d / ("epoch_200.pth" if cfg else "published.pth"), {
        "meta": meta, "state_dict": sd,
        "message_hub": {"log_scalars": {}, "runtime_info": {"epoch": 200, "iter": 1000}, "resumed_keys": {}},
        "optimizer": OPTIMIZER, "param_schedulers": [{"T_max": 200, "eta_min": 0.0, "last_step": 200}]}), enc


def mmpretrain_no_cfg(d: Path) -> tuple[Path, Tensors]:
    """The same without its config text: the method is not told."""
    return mmpretrain(d, cfg=False)


def openselfsup(d: Path) -> tuple[Path, Tensors]:
    """OpenSelfSup/DenseCL (mmcv runner): ``meta`` (``openselfsup_version``, ``config`` text from tools/train.py),
    ``state_dict`` with ``backbone.`` (= ``encoder_q.0.``), ``encoder_k.``, the two queues; ``optimizer``."""
    enc = backbone(0)
    sd = {**_pre("backbone.", enc), **_pre("encoder_q.0.", enc), **_head("encoder_q.1.mlp.", "0.weight"),
          **_pre("encoder_k.0.", backbone(1)), **_head("encoder_k.1.mlp.", "0.weight"),
          "queue": torch.zeros(128, 8), "queue_ptr": torch.zeros(1, dtype=torch.long),
          "queue2": torch.zeros(128, 8), "queue2_ptr": torch.zeros(1, dtype=torch.long)}
    config = "model = dict(\n    type='DenseCL',\n    neck=dict(type='DenseCLNeck', in_channels=512))\n"
    meta = {"openselfsup_version": "0.2.0", "config": config, "epoch": 200, "iter": 1000, "mmcv_version": "0.3.0",
            "time": "Mon Jan  1 00:00:00 2024"}
    return _save(d / "epoch_200.pth", {"meta": meta, "state_dict": sd, "optimizer": OPTIMIZER}), enc


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


def byol_lightning(d: Path) -> tuple[Path, Tensors]:
    """byol-pytorch examples/lightning/train.py: a Lightning checkpoint of ``learner = BYOL(net)``, whose state dict
    holds ``learner.net.`` and ``learner.online_encoder.net.`` (one module), the target and the predictor."""
    enc = backbone(0)
    sd = {**_pre("learner.net.", enc), **_pre("learner.online_encoder.net.", enc),
          **_head("learner.online_encoder.projector.", "0.weight"), **_pre("learner.target_encoder.net.", backbone(1)),
          **_head("learner.online_predictor.", "0.weight")}
    return _save(d / "epoch=9-step=100.ckpt", {"epoch": 9, "global_step": 100, "pytorch-lightning_version": "1.9.0",
                                               "state_dict": sd, "optimizer_states": [OPTIMIZER],
                                               "lr_schedulers": []}), enc


def compiled(d: Path) -> tuple[Path, Tensors]:
    """A ``torch.compile``d torchvision ResNet saved from DDP: ``module._orig_mod.conv1.weight`` ..."""
    enc = backbone(0)
    return _save(d / "compiled.pth", {"model": _pre("module._orig_mod.", enc), "epoch": 3}), enc


def dino(d: Path) -> tuple[Path, Tensors]:
    """DINO main_dino.py ``save_dict`` of a ResNet (without its argparse ``args``): student and teacher both
    DDP-wrapped (a ResNet has BatchNorm), MultiCropWrapper ``backbone``/``head``; the TEACHER transfers."""
    teacher = backbone(1)

    def net(prefix: str, tensors: Tensors) -> Tensors:
        return {**_pre(prefix + "backbone.", tensors), **_head(prefix + "head.mlp.", "0.weight", "2.weight", "4.weight"),
                prefix + "head.last_layer.weight_g": torch.ones(8, 1), prefix + "head.last_layer.weight_v": torch.ones(8, 4)}

    scaler = {"scale": 65536.0, "growth_factor": 2.0, "backoff_factor": 0.5, "growth_interval": 2000, "_growth_tracker": 0}
    return _save(d / "checkpoint.pth", {
        "student": net("module.", backbone(0)), "teacher": net("module.", teacher), "optimizer": OPTIMIZER,
        "epoch": 100, "dino_loss": {"center": torch.zeros(1, 8)}, "fp16_scaler": scaler}), teacher


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
    heads = {**_head("0.projection_head.", "0.weight", "3.weight"), "0.prototypes0.weight": torch.ones(8, 4)}
    base = {"model": {"trunk": _pre("_feature_blocks.", enc), "heads": heads}, "meta": {"trunk": {}, "heads": []}}
    classy = {"train": True, "base_model": base, "meters": [], "optimizer": OPTIMIZER, "phase_idx": 199,
              "train_phase_idx": 199, "num_updates": 5000, "losses": [], "hooks": {}, "loss": {}}
    return _save(d / "model_final_checkpoint_phase199.torch", {
        "phase_idx": 199, "iteration": 5000, "loss": {}, "iteration_num": 5000, "train_phase_idx": 199,
        "classy_state_dict": classy}), enc


_SEQUENTIAL = {"conv1": "0", "bn1": "1", "layer1": "4", "layer2": "5", "layer3": "6", "layer4": "7"}


def lightly(d: Path) -> tuple[Path, Tensors]:
    """lightly + Lightning: ``backbone = nn.Sequential(*list(resnet.children())[:-1])`` (numbered keys), momentum."""
    enc = backbone(0)

    def seq(tensors: Tensors) -> Tensors:
        return {_SEQUENTIAL[k.split(".")[0]] + k[len(k.split(".")[0]):]: v for k, v in tensors.items()}

    sd = {**_pre("backbone.", seq(enc)), **_pre("backbone_momentum.", seq(backbone(1))),
          **_head("projection_head.layers.", "0.weight")}
    return _save(d / "lightly_moco.ckpt", {"epoch": 9, "pytorch-lightning_version": "2.0.0", "state_dict": sd}), enc


def lightly_tutorial(d: Path) -> tuple[Path, Tensors]:
    """lightly's tutorial_simclr_clothing.py: ``{"resnet18_parameters": model.backbone.state_dict()}``."""
    enc = backbone(0)
    seq = {_SEQUENTIAL[k.split(".")[0]] + k[len(k.split(".")[0]):]: v for k, v in enc.items()}
    return _save(d / "model.pth", {"resnet18_parameters": seq}), enc


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
    "solo-learn args.json": (solo_learn_args, "solo-learn", "BYOL", "online backbone"),
    "mmpretrain": (mmpretrain, "mmpretrain", "MoCo v2", "backbone"),
    "mmpretrain without cfg": (mmpretrain_no_cfg, "mmpretrain", "unknown", "backbone"),
    "openselfsup": (openselfsup, "openselfsup", "DenseCL", "backbone"),
    "barlowtwins": (barlowtwins, "barlowtwins", "Barlow Twins", "backbone"),
    "simsiam": (simsiam, "simsiam", "SimSiam", "encoder"),
    "pixpro": (pixpro, "pixpro", "PixPro", "online encoder"),
    "soco": (soco, "soco", "SoCo", "online encoder"),
    "byol-pytorch": (byol_pytorch, "byol-pytorch", "BYOL", "online encoder"),
    "byol-pytorch lightning": (byol_lightning, "byol-pytorch", "BYOL", "online encoder"),
    "torch.compile": (compiled, "torchvision-ddp", "unknown", "the network"),
    "dino": (dino, "dino", "DINO", "teacher"),
    "slotcon": (slotcon, "slotcon", "SlotCon", "teacher (momentum) encoder_k"),
    "vissl": (vissl, "vissl", "SwAV", "trunk"),
    "lightly": (lightly, "lightly", "unknown", "backbone"),
    "lightly tutorial": (lightly_tutorial, "lightly-tutorial", "unknown", "backbone"),
    "detectron2 names": (detectron2_names, "detectron2", "unknown", "Detectron2 naming"),
}
