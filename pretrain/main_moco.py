"""MoCo v1/v2 unsupervised pretraining (He et al. 2020; Chen et al. 2020), the two other contrastive-loss
mechanisms of MoCo's ablation (``--mechanism end-to-end|memory-bank``) and MoCo v3 (Chen, Xie, He 2021;
``--preset v3`` for ResNets, ``--preset v3-vit`` or ``-a vit_tiny|vit_small|vit_base`` for ViTs) in the same loop.

    python pretrain/main_moco.py [--preset v1|v2|v2-800ep|v3|v3-vit] [--mechanism M] [reference flags] DATA_DIR
    python -m pretrain.main_moco ...            torchrun --nproc-per-node 8 pretrain/main_moco.py ...

``DATA_DIR`` is an ImageNet-style root (``DATA_DIR/train/<class>/*.jpg`` is used when it exists, as in
the reference code), an ImageFolder, or a plain folder of unlabeled images. Defaults are the paper's
(MoCo v1, ResNet-50); ``--lr`` defaults to 0.03 x batch/256. From Python: ``main(argv) -> Path``
(the last checkpoint written); bad input raises ``SystemExit`` with a one-line message.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python pretrain/main_moco.py`: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from core.cli import ArgumentParser
from pretrain import augment, checkpoint as ckpt_io
from pretrain.backends import BACKENDS, BackendError, build_loader, resolve_backend
from pretrain.data import DataError, EpochBatchSampler, ImageDataset, ImageList, check_readable, scan_images, split_dir
from pretrain.distributed import DistContext, LaunchError, all_reduce_mean_, barrier, launch
from pretrain.knn import knn_accuracy
from pretrain.logs import MetricsLog, format_seconds, setup_logging
from pretrain.mechanisms import ALL_MECHANISMS, DISPLAY, build_mechanism
from pretrain.memory_bank import LOSSES as BANK_LOSSES, WU_BANK_MOMENTUM
from pretrain.moco import auto_bn_splits, pretext_topk
from pretrain.optim import OPTIMIZERS, build_optimizer
from pretrain.resnets import ARCHS as RESNET_ARCHS
from pretrain.schedule import cosine_momentum, epoch_lr, warmup_cosine_lr
from pretrain.speed import Speed, add_speed_args, check_precision, resolve_speed
from pretrain.vits import VIT_ARCHS, VIT_SIZES, is_vit

ARCHS = RESNET_ARCHS + VIT_ARCHS
PAPER_BATCH, PAPER_LR = 256, 0.03
_COMMON = dict(arch="resnet50", moco_dim=128, moco_k=65536, moco_m=0.999, momentum=0.9, weight_decay=1e-4,
               batch_size=PAPER_BATCH, epochs=200, schedule=[120, 160])
# MoCo v3 (Chen, Xie, He, ICCV 2021; "M3" = facebookresearch/moco-v3 at HEAD). Shared: no queue, feature dim 256
# and MLP hidden 4096 (M3 main_moco.py L95-98), m 0.99 (L99) rising to 1 by cosine (--moco-m-cos, L101-103,
# L431-434; used by every command of README.md/CONFIG.md), lr = base lr x batch/256 (L190), per-iteration
# warm-up + half-cycle cosine (L420-428), batch 4096 (L60; paper Sec. 5; CONFIG.md L183 "batch 4096").
_V3 = dict(mechanism="moco-v3", moco_dim=256, moco_mlp_dim=4096, moco_m=0.99, moco_m_cos=True, batch_size=4096,
           momentum=0.9, mlp=False, aug_plus=False, cos=True, schedule=[])
PRESETS: dict[str, dict[str, Any]] = {
    "v1": dict(_COMMON, moco_t=0.07, mlp=False, aug_plus=False, cos=False),
    "v2": dict(_COMMON, moco_t=0.2, mlp=True, aug_plus=True, cos=True),
    "v2-800ep": dict(_COMMON, moco_t=0.2, mlp=True, aug_plus=True, cos=True, epochs=800),
    # ResNet-50, 100 epochs: M3 main_moco.py defaults -- LARS (L112), base lr 0.6 (L65), wd 1e-6 (L69), LARS
    # momentum 0.9 (L67), T 1.0 (L104), 10 warm-up epochs (L115), 100 epochs (L56) -- plus CONFIG.md L14-16
    # (--moco-m-cos --crop-min=.2); 2-layer projector, 2-layer predictor (moco/builder.py MoCo_ResNet).
    "v3": dict(_V3, arch="resnet50", optimizer="lars", base_lr=0.6, weight_decay=1e-6, moco_t=1.0, epochs=100,
               warmup_epochs=10, crop_min=0.2, stop_grad_conv1=False),
    # ViT (ViT-S by default; -a vit_base): M3 README.md L112-137 / CONFIG.md L108-116 -- AdamW, base lr 1.5e-4,
    # wd 0.1, 300 epochs, 40 warm-up epochs, --stop-grad-conv1 (paper Sec. 4.2), --moco-m-cos, T 0.2 (paper
    # Sec. 5); crop-min 0.08 (main_moco.py L117 default, not overridden for ViT); 3-layer projector (builder.py MoCo_ViT).
    "v3-vit": dict(_V3, arch="vit_small", optimizer="adamw", base_lr=1.5e-4, weight_decay=0.1, moco_t=0.2, epochs=300,
                   warmup_epochs=40, crop_min=0.08, stop_grad_conv1=True),
}
V3_PRESETS = ("v3", "v3-vit")


class UsageError(Exception):
    """Flags that cannot work together; one-line message."""


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="main_moco.py", description="MoCo v1/v2/v3 pretraining",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("data", metavar="DATA_DIR", help="ImageNet root (uses DATA_DIR/train if present), ImageFolder, or folder of images")
    p.add_argument("--preset", choices=sorted(PRESETS),
                   help="published hyper-parameters (explicit flags still win); -a vit_* without a preset: v3-vit")
    p.add_argument("-a", "--arch", default="resnet50", choices=ARCHS)
    p.add_argument("-j", "--workers", type=int, default=None, help="loader workers per node (default min(32, CPUs))")
    p.add_argument("--epochs", type=int, default=200)
    p.add_argument("--start-epoch", type=int, default=0, help="first epoch when not resuming")
    p.add_argument("-b", "--batch-size", type=int, default=PAPER_BATCH, help="total batch over all processes")
    p.add_argument("--lr", "--learning-rate", type=float, default=None, help="initial lr (default --base-lr x batch/256)")
    p.add_argument("--base-lr", type=float, default=PAPER_LR, help="lr per 256 images (v1/v2 0.03, v3 0.6, v3-vit 1.5e-4)")
    p.add_argument("--optimizer", choices=OPTIMIZERS, default="sgd", help="sgd (v1/v2), lars (v3 ResNet), adamw (v3 ViT)")
    p.add_argument("--warmup-epochs", type=int, default=0, help="MoCo v3: linear lr warm-up epochs before the cosine")
    p.add_argument("--schedule", type=int, nargs="*", default=[120, 160], help="lr x0.1 at these epochs (without --cos)")
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--wd", "--weight-decay", dest="weight_decay", type=float, default=1e-4)
    p.add_argument("-p", "--print-freq", type=int, default=10)
    p.add_argument("--resume", default="", metavar="PATH|auto", help="checkpoint to continue from; 'auto': latest in --output-dir")
    p.add_argument("--seed", type=int, default=None, help="seed (default: random, recorded in the checkpoint)")
    g = p.add_argument_group("moco")
    g.add_argument("--mechanism", choices=ALL_MECHANISMS, default="moco",
                   help="contrastive-loss mechanism (MoCo paper Sec. 3.2/4.1): moco (queue + momentum encoder), "
                        "end-to-end (dictionary = the mini-batch, K = --batch-size), memory-bank (Wu et al. 2018); "
                        "moco-v3 (set by --preset v3/v3-vit)")
    g.add_argument("--moco-dim", type=int, default=128, help="feature dimension")
    g.add_argument("--moco-k", type=int, default=65536,
                   help="dictionary size K: the queue length (moco) or negatives drawn per step (memory-bank); "
                        "end-to-end uses the batch")
    g.add_argument("--moco-m", type=float, default=0.999, help="key (momentum) encoder momentum (moco, moco-v3)")
    g.add_argument("--moco-m-cos", action=argparse.BooleanOptionalAction, default=False,
                   help="raise the momentum from --moco-m to 1 with a half-cycle cosine over training (MoCo v3)")
    g.add_argument("--moco-mlp-dim", type=int, default=4096, help="MoCo v3: hidden width of projector and predictor")
    g.add_argument("--stop-grad-conv1", action=argparse.BooleanOptionalAction, default=False,
                   help="MoCo v3 ViT: keep the random patch projection frozen")
    g.add_argument("--moco-t", type=float, default=0.07, help="softmax temperature")
    g.add_argument("--mlp", action=argparse.BooleanOptionalAction, default=False, help="v2 MLP head")
    g.add_argument("--aug-plus", action=argparse.BooleanOptionalAction, default=False, help="v2 augmentation (blur, stronger jitter)")
    g.add_argument("--cos", action=argparse.BooleanOptionalAction, default=False, help="cosine lr schedule")
    g.add_argument("--bn-splits", type=int, default=None,
                   help="one process only: BN groups emulating shuffling BN over this many devices (default ~32 images per group; 1 = off)")
    g.add_argument("--bank-m", type=float, default=WU_BANK_MOMENTUM,
                   help="memory-bank: momentum of the stored features, v <- m v + (1-m) q (Wu et al.: 0.5)")
    g.add_argument("--bank-loss", choices=BANK_LOSSES, default="infonce",
                   help="memory-bank: InfoNCE (MoCo's comparison) or Wu et al.'s NCE")
    g = p.add_argument_group("data, output")
    g.add_argument("--crop-size", type=int, default=224, help="training crop (e.g. 64 for tiny images)")
    g.add_argument("--crop-min", type=float, default=0.08, help="MoCo v3: smallest RandomResizedCrop area fraction")
    g.add_argument("--data-layout", choices=("auto", "imagefolder", "flat"), default="auto")
    g.add_argument("--data-backend", choices=BACKENDS, default="auto",
                   help="decode+augment: pil (loader workers), tensor (torchvision decode + batched tensor ops on the "
                        "device), dali; auto: dali or tensor on GPUs, pil on the CPU (see pretrain/backends.py)")
    g.add_argument("--output-dir", default="output/moco", help="checkpoints and logs")
    g.add_argument("--keep-checkpoints", type=int, default=3, help="keep this many most recent checkpoints (0: all)")
    g.add_argument("--save-every-iters", type=int, default=0, help="also checkpoint every N iterations inside an epoch")
    g.add_argument("--max-iters", type=int, default=0, help="stop (with a checkpoint) after this many iterations in total")
    g.add_argument("--tensorboard", action=argparse.BooleanOptionalAction, default=True)
    g = p.add_argument_group("kNN monitor")
    g.add_argument("--knn-val", default=None, metavar="DIR", help="labeled validation ImageFolder; enables the monitor")
    g.add_argument("--knn-train", default=None, metavar="DIR", help="labeled memory bank folder (default: the training folder)")
    g.add_argument("--knn-every", type=int, default=1, help="run every N epochs (and after the last)")
    g.add_argument("--knn-k", type=int, default=200)
    g.add_argument("--knn-t", type=float, default=0.1)
    g.add_argument("--knn-feature", choices=("pool", "head"), default="pool")
    g.add_argument("--knn-init", action=argparse.BooleanOptionalAction, default=True,
                   help="also run the monitor before the first step (the same encoder at random initialisation)")
    g = p.add_argument_group("distributed (reference flags; torchrun env vars are read too)")
    g.add_argument("--world-size", type=int, default=1, help="nodes with --multiprocessing-distributed (CPU: local processes)")
    g.add_argument("--rank", type=int, default=0, help="node rank with --multiprocessing-distributed, else process rank")
    g.add_argument("--dist-url", default=None, help="init URL (default: env:// under torchrun, a free local port otherwise)")
    g.add_argument("--dist-backend", default=None, help="default nccl on GPUs, gloo on the CPU")
    g.add_argument("--multiprocessing-distributed", action="store_true", help="spawn one process per GPU (CPU: --world-size)")
    g.add_argument("--nproc-per-node", type=int, default=None, help="CPU only: processes per node with several CPU nodes")
    g.add_argument("--gpu", type=int, default=None, help="single-process GPU id")
    g.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    g.add_argument("--threads", type=int, default=0,
                   help="CPU threads per process (0: torch's default, divided among local processes)")
    add_speed_args(p)
    p.add_argument("--deterministic", action="store_true", help="cuDNN deterministic algorithms (slower)")
    p.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    return p


def resolve_preset(preset: str | None, arch: str | None, mechanism: str | None) -> str | None:
    """The preset a command line means: ``-a vit_*`` with no preset or ``v3`` is ``v3-vit`` (a ViT trains with
    MoCo v3 only); ``--mechanism moco-v3`` with no preset is ``v3``."""
    if arch and is_vit(arch) and preset in (None, "v3"):
        return "v3-vit"
    if preset is None and mechanism == "moco-v3":
        return "v3"
    return preset


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse flags; ``--preset`` replaces the defaults, so flags given explicitly still win."""
    parser = build_parser()
    pre = ArgumentParser(add_help=False)
    pre.add_argument("--preset", choices=sorted(PRESETS))
    pre.add_argument("-a", "--arch")
    pre.add_argument("--mechanism")
    known, _ = pre.parse_known_args(argv)
    preset = resolve_preset(known.preset, known.arch, known.mechanism)
    if preset:
        parser.set_defaults(**PRESETS[preset])
    args = parser.parse_args(argv)
    args.preset = preset
    return args


