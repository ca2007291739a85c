"""Linear classification on frozen features (the MoCo papers' ImageNet protocol).

    python pretrain/main_lincls.py --pretrained output/moco/checkpoint_0199.pth.tar DATA_DIR

``DATA_DIR`` holds ``train/<class>/`` and ``val/<class>/``. Reference defaults: lr 30, batch 256, 100
epochs, lr x0.1 at 60 and 80, momentum 0.9, no weight decay. What is trained and what is frozen, as in
the reference ``main_lincls.py``: only ``fc`` learns (weight re-initialised N(0, 0.01), bias 0); every
other parameter is frozen **and the whole network stays in eval mode**, so BN uses (and keeps) the
pretrained running statistics; at the end the backbone is checked to be bit-identical to the checkpoint.
Reads this suite's MoCo checkpoints, the reference's, and plain torchvision state dicts (supervised.py).
Runs in one process (one GPU, ``--gpu``, or the CPU). From Python: ``main(argv) -> dict`` of results.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
import torch.nn as nn

from core.cli import ArgumentParser
from pretrain import checkpoint as ckpt_io
from pretrain.classification import (add_device_args, add_training_args, evaluate, labeled_folders, loaders,
                                     train_epoch)
from pretrain.data import DataError
from pretrain.distributed import LaunchError, use_cuda
from pretrain.logs import setup_logging
from pretrain.resnets import ARCHS, build_resnet
from pretrain.schedule import epoch_lr
from pretrain.speed import resolve_speed


class UsageError(Exception):
    pass


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="main_lincls.py", description="linear classification on frozen features",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("data", metavar="DATA_DIR", help="folder with train/<class>/ and val/<class>/")
    p.add_argument("-a", "--arch", default=None, choices=ARCHS, help="default: the checkpoint's arch")
    p.add_argument("--pretrained", required=True, help="MoCo checkpoint or torchvision-style state dict")
    add_training_args(p, epochs=100, lr=30.0, schedule=[60, 80], weight_decay=0.0)
    p.add_argument("--resume", default="", help="lincls checkpoint to continue from")
    p.add_argument("-e", "--evaluate", action="store_true", help="only evaluate (a --resume checkpoint, or the fresh head)")
    p.add_argument("--output-dir", default="output/lincls")
    add_device_args(p)
    return p


def load_backbone(path: str, arch: str | None) -> tuple[str, dict[str, torch.Tensor]]:
    """(arch, backbone tensors without ``fc``) from a pretrained checkpoint; one-line errors."""
    ck = ckpt_io.load_checkpoint(path)
    ck_arch = ck.get("arch") if isinstance(ck.get("arch"), str) else None
    if arch and ck_arch and arch != ck_arch:
        raise ckpt_io.CheckpointError(f"{path} holds a {ck_arch}, not a {arch}: pass -a {ck_arch}")
    weights = ckpt_io.encoder_weights(ck, path)
    return arch or ck_arch or "resnet50", {k: v for k, v in weights.items() if not k.startswith("fc.")}


def build_linear_model(arch: str, backbone: dict[str, torch.Tensor], num_classes: int, path: str) -> nn.Module:
    """ResNet with the pretrained backbone frozen and a fresh ``fc`` (N(0, 0.01), bias 0) to train."""
    model = build_resnet(arch, num_classes=num_classes)
    try:
        missing, unexpected = model.load_state_dict(backbone, strict=False)
    except RuntimeError as e:
        raise ckpt_io.CheckpointError(f"{path} does not fit a {arch}: {ckpt_io.load_error_detail(e)}") from None
    if set(missing) != {"fc.weight", "fc.bias"} or unexpected:
        raise ckpt_io.CheckpointError(f"{path} does not fit a {arch}: missing {sorted(set(missing) - {'fc.weight', 'fc.bias'})[:3]}, "
                                      f"unexpected {sorted(unexpected)[:3]}")
    for name, p in model.named_parameters():
        p.requires_grad_(name in ("fc.weight", "fc.bias"))
    nn.init.normal_(model.fc.weight, mean=0.0, std=0.01)
    nn.init.zeros_(model.fc.bias)
    return model


def check_backbone_unchanged(model: nn.Module, backbone: dict[str, torch.Tensor]) -> None:
    """The protocol's sanity check: every non-fc tensor still equals the pretrained one."""
    state = model.state_dict()
    for k, v in backbone.items():
        if not torch.equal(state[k].cpu(), v):
            raise RuntimeError(f"{k} changed during linear classification: the backbone was not frozen")


