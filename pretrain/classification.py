"""Shared pieces of the supervised trainer and the linear protocol: loaders, one epoch, evaluation."""

from __future__ import annotations

import argparse
import contextlib
import logging
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader

from pretrain import augment
from pretrain.data import DataError, ImageDataset, ImageList, check_readable, scan_images, split_dir
from pretrain.logs import format_seconds
from pretrain.speed import add_speed_args

log = logging.getLogger("pretrain")


def add_training_args(p: argparse.ArgumentParser, *, epochs: int, lr: float | None, schedule: list[int],
                      weight_decay: float, lr_help: str | None = None) -> None:
    """The optimisation and data flags both trainers share, with each recipe's defaults."""
    p.add_argument("-j", "--workers", type=int, default=None, help="default min(32, CPUs)")
    p.add_argument("--epochs", type=int, default=epochs)
    p.add_argument("-b", "--batch-size", type=int, default=256)
    p.add_argument("--lr", "--learning-rate", type=float, default=lr, help=lr_help)
    p.add_argument("--schedule", type=int, nargs="*", default=schedule)
    p.add_argument("--cos", action="store_true", help="cosine schedule instead of steps")
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--wd", "--weight-decay", dest="weight_decay", type=float, default=weight_decay)
    p.add_argument("-p", "--print-freq", type=int, default=10)
    p.add_argument("--crop-size", type=int, default=224)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-iters", type=int, default=0, help="cap iterations per epoch (smoke tests)")


def add_device_args(p: argparse.ArgumentParser) -> None:
    """Device, speed and debugging flags both trainers share."""
    p.add_argument("--gpu", type=int, default=None)
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    add_speed_args(p)
    p.add_argument("--debug", action="store_true")


def labeled_folders(data: str, need_val: bool = True) -> tuple[ImageList, ImageList | None]:
    """``DATA/train`` and ``DATA/val`` ImageFolders with the same classes (val optional unless ``need_val``)."""
    root = Path(data).expanduser()
    train = scan_images(split_dir(root, "train"), "imagefolder")
    check_readable(train)
    if len(train.classes) < 2:
        raise DataError(f"{train.root} has {len(train.classes)} class folder(s); classification needs at least 2")
    if not (root / "val").is_dir():
        if need_val:
            raise DataError(f"{root} has no val/ folder (expected {root}/train/<class>/ and {root}/val/<class>/)")
        return train, None
    val = scan_images(root / "val", "imagefolder")
    if val.classes != train.classes:
        raise DataError(f"{val.root} and {train.root} have different class folders")
    return train, val


def loaders(train: ImageList, val: ImageList | None, crop: int, batch: int, workers: int, pin: bool,
            seed: int) -> tuple[DataLoader, DataLoader | None]:
    g = torch.Generator().manual_seed(seed)
    kw = dict(num_workers=workers, pin_memory=pin, persistent_workers=workers > 0)
    tl = DataLoader(ImageDataset(train, augment.train_transform(crop)), batch_size=batch, shuffle=True,
                    drop_last=len(train.samples) >= batch, generator=g, **kw)
    vl = DataLoader(ImageDataset(val, augment.eval_transform(crop)), batch_size=batch, **kw) if val else None
    return tl, vl


def topk_correct(logits: torch.Tensor, target: torch.Tensor, ks: tuple[int, ...] = (1, 5)) -> list[int]:
    """Number of rows whose target is within the top-k predictions, for each k."""
    top = logits.topk(min(max(ks), logits.shape[1]), dim=1).indices
    hit = top == target[:, None]
    return [int(hit[:, :k].any(dim=1).sum()) for k in ks]


def autocast(device: torch.device, dtype: torch.dtype | None):
    return torch.autocast(device.type, dtype=dtype) if dtype else contextlib.nullcontext()


def train_epoch(model: nn.Module, loader: DataLoader, optimizer: torch.optim.Optimizer, device: torch.device,
                epoch: int, epochs: int, print_freq: int = 10, amp_dtype: torch.dtype | None = None,
                memory_format: torch.memory_format = torch.contiguous_format, frozen_bn: bool = False,
                max_iters: int = 0) -> dict[str, float]:
    """One epoch of cross-entropy training; with ``frozen_bn`` the model stays in eval mode (linear protocol)."""
    model.train(not frozen_bn)
    n, sums = 0, torch.zeros(2, device=device)  # loss sum, correct; synced only when printing
    t0 = time.perf_counter()
    for i, (images, target, _) in enumerate(loader):
        images = images.to(device, non_blocking=True).contiguous(memory_format=memory_format)
        target = target.to(device, non_blocking=True)
        with autocast(device, amp_dtype):
            logits = model(images)
        loss = F.cross_entropy(logits.float(), target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        n += target.shape[0]
        sums += torch.stack([loss.detach() * target.shape[0], (logits.detach().argmax(1) == target).sum()])
        last = (i + 1 == len(loader)) or (max_iters and i + 1 >= max_iters)
        if (i + 1) % print_freq == 0 or last:
            loss_sum, correct = sums.tolist()
            rate = n / max(time.perf_counter() - t0, 1e-9)
            log.info("[ep %d/%d][%d/%d] loss %.4f  acc@1 %.2f  lr %.4g  %.1f img/s  eta(epoch) %s", epoch + 1, epochs, i + 1,
                     len(loader), loss_sum / n, 100 * correct / n, optimizer.param_groups[0]["lr"], rate,
                     format_seconds((len(loader) - i - 1) * target.shape[0] / rate))
        if last:
            break
    loss_sum, correct = sums.tolist()
    return {"loss": loss_sum / max(n, 1), "acc1": 100 * correct / max(n, 1)}


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader, device: torch.device, amp_dtype: torch.dtype | None = None,
             memory_format: torch.memory_format = torch.contiguous_format) -> dict[str, float]:
    """Top-1/top-5 accuracy (%) and mean loss over ``loader``."""
    was = model.training
    model.eval()
    n = c1 = c5 = 0
    loss_sum = 0.0
    for images, target, _ in loader:
        images = images.to(device, non_blocking=True).contiguous(memory_format=memory_format)
        target = target.to(device, non_blocking=True)
        with autocast(device, amp_dtype):
            logits = model(images).float()
        loss_sum += float(F.cross_entropy(logits, target, reduction="sum"))
        a, b = topk_correct(logits, target)
        n, c1, c5 = n + target.shape[0], c1 + a, c5 + b
    model.train(was)
    return {"top1": 100 * c1 / max(n, 1), "top5": 100 * c5 / max(n, 1), "loss": loss_sum / max(n, 1)}