# --- preparation (before any process is spawned, so bad input fails with one line) ---------------------
def prepare(args: argparse.Namespace) -> None:
    """Check inputs and fill derived defaults in ``args``; raises one-line errors."""
    for name in ("batch_size", "epochs", "moco_k", "moco_dim", "crop_size", "print_freq"):
        if getattr(args, name) <= 0:
            raise UsageError(f"--{name.replace('_', '-')} must be positive")
    problem = check_precision(args)
    if problem:
        raise UsageError(problem)
    check_v3(args)
    if args.data_backend == "dali":
        resolve_backend("dali", torch.device("cpu"))  # one line now if DALI is not installed
    args.output_dir = str(Path(args.output_dir).expanduser())
    if args.resume == "auto":
        latest = ckpt_io.latest_checkpoint(args.output_dir)
        args.resume = str(latest) if latest else ""
    if args.resume:
        ck = ckpt_io.load_checkpoint(args.resume)
        ckpt_io.check_moco_checkpoint(ck, args.resume, args.arch)
        check_compatible(ck, args)
        saved = ck.get("suite", {}).get("args", {}) if isinstance(ck.get("suite"), dict) else {}
        if args.seed is None and isinstance(saved.get("seed"), int):
            args.seed = saved["seed"]
    args.train_dir = str(split_dir(args.data, "train"))
    images = scan_images(args.train_dir, args.data_layout)
    check_readable(images)
    if len(images.samples) < args.batch_size:
        raise DataError(f"only {len(images.samples)} images in {images.root} for a batch of {args.batch_size}: lower --batch-size")
    args._images = images
    check_mechanism(args, len(images.samples))
    if args.resume and args.mechanism == "memory-bank":
        memory = ck["state_dict"].get("module.memory", ck["state_dict"].get("memory"))
        if isinstance(memory, torch.Tensor) and memory.shape[0] != len(images.samples):
            raise ckpt_io.CheckpointError(f"{args.resume} has a memory bank of {memory.shape[0]} entries, but "
                                          f"{images.root} has {len(images.samples)} images: resume on the same data")
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(2**31)
    if args.lr is None:
        args.lr = args.base_lr * args.batch_size / PAPER_BATCH
    if args.workers is None:
        args.workers = min(32, os.cpu_count() or 1)
    if args.knn_val:
        val = scan_images(split_dir(args.knn_val, "val"), "imagefolder")
        bank = scan_images(args.knn_train or args.train_dir, "imagefolder")
        if len(bank.classes) < 2 or bank.classes != val.classes:
            raise DataError(f"kNN monitor needs labeled folders with the same classes: {bank.root} has {len(bank.classes)}, "
                            f"{val.root} has {len(val.classes)}; pass --knn-train DIR")
        args.knn_val, args.knn_train = str(val.root), str(bank.root)