def run(args: argparse.Namespace) -> dict[str, Any]:
    train, val = labeled_folders(args.data)  # check the inputs before anything is written
    arch, backbone = load_backbone(args.pretrained, args.arch)
    out = Path(args.output_dir).expanduser()
    log = setup_logging(out)
    device = torch.device("cuda", args.gpu or 0) if use_cuda(args) else torch.device("cpu")
    speed = resolve_speed(args, device)
    torch.manual_seed(args.seed)
    model = build_linear_model(arch, backbone, len(train.classes), args.pretrained)
    model.to(device, memory_format=speed.memory_format)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay)
    start, best = 0, 0.0
    if args.resume:
        ck = ckpt_io.load_checkpoint(args.resume)
        try:
            model.load_state_dict(ck["state_dict"])
            optimizer.load_state_dict(ck["optimizer"])
        except (KeyError, RuntimeError, ValueError) as e:
            raise ckpt_io.CheckpointError(f"{args.resume} is not a lincls checkpoint of this model ({ckpt_io.load_error_detail(e)})") from None
        start, best = int(ck["epoch"]), float(ck.get("best_acc1", 0.0))
    if speed.compile:
        model.compile()
    workers = min(32, os.cpu_count() or 1) if args.workers is None else args.workers
    train_loader, val_loader = loaders(train, val, args.crop_size, args.batch_size, workers, speed.pin_memory, args.seed)
    log.info("linear protocol: %s from %s, %d classes, %d train / %d val images, lr %g, batch %d, %d epochs, %s, wd %g; %s",
             arch, args.pretrained, len(train.classes), len(train.samples), len(val.samples), args.lr, args.batch_size,
             args.epochs, "cosine" if args.cos else f"x0.1 at {args.schedule}", args.weight_decay, speed.describe())
    result: dict[str, Any] = {}
    if args.evaluate:
        result = evaluate(model, val_loader, device, speed.amp_dtype, speed.memory_format)
        log.info("val: acc@1 %.2f  acc@5 %.2f", result["top1"], result["top5"])
        return result
    for epoch in range(start, args.epochs):
        for g in optimizer.param_groups:
            g["lr"] = epoch_lr(args.lr, epoch, args.epochs, args.schedule, args.cos)
        train_epoch(model, train_loader, optimizer, device, epoch, args.epochs, args.print_freq, speed.amp_dtype,
                    speed.memory_format, frozen_bn=True, max_iters=args.max_iters)
        result = evaluate(model, val_loader, device, speed.amp_dtype, speed.memory_format)
        best = max(best, result["top1"])
        log.info("epoch %d/%d val: acc@1 %.2f  acc@5 %.2f  (best %.2f)", epoch + 1, args.epochs, result["top1"], result["top5"], best)
        ckpt_io.save_atomic({"epoch": epoch + 1, "arch": arch, "state_dict": model.state_dict(), "best_acc1": best,
                             "optimizer": optimizer.state_dict(), "pretrained": str(args.pretrained)},
                            out / "lincls_checkpoint.pth.tar")
    check_backbone_unchanged(model, backbone)
    summary = {"arch": arch, "pretrained": str(args.pretrained), "epochs": args.epochs, "top1": result.get("top1"),
               "top5": result.get("top5"), "best_top1": best}
    (out / "lincls_result.json").write_text(json.dumps(summary, indent=2))
    log.info("done: val acc@1 %.2f (best %.2f); backbone unchanged; %s", summary["top1"] or 0.0, best, out / "lincls_result.json")
    return summary


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except (DataError, ckpt_io.CheckpointError, LaunchError, UsageError) as e:
        if args.debug:
            raise
        raise SystemExit(f"main_lincls.py: error: {e}") from None


if __name__ == "__main__":
    main()
