"""MoCo v3 (Chen, Xie, He, "An Empirical Study of Training Self-Supervised Vision Transformers", ICCV 2021).

The ``moco-v3`` mechanism of the training loop. What differs from v1/v2, with sources (paper section;
facebookresearch/moco-v3 file):

* no queue: the keys of the current batch, all-gathered over processes, are the dictionary (Sec. 3,
  ``builder.py`` ``contrastive_loss``/``concat_all_gather``); query ``i`` of rank ``r`` has its positive in
  column ``r * N + i``;
* symmetric loss ``ctr(q1, k2) + ctr(q2, k1)``, each InfoNCE scaled by ``2 T`` (Sec. 3 and 5; ``builder.py``);
* the encoder's head replaced by a projector MLP, a predictor MLP on the query branch only; hidden 4096,
  output 256; Linear without bias, BN and ReLU after each hidden layer; a BN without affine parameters after
  the last layer of the projector (both archs) and of the ViT predictor, none after the ResNet predictor;
  the projector has 3 layers for ViT, 2 for ResNet (``builder.py`` ``MoCo_ViT``/``MoCo_ResNet``);
* the momentum encoder follows ``theta_k <- m theta_k + (1 - m) theta_q`` over parameters, updated before the
  keys are computed; ``m`` may rise to 1 by a half-cycle cosine (``--moco-m-cos``, ``main_moco.py``);
* the two crops go through the encoders as separate batches (paper App. A); BN is SyncBN across GPUs
  (``main_moco.py``: ``convert_sync_batchnorm``), plain per-process BN on the CPU (no shuffling BN).

State-dict keys are moco-v3's: ``base_encoder.*`` (with ``head.*``/``fc.*`` = projector),
``momentum_encoder.*``, ``predictor.*``; the loop adds ``module.``.
"""

from __future__ import annotations

import copy

import torch
import torch.nn as nn
import torch.nn.functional as F

from pretrain.distributed import all_gather_cat, get_rank
from pretrain.momentum import MomentumUpdated
from pretrain.resnets import build_resnet
from pretrain.vits import build_vit, is_vit


def build_mlp(num_layers: int, in_dim: int, hidden: int, out_dim: int, last_bn: bool = True) -> nn.Sequential:
    """Linear(no bias)-BN-ReLU per hidden layer, then Linear(no bias) and, with ``last_bn``, a non-affine BN."""
    layers: list[nn.Module] = []
    for i in range(num_layers):
        d_in, d_out = in_dim if i == 0 else hidden, out_dim if i == num_layers - 1 else hidden
        layers.append(nn.Linear(d_in, d_out, bias=False))
        if i < num_layers - 1:
            layers += [nn.BatchNorm1d(d_out), nn.ReLU(inplace=True)]
        elif last_bn:
            layers.append(nn.BatchNorm1d(d_out, affine=False))
    return nn.Sequential(*layers)


def symmetric_logits(q1: torch.Tensor, q2: torch.Tensor, k1: torch.Tensor, k2: torch.Tensor, T: float) -> torch.Tensor:
    """``[q1 . gather(k2); q2 . gather(k1)] / T`` in float32 (all normalised): ``2N x (world * N)``."""
    with torch.autocast(q1.device.type, enabled=False):
        q1, q2 = F.normalize(q1.float(), dim=1), F.normalize(q2.float(), dim=1)
        k1, k2 = (all_gather_cat(F.normalize(k.float(), dim=1)) for k in (k1, k2))
        return torch.cat([q1 @ k2.T, q2 @ k1.T]).div_(T)


def positive_columns(logits: torch.Tensor) -> torch.Tensor:
    """Column of each row's positive in :func:`symmetric_logits`' output (this process's block of keys)."""
    n = logits.shape[0] // 2
    own = torch.arange(n, device=logits.device) + n * get_rank()
    return torch.cat([own, own])