def check_mechanism(args: argparse.Namespace, n_images: int) -> None:
    """Flags that each mechanism needs to make sense; one-line :class:`UsageError`."""
    if args.mechanism == "moco" and args.moco_k < args.batch_size:
        raise UsageError(f"--moco-k {args.moco_k} is smaller than the batch {args.batch_size}: the queue must hold "
                         "at least one batch of keys")
    if args.mechanism == "memory-bank":
        if not 0.0 <= args.bank_m < 1.0:
            raise UsageError(f"--bank-m {args.bank_m} must be in [0, 1)")
        if n_images <= args.batch_size:
            raise UsageError(f"the memory bank draws negatives outside the batch: {n_images} images are too few "
                             f"for a batch of {args.batch_size}")


def check_v3(args: argparse.Namespace) -> None:
    """MoCo v3's flags: preset and mechanism agree, ViTs only with v3, the PIL backend, no shuffling BN."""
    v3 = args.mechanism == "moco-v3"
    if (args.preset in V3_PRESETS) != v3:
        raise UsageError(f"--preset {args.preset} and --mechanism {args.mechanism} do not go together: MoCo v3 is "
                         "--preset v3 (ResNet) or v3-vit (ViT)")
    if is_vit(args.arch) and not v3:
        raise UsageError(f"-a {args.arch} trains with MoCo v3 only: drop --preset/--mechanism or pass --preset v3-vit")
    if not v3:
        return
    if args.data_backend not in ("auto", "pil"):
        raise UsageError(f"MoCo v3's asymmetric augmentation runs on --data-backend pil only, not {args.data_backend}")
    if args.bn_splits not in (None, 1):
        raise UsageError("MoCo v3 has no shuffling BN (SyncBN across GPUs): drop --bn-splits")
    if is_vit(args.arch) and args.crop_size % VIT_SIZES[args.arch].patch_size:
        raise UsageError(f"--crop-size {args.crop_size} is not a multiple of {args.arch}'s patch size "
                         f"{VIT_SIZES[args.arch].patch_size}")
    if not 0 <= args.warmup_epochs < args.epochs:
        raise UsageError(f"--warmup-epochs {args.warmup_epochs} must be in [0, --epochs {args.epochs})")
    if not 0 < args.crop_min <= 1:
        raise UsageError(f"--crop-min {args.crop_min} must be in (0, 1]")


