"""Supervised counterpart: train the same ResNet with image-level labels (cross-entropy).

    python pretrain/supervised.py -a resnet18 --epochs 2 --crop-size 64 DATA_DIR

``DATA_DIR/train/<class>/`` (or ``DATA_DIR/<class>/``) is the training ImageFolder; ``DATA_DIR/val`` is
evaluated after each epoch when present. Recipe of torchvision's ImageNet reference: SGD momentum 0.9,
lr 0.1 x batch/256, weight decay 1e-4, x0.1 at epochs 30 and 60 of 90 (``--cos`` for cosine).
Each epoch writes ``checkpoint_<epoch>.pth.tar`` = ``{"state_dict": torchvision keys (conv1.weight ...
fc.bias), "arch": str, "epoch": int}`` (loads with ``weights_only=True``; ``transfer/convert.py`` reads
it as a torchvision ResNet). One process (one GPU or the CPU). From Python: ``main(argv) -> Path``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from core.cli import ArgumentParser
from pretrain import checkpoint as ckpt_io
from pretrain.classification import (add_device_args, add_training_args, evaluate, labeled_folders, loaders,
                                     train_epoch)
from pretrain.data import DataError
from pretrain.distributed import LaunchError, use_cuda
from pretrain.logs import setup_logging
from pretrain.resnets import ARCHS, build_resnet
from pretrain.schedule import epoch_lr
from pretrain.speed import resolve_speed, sgd


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="supervised.py", description="supervised ResNet training (the MoCo tables' baseline)",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("data", metavar="DATA_DIR")
    p.add_argument("-a", "--arch", default="resnet50", choices=ARCHS)
    add_training_args(p, epochs=90, lr=None, lr_help="default 0.1 x batch/256", schedule=[30, 60],
                      weight_decay=1e-4)
    p.add_argument("--keep-checkpoints", type=int, default=1)
    p.add_argument("--output-dir", default="output/supervised")
    add_device_args(p)
    return p


def run(args: argparse.Namespace) -> Path:
    train, val = labeled_folders(args.data, need_val=False)  # check the inputs before anything is written
    out = Path(args.output_dir).expanduser()
    log = setup_logging(out)
    device = torch.device("cuda", args.gpu or 0) if use_cuda(args) else torch.device("cpu")
    speed = resolve_speed(args, device)
    torch.manual_seed(args.seed)
    lr = args.lr if args.lr is not None else 0.1 * args.batch_size / 256
    model = build_resnet(args.arch, num_classes=len(train.classes)).to(device, memory_format=speed.memory_format)
    optimizer = sgd(model.parameters(), lr, args.momentum, args.weight_decay, device)
    workers = min(32, os.cpu_count() or 1) if args.workers is None else args.workers
    train_loader, val_loader = loaders(train, val, args.crop_size, args.batch_size, workers, speed.pin_memory, args.seed)
    if speed.compile:  # in place: state-dict keys stay torchvision's
        model.compile()
    log.info("supervised %s: %d classes, %d images, batch %d, lr %g, %d epochs, %s; %s", args.arch, len(train.classes),
             len(train.samples), args.batch_size, lr, args.epochs, "cosine" if args.cos else f"x0.1 at {args.schedule}",
             speed.describe())
    path = out
    for epoch in range(args.epochs):
        for g in optimizer.param_groups:
            g["lr"] = epoch_lr(lr, epoch, args.epochs, args.schedule, args.cos)
        train_epoch(model, train_loader, optimizer, device, epoch, args.epochs, args.print_freq, speed.amp_dtype,
                    speed.memory_format, max_iters=args.max_iters)
        if val_loader is not None:
            r = evaluate(model, val_loader, device, speed.amp_dtype, speed.memory_format)
            log.info("epoch %d/%d val: acc@1 %.2f  acc@5 %.2f", epoch + 1, args.epochs, r["top1"], r["top5"])
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        path = ckpt_io.save_atomic({"state_dict": state, "arch": args.arch, "epoch": epoch + 1},
                                   out / ckpt_io.checkpoint_name(epoch))
        ckpt_io.prune(out, args.keep_checkpoints)
    log.info("done: %s", path)
    return path


def main(argv: list[str] | None = None) -> Path:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except (DataError, LaunchError) as e:
        if args.debug:
            raise
        raise SystemExit(f"supervised.py: error: {e}") from None


if __name__ == "__main__":
    main()