def v3_loss(logits: torch.Tensor, T: float) -> torch.Tensor:
    """``(CE(q1 k2) + CE(q2 k1)) * 2T``: the two halves' mean cross-entropies summed, times ``2T``."""
    n, target = logits.shape[0] // 2, positive_columns(logits)
    return (F.cross_entropy(logits[:n], target[:n]) + F.cross_entropy(logits[n:], target[n:])) * (2 * T)


@torch.no_grad()
def v3_topk(logits: torch.Tensor, ks: tuple[int, ...] = (1, 5)) -> list[torch.Tensor]:
    """Fraction (in %) of rows whose positive ranks within the top-k of its row."""
    pos = logits.gather(1, positive_columns(logits)[:, None])
    rank = (logits > pos).sum(dim=1)
    return [(rank < k).float().mean() * 100 for k in ks]


class MoCoV3(MomentumUpdated):
    """Base encoder (with projector), momentum encoder and predictor. ``forward`` returns ``(logits, None)``."""

    name = "moco-v3"

    def __init__(self, base_encoder: nn.Module, predictor: nn.Module, m: float = 0.99, T: float = 1.0) -> None:
        super().__init__()
        self.m, self.T = m, T
        self.base_encoder = base_encoder
        self.momentum_encoder = copy.deepcopy(base_encoder)
        for p in self.momentum_encoder.parameters():
            p.requires_grad_(False)
        self.predictor = predictor

    @property
    def encoder_q(self) -> nn.Module:
        """The network being learned (the loop's name for it: optimiser, kNN monitor)."""
        return self.base_encoder

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Base encoder and predictor, less the frozen ones (``stop_grad_conv1``, the fixed position embedding)."""
        return [p for p in [*self.base_encoder.parameters(), *self.predictor.parameters()] if p.requires_grad]

    def momentum_encoders(self) -> tuple[nn.Module, nn.Module]:
        return self.momentum_encoder, self.base_encoder

    def forward(self, im_q: torch.Tensor, im_k: torch.Tensor, index: torch.Tensor | None = None) -> tuple[torch.Tensor, None]:
        q1 = self.predictor(self.base_encoder(im_q))
        q2 = self.predictor(self.base_encoder(im_k))
        with torch.no_grad():
            self.momentum_update()
            k1, k2 = self.momentum_encoder(im_q), self.momentum_encoder(im_k)
        return symmetric_logits(q1, q2, k1, k2, self.T), None

    # --- the mechanism interface the training loop drives ----------------------------------------
    def loss(self, logits: torch.Tensor) -> torch.Tensor:
        return v3_loss(logits, self.T)

    @staticmethod
    def pretext_topk(logits: torch.Tensor) -> list[torch.Tensor]:
        return v3_topk(logits)

    def after_step(self, pending: None) -> None:
        """Nothing: no queue or bank to update."""

    def generators(self) -> dict[str, torch.Generator]:
        return {}

    def describe(self) -> str:
        return (f"dictionary: the batch's keys over all processes (no queue), momentum encoder (m {self.m:g}), "
                f"predictor on the query branch, symmetric InfoNCE x 2T, T {self.T:g}")


def build_moco_v3(arch: str, dim: int = 256, mlp_dim: int = 4096, m: float = 0.99, T: float = 1.0,
                  img_size: int = 224, stop_grad_conv1: bool = False) -> MoCoV3:
    """MoCo v3 around a ViT (3-layer projector as ``head``) or a ResNet (2-layer projector as ``fc``,
    ``zero_init_residual`` as the repository builds it)."""
    if is_vit(arch):
        enc: nn.Module = build_vit(arch, img_size, num_classes=mlp_dim, stop_grad_conv1=stop_grad_conv1)
        enc.head = build_mlp(3, enc.head.weight.shape[1], mlp_dim, dim)
        predictor = build_mlp(2, dim, mlp_dim, dim, last_bn=True)
    else:
        enc = build_resnet(arch, num_classes=mlp_dim, zero_init_residual=True)
        enc.fc = build_mlp(2, enc.fc.weight.shape[1], mlp_dim, dim)
        predictor = build_mlp(2, dim, mlp_dim, dim, last_bn=False)
    return MoCoV3(enc, predictor, m, T)