def saved_mechanism(ck: dict[str, Any]) -> str:
    """The mechanism a checkpoint was trained with (reference checkpoints: MoCo; moco-v3's: moco-v3)."""
    suite = ck.get("suite") if isinstance(ck.get("suite"), dict) else {}
    args = suite.get("args") if isinstance(suite.get("args"), dict) else {}
    return str(args.get("mechanism") or ("moco-v3" if ckpt_io.is_v3(ck) else "moco"))


def check_compatible(ck: dict[str, Any], args: argparse.Namespace) -> None:
    """A resume checkpoint must have the same mechanism and shapes as --mechanism/--moco-dim/--moco-k/--mlp."""
    mechanism = saved_mechanism(ck)
    if mechanism != args.mechanism:
        raise ckpt_io.CheckpointError(f"{args.resume} was trained with --mechanism {mechanism}, not {args.mechanism}: "
                                      f"pass --mechanism {mechanism} or another checkpoint")
    sd = ck["state_dict"]
    queue = sd.get("module.queue", sd.get("queue"))
    if isinstance(queue, torch.Tensor) and tuple(queue.shape) != (args.moco_dim, args.moco_k):
        raise ckpt_io.CheckpointError(f"{args.resume} has a queue of {tuple(queue.shape)} (dim, K), but --moco-dim "
                                      f"{args.moco_dim} --moco-k {args.moco_k} were given")
    has_mlp = any(k.endswith("encoder_q.fc.0.weight") for k in sd)
    if mechanism != "moco-v3" and has_mlp != args.mlp:
        raise ckpt_io.CheckpointError(f"{args.resume} was trained {'with' if has_mlp else 'without'} the MLP head: "
                                      f"{'add' if has_mlp else 'drop'} --mlp")


def lr_at(progress: float, args: argparse.Namespace) -> float:
    """Learning rate at ``progress`` epochs: per epoch cosine (v2) or x0.1 at each ``--schedule`` milestone (v1)
    from ``floor(progress)``; MoCo v3: per iteration, ``--warmup-epochs`` linear warm-up then cosine."""
    if args.mechanism == "moco-v3":
        return warmup_cosine_lr(args.lr, progress, args.epochs, args.warmup_epochs)
    return epoch_lr(args.lr, int(progress), args.epochs, args.schedule, args.cos)


def seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# --- the training process -----------------------------------------------------------------------------
class Trainer:
    """One process of a run (any mechanism): model, optimizer, data and the loop."""

    def __init__(self, ctx: DistContext, args: argparse.Namespace) -> None:
        self.ctx, self.args = ctx, args
        self.out = Path(args.output_dir)
        self.log = setup_logging(self.out, ctx.rank)
        if args.threads:
            torch.set_num_threads(args.threads)
        self.speed: Speed = resolve_speed(args, ctx.device)
        local_batch = args.batch_size // ctx.world_size
        if args.batch_size % ctx.world_size:
            raise UsageError(f"--batch-size {args.batch_size} is not divisible by the {ctx.world_size} processes")
        splits = args.bn_splits if args.bn_splits is not None else (
            auto_bn_splits(local_batch) if ctx.world_size == 1 and args.mechanism != "moco-v3" else 1)
        if local_batch % splits:
            raise UsageError(f"per-process batch {local_batch} is not divisible by --bn-splits {splits}")
        self.bn_splits = splits
        images: ImageList = getattr(args, "_images", None) or scan_images(args.train_dir, args.data_layout)
        self.images = images
        seed_all(args.seed)
        self.model = build_mechanism(args.mechanism, args.arch, dim=args.moco_dim, K=args.moco_k, m=args.moco_m,
                                     T=args.moco_t, mlp=args.mlp, bn_splits=splits,
                                     channels_last=self.speed.channels_last, seed=args.seed,
                                     num_samples=len(images.samples), bank_m=args.bank_m, bank_loss=args.bank_loss,
                                     mlp_dim=args.moco_mlp_dim, img_size=args.crop_size,
                                     stop_grad_conv1=args.stop_grad_conv1)
        if args.mechanism == "moco-v3" and ctx.distributed and ctx.device.type == "cuda":
            self.model = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)  # as moco-v3 (BN over the global batch)
        self.model.to(ctx.device, memory_format=self.speed.memory_format)
        params = (self.model.trainable_parameters() if hasattr(self.model, "trainable_parameters")
                  else self.model.encoder_q.parameters())
        self.optimizer = build_optimizer(args.optimizer, params, args.lr, args.momentum, args.weight_decay, ctx.device)
        self.scaler = torch.amp.GradScaler(ctx.device.type, enabled=self.speed.use_scaler)
        self.epoch, self.iteration = args.start_epoch, 0
        self.step = 0
        if args.resume:
            self._load(args.resume)
        if self.speed.compile:
            self.model.encoder_q.compile()
            for name in ("encoder_k", "momentum_encoder", "predictor"):
                if hasattr(self.model, name):
                    getattr(self.model, name).compile()
        self.net = (DistributedDataParallel(self.model, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None,
                                            broadcast_buffers=False) if ctx.distributed else self.model)
        self.sampler = EpochBatchSampler(len(images.samples), args.batch_size, args.seed, ctx.rank, ctx.world_size)
        self.iters_per_epoch = self.sampler.batches_per_epoch
        resume_step = None
        if args.resume:
            if self.step < 0:  # a reference checkpoint: no step count
                self.step = self.epoch * self.iters_per_epoch + self.iteration
            resume_step = self.step
        workers = -(-args.workers // ctx.local_world_size)  # the reference splits --workers over a node's GPUs
        v3 = args.mechanism == "moco-v3"
        self.data_backend = "pil" if v3 else resolve_backend(args.data_backend, ctx.device)
        self.loader = build_loader(self.data_backend, images, self.sampler, augment.moco_recipe(args.crop_size, args.aug_plus),
                                   workers, ctx.device, self.speed.pin_memory, self.speed.memory_format,
                                   views=augment.v3_transform(args.crop_size, args.crop_min) if v3 else None)
        self.total_iters = args.epochs * self.iters_per_epoch
        if args.max_iters:
            self.total_iters = min(self.total_iters, args.max_iters)
        self.metrics = MetricsLog(self.out, resume_step, self.epoch, args.tensorboard) if ctx.is_main else None
        self.knn = self._knn_loaders(workers) if (args.knn_val and ctx.is_main) else None
        self.last_saved: Path | None = None
        self.knn_init: float | None = None
        self.n_logits = 0
        self.epoch_log: list[tuple[int, float, float, float | None]] = []  # (epoch, loss, acc1, kNN) of this process
        self.step_log: list[tuple[int, float, float]] = []  # (step, loss, acc1) of this process, for the summary
        self.pending: list[tuple[int, int, int, float, torch.Tensor]] = []  # per-iteration stats not yet logged
        self._describe(workers)

    # --- setup helpers ---
    def _load(self, path: str) -> None:
        ck = ckpt_io.load_checkpoint(path)
        try:
            self.model.load_state_dict(ckpt_io.strip_module_prefix(ck["state_dict"]))
            self.optimizer.load_state_dict(ck["optimizer"])
        except (RuntimeError, KeyError, ValueError) as e:
            raise ckpt_io.CheckpointError(f"{path} does not fit this model: {ckpt_io.load_error_detail(e)}") from None
        if ck.get("scaler") and self.scaler.is_enabled():
            self.scaler.load_state_dict(ck["scaler"])
        rng = ck.get("rng") or {}
        ckpt_io.set_rng_state(rng)
        for name, generator in self.model.generators().items():
            if isinstance(rng.get(name), torch.Tensor):
                generator.set_state(rng[name])
        self.epoch, self.iteration = int(ck["epoch"]), int(ck.get("iteration", 0))
        self.step = int(ck["global_step"]) if isinstance(ck.get("global_step"), int) else -1
        if ck.get("world_size", self.ctx.world_size) != self.ctx.world_size:
            self.log.warning("resuming a %s-process run on %s processes: the data order stays the same, BN groups change",
                             ck.get("world_size"), self.ctx.world_size)
        self.log.info("resumed from %s (epoch %d, iteration %d)", path, self.epoch, self.iteration)

    def _knn_loaders(self, workers: int) -> tuple[DataLoader, DataLoader, int]:
        tf = augment.eval_transform(self.args.crop_size)
        bank, val = scan_images(self.args.knn_train, "imagefolder"), scan_images(self.args.knn_val, "imagefolder")
        kw = dict(batch_size=max(1, self.args.batch_size // self.ctx.world_size), num_workers=workers,
                  pin_memory=self.speed.pin_memory)
        return DataLoader(ImageDataset(bank, tf), **kw), DataLoader(ImageDataset(val, tf), **kw), len(bank.classes)

    def _describe(self, workers: int) -> None:
        a, ctx = self.args, self.ctx
        n_params = sum(p.numel() for p in self.model.encoder_q.parameters())
        shuffle = ("no shuffling BN (no key encoder; per-device BN"
                   + (f" in {self.bn_splits} groups)" if self.bn_splits > 1 and not ctx.distributed else ")")
                   if a.mechanism == "memory-bank" else
                   f"shuffling BN across {ctx.world_size} processes" if ctx.distributed else
                   f"shuffling BN emulated with {self.bn_splits} BN groups of {a.batch_size // self.bn_splits}"
                   if self.bn_splits > 1 else "no shuffling BN (--bn-splits 1)")
        if a.mechanism == "moco-v3":
            self.log.info("MoCo v3: %s (%.1fM params in encoder + projector), dim %d, MLP hidden %d, m %g%s, T %g, %s, "
                          "augmentation v3 (crop-min %g)%s", a.arch, n_params / 1e6, a.moco_dim, a.moco_mlp_dim, a.moco_m,
                          " -> 1 (cosine)" if a.moco_m_cos else "", a.moco_t, a.optimizer, a.crop_min,
                          ", frozen patch projection" if a.stop_grad_conv1 and is_vit(a.arch) else "")
        elif a.mechanism == "moco":
            self.log.info("MoCo %s: %s (%.1fM params), dim %d, K %d, m %g, T %g, %s head, %s augmentation",
                          ckpt_io.moco_version(vars(a)), a.arch, n_params / 1e6, a.moco_dim, a.moco_k, a.moco_m,
                          a.moco_t, "MLP" if a.mlp else "linear", "v2 (aug+)" if a.aug_plus else "v1")
        else:
            self.log.info("%s mechanism (MoCo %s recipe): %s (%.1fM params), dim %d, K %d, T %g, %s head, %s augmentation",
                          DISPLAY[a.mechanism], ckpt_io.moco_version(vars(a)), a.arch, n_params / 1e6, a.moco_dim,
                          a.batch_size if a.mechanism == "end-to-end" else a.moco_k, a.moco_t,
                          "MLP" if a.mlp else "linear", "v2 (aug+)" if a.aug_plus else "v1")
        self.log.info("%s", self.model.describe())
        if a.mechanism == "moco-v3":
            shuffle = "SyncBN across processes" if ctx.distributed and ctx.device.type == "cuda" else "per-process BN"
        schedule = (f"{a.warmup_epochs} warm-up epochs then cosine, per iteration" if a.mechanism == "moco-v3"
                    else "cosine" if a.cos else f"x0.1 at {a.schedule}")
        self.log.info("batch %d (%d per process x %d), lr %g, %s, %d epochs x %d iterations, %s",
                      a.batch_size, a.batch_size // ctx.world_size, ctx.world_size, a.lr, schedule, a.epochs,
                      self.iters_per_epoch, shuffle)
        self.log.info("data %s: %d images (%s), crop %d, %d workers, %s backend; device %s, %s; seed %d; output %s",
                      self.images.root, len(self.images.samples), self.images.layout, a.crop_size, workers,
                      self.data_backend, ctx.device, self.speed.describe(), a.seed, self.out)

    # --- checkpoints ---
    def save(self, epoch_index: int, iteration: int) -> Path | None:
        """Checkpoint after ``iteration`` batches of 0-based ``epoch_index`` (0: the epoch is complete)."""
        if not self.ctx.is_main:
            self.pending = []
            return None
        self._write_pending()  # metrics.csv must cover every step the checkpoint contains...
        if self.metrics is not None:
            self.metrics.flush()  # ...on disk, before the checkpoint exists (a kill may follow at once)
        a = {k: v for k, v in vars(self.args).items() if not k.startswith("_")}
        state = {
            "epoch": epoch_index if iteration else epoch_index + 1,
            "iteration": iteration,
            "global_step": self.step,
            "arch": self.args.arch,
            "state_dict": ckpt_io.with_module_prefix(self.model.state_dict()),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None,
            "rng": {**ckpt_io.rng_state(), **{k: g.get_state() for k, g in self.model.generators().items()}},
            "world_size": self.ctx.world_size,
            "suite": ckpt_io.suite_marker(a, precision=self.speed.record(), data_backend=self.data_backend,
                                          **self._architecture()),
        }
        path = ckpt_io.save_atomic(state, self.out / ckpt_io.checkpoint_name(epoch_index, iteration))
        ckpt_io.prune(self.out, self.args.keep_checkpoints)
        self.last_saved = path
        if self.metrics is not None:
            self.metrics.flush()
        return path

    def _architecture(self) -> dict[str, Any]:
        """``{"vit": {embed_dim, depth, num_heads, patch_size, mlp_ratio, img_size}}`` for a ViT, else nothing."""
        encoder = self.model.encoder_q
        return {"vit": encoder.record()} if hasattr(encoder, "record") else {}

    # --- the loop ---
    def train_step(self, im_q: torch.Tensor, im_k: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        """One step of the mechanism; returns detached ``[loss, acc1, acc5]`` averaged over processes."""
        dtype = self.speed.amp_dtype
        with torch.autocast(self.ctx.device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            logits, pending = self.net(im_q, im_k, index)
        loss = self.model.loss(logits)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.model.after_step(pending)  # enqueue keys / update bank entries
        self.n_logits = logits.shape[1]  # 1 positive + the negatives: chance acc@1 is 1/n_logits
        topk = getattr(self.model, "pretext_topk", pretext_topk)  # MoCo v3: positives off column 0
        stats = torch.stack([loss.detach(), *topk(logits)])
        return all_reduce_mean_(stats)

    def run(self) -> Path | None:
        a, dev = self.args, self.ctx.device
        start_step, t_start = self.step, time.perf_counter()
        stop = self.step >= self.total_iters
        if self.step == 0 and a.knn_val and a.knn_init:
            self._knn_at_init()
        while self.epoch < a.epochs and not stop:
            epoch, lr = self.epoch, lr_at(self.epoch, a)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            self.sampler.set_epoch(epoch, self.iteration)
            sums, n_epoch_iters, skipped = torch.zeros(3, device=dev), 0, 0
            t_epoch = t_window = time.perf_counter()
            data_time, window_iters = 0.0, 0
            t_data, i = time.perf_counter(), self.iteration - 1
            for i, ((im_q, im_k), _, n_skipped, index) in enumerate(self.loader, start=self.iteration):
                data_time += time.perf_counter() - t_data
                lr = self._per_iteration(epoch + i / self.iters_per_epoch, lr)
                skipped += int(n_skipped.sum())
                stats = self.train_step(im_q.to(dev, non_blocking=True), im_k.to(dev, non_blocking=True),
                                        index.to(dev, non_blocking=True))
                self.step += 1
                window_iters += 1
                n_epoch_iters += 1
                sums += stats
                self.pending.append((epoch, i, self.step, lr, stats))
                last_in_epoch = i + 1 == self.iters_per_epoch
                stop = self.step >= self.total_iters
                if self.step % a.print_freq == 0 or last_in_epoch or stop:
                    elapsed = time.perf_counter() - t_window
                    self._report(epoch, i, lr, window_iters / max(elapsed, 1e-9), data_time / window_iters,
                                 (time.perf_counter() - t_start) / max(1, self.step - start_step))
                    window_iters, data_time, t_window = 0, 0.0, time.perf_counter()
                if stop or last_in_epoch:
                    break
                if a.save_every_iters and (i + 1) % a.save_every_iters == 0:
                    self.save(epoch, i + 1)
                t_data = time.perf_counter()
            complete = i + 1 == self.iters_per_epoch
            self.iteration = 0 if complete else i + 1
            if complete:
                self.epoch += 1
            self.save(epoch, self.iteration)
            if complete:
                self._end_epoch(epoch, lr, sums / max(1, n_epoch_iters), skipped, time.perf_counter() - t_epoch, n_epoch_iters)
        if self.metrics is not None:
            self.metrics.close()
        self.log.info("done: %d iterations in %s; last checkpoint %s", self.step - start_step,
                      format_seconds(time.perf_counter() - t_start), self.last_saved)
        self._summary()
        barrier()
        return self.last_saved

    def _per_iteration(self, progress: float, lr: float) -> float:
        """MoCo v3's per-iteration lr and ``--moco-m-cos`` momentum at ``progress`` epochs; returns the lr."""
        a = self.args
        if a.moco_m_cos and a.mechanism in ("moco", "moco-v3"):
            self.model.m = cosine_momentum(a.moco_m, progress, a.epochs)
        if a.mechanism == "moco-v3":
            lr = lr_at(progress, a)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
        return lr

    def _write_pending(self) -> list[float]:
        """Write the per-iteration rows not yet in metrics.csv; return the last [loss, acc1, acc5]."""
        if not self.pending:
            return []
        values = torch.stack([s for *_, s in self.pending]).cpu().tolist()  # one device sync per report
        self.step_log += [(step, loss, acc1) for (_, _, step, _, _), (loss, acc1, _) in zip(self.pending, values)]
        if self.metrics is not None:
            for (epoch, it, step, lr, _), (loss, acc1, acc5) in zip(self.pending, values):
                self.metrics.step(dict(step=step, epoch=epoch, iter=it, loss=loss, acc1=acc1, acc5=acc5, lr=lr))
        self.pending = []
        return values[-1]

    def _report(self, epoch: int, i: int, lr: float, it_per_s: float, data_s: float, s_per_iter: float) -> None:
        if not self.ctx.is_main:
            self.pending = []
            return
        values = self._write_pending()
        loss, acc1, acc5 = values
        img_s = it_per_s * self.args.batch_size
        self.metrics.scalars(self.step, dict(loss=loss, acc1=acc1, acc5=acc5, lr=lr, images_per_s=img_s))
        self.log.info("[ep %d/%d][%*d/%d] loss %.4f  acc@1 %.2f  acc@5 %.2f  lr %.4g  %.1f img/s  data %.3fs  eta %s",
                      epoch + 1, self.args.epochs, len(str(self.iters_per_epoch)), i + 1, self.iters_per_epoch,
                      loss, acc1, acc5, lr, img_s, data_s, format_seconds((self.total_iters - self.step) * s_per_iter))

    def _knn(self) -> float | None:
        """kNN top-1 (%) of the query encoder on the monitor's folders (main process; None elsewhere)."""
        if self.knn is None:
            return None
        bank_loader, val_loader, n_classes = self.knn
        a = self.args
        return knn_accuracy(self.model.encoder_q, bank_loader, val_loader, n_classes, self.ctx.device,
                            a.knn_k, a.knn_t, a.knn_feature, self.speed.memory_format, self.speed.amp_dtype)

    def _knn_at_init(self) -> None:
        """The monitor on the encoder at random initialisation: the baseline the trained encoder must beat."""
        t0 = time.perf_counter()
        top1 = self._knn()
        barrier()
        if top1 is None or not self.ctx.is_main:
            return
        self.knn_init = top1
        self.metrics.epoch(dict(epoch=0, knn_top1=top1, seconds=round(time.perf_counter() - t0, 3)), 0)
        self.log.info("before training: kNN top-1 %.2f%% (k=%d) with the encoder at random initialisation",
                      top1, self.args.knn_k)

    def _summary(self) -> None:
        """One line a reader can judge the run by: did the pretext loss fall, acc@1 rise above chance, kNN improve.

        Compares the first epoch-long window of steps once MoCo's queue holds real keys only (it starts
        as random vectors, an easy dictionary) with the last window, over the steps of this process.
        """
        w = self.iters_per_epoch
        fill = self.model.fill_steps(self.args.batch_size) if hasattr(self.model, "fill_steps") else 0
        steps = self.step_log
        if not self.ctx.is_main or not self.n_logits or len(steps) < fill + 2 * w:
            return
        first, last = steps[fill:fill + w], steps[-w:]

        def mean(rows: list[tuple[int, float, float]], i: int) -> float:
            return sum(r[i] for r in rows) / len(rows)

        msg = (f"summary: pretext loss {mean(first, 1):.3f} (steps {first[0][0]}-{first[-1][0]}"
               + (", queue filled" if fill else "") + f") -> {mean(last, 1):.3f} (steps {last[0][0]}-{last[-1][0]}), "
               f"acc@1 {mean(first, 2):.1f}% -> {mean(last, 2):.1f}% (chance {100 / self.n_logits:.2f}% = "
               f"1/{self.n_logits})")
        knn = [k for *_, k in self.epoch_log if k is not None]
        if knn:
            msg += f"; kNN top-1 {knn[-1]:.2f}%" + (f" (random init {self.knn_init:.2f}%)" if self.knn_init is not None else "")
        self.log.info(msg)

    def _end_epoch(self, epoch: int, lr: float, means: torch.Tensor, skipped: int, seconds: float, iters: int) -> None:
        a = self.args
        skipped_t = torch.tensor([float(skipped)], device=self.ctx.device)
        all_reduce_mean_(skipped_t)
        skipped = round(float(skipped_t) * self.ctx.world_size)
        knn_top1 = None
        done = self.epoch >= a.epochs or self.step >= self.total_iters
        if self.knn is not None and (self.epoch % a.knn_every == 0 or done):
            knn_top1 = self._knn()
        if a.knn_val:
            barrier()
        if not self.ctx.is_main:
            return
        loss, acc1, acc5 = means.tolist()
        self.epoch_log.append((self.epoch, loss, acc1, knn_top1))
        img_s = iters * a.batch_size / max(seconds, 1e-9)
        self.metrics.epoch(dict(epoch=self.epoch, loss=loss, acc1=acc1, acc5=acc5, lr=lr, images_per_s=img_s,
                                skipped_images=skipped, knn_top1=knn_top1, seconds=round(seconds, 3)), self.step)
        msg = f"epoch {epoch + 1}/{a.epochs}: loss {loss:.4f}  acc@1 {acc1:.2f}  {img_s:.1f} img/s  {format_seconds(seconds)}"
        if knn_top1 is not None:
            msg += f"  kNN top-1 {knn_top1:.2f}% (k={a.knn_k})"
            if self.knn_init is not None:
                msg += f" (at random initialisation {self.knn_init:.2f}%)"
        if skipped:
            msg += f"  [{skipped} unreadable images skipped]"
        self.log.info(msg)


def train_worker(ctx: DistContext, args: argparse.Namespace) -> Path | None:
    """Entry point of every training process."""
    return Trainer(ctx, args).run()


_USER_ERRORS = (DataError, ckpt_io.CheckpointError, LaunchError, UsageError, BackendError)


def main(argv: list[str] | None = None) -> Path | None:
    """Run pretraining with command-line ``argv``; return the last checkpoint written."""
    args = parse_args(argv)
    try:
        prepare(args)
        if args.multiprocessing_distributed:
            args._images = None  # each spawned process scans the folder itself
        result = launch(train_worker, args)
    except _USER_ERRORS as e:
        if args.debug:
            raise
        raise SystemExit(f"main_moco.py: error: {e}") from None
    except torch.multiprocessing.ProcessExitedException as e:
        raise SystemExit(f"main_moco.py: error: a training process failed ({e}); see its message above") from None
    return result if result is not None else ckpt_io.latest_checkpoint(args.output_dir)


if __name__ == "__main__":
    if __package__ in (None, ""):  # re-enter through the package so spawned processes can pickle the worker
        from pretrain.main_moco import main as _main
    else:
        _main = main
    _main()
