"""The memory-bank mechanism (Wu et al. 2018, "Unsupervised Feature Learning via Non-Parametric Instance
Discrimination"), as MoCo's ablation uses it (He et al. 2020, Sec. 3.2, Figure 2b, Sec. 4.1).

* Bank: one ``dim``-vector per training image (``memory``, ``n x dim``; n = images in the training folder).
  Initialised as in Wu et al.'s reference code (``lemniscate.pytorch``): uniform in
  ``[-sqrt(3/dim), sqrt(3/dim)]``, i.e. random vectors of expected unit norm.
* Keys: "sampled from a memory bank" (Figure 2b); there is no key encoder and no gradient into the bank.
  Query ``i``'s positive is the bank's entry for its own image; its ``K`` negatives are bank entries drawn
  uniformly at random with replacement (Wu et al.: uniform noise distribution ``P_n = 1/n``, ``K`` = 4096
  noise samples). ``K`` is this number of negatives, Figure 3's x-axis for the memory bank.
  Two choices of this suite: one draw of ``K`` indices serves the whole (global) mini-batch, as MoCo's
  queue does (Wu et al. draw ``K`` per query: same distribution for each query, ``N x K x dim`` memory),
  and the draw excludes the images of the current mini-batch, so a query never meets its own entry as a
  negative (in Wu et al. that happens with probability ``K/n``: negligible on ImageNet, not on small data).
* Update, after the SGD step: ``v_i <- normalize(m v_i + (1 - m) q_i)`` for every image ``i`` of the batch,
  with this step's (detached) query feature ``q_i``; the other entries do not change. This is the
  "momentum update ... on the representations of the same sample, not the encoder" that MoCo contrasts
  with its own (Sec. 3.2); ``m`` = 0.5 is Wu et al.'s (``--nce-m`` of their code).
* Loss: InfoNCE over ``[q.v_i, q.v_neg] / T`` by default — MoCo's improved memory bank (58.0% at K=65536,
  Figure 3) uses InfoNCE. ``loss="nce"`` is Wu et al.'s NCE (MoCo Sec. 4.1, footnote 2: 54.3% with NCE at
  K=4096): ``P(i|v) = exp(v.q / T) / Z`` with ``Z`` estimated once, on the first mini-batch, as
  ``n x mean(exp(v.q / T))`` and fixed afterwards (their code), noise prior ``K/n``, and the binary loss
  ``-log(P+ / (P+ + K/n)) - sum_neg log((K/n) / (P- + K/n))`` averaged over the batch.
* Shuffling BN: not used — "irrelevant to the memory bank counterpart, which does not suffer from this
  issue (the positive keys are from different mini-batches in the past)" (Sec. 3.3). The query encoder's
  BN still normalises per device (``bn_splits`` virtual devices on one process).
* Several processes: every process holds the whole bank; negatives are drawn on rank 0 and broadcast, and
  each process applies the update of the whole global batch, so the banks stay identical.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from pretrain.distributed import all_gather_cat, all_reduce_mean_, broadcast_, get_rank
from pretrain.moco import moco_loss, set_bn_splits

LOSSES = ("infonce", "nce")
WU_BANK_MOMENTUM = 0.5  # lemniscate.pytorch --nce-m


def nce_loss(logits: torch.Tensor, log_z: torch.Tensor, noise: float) -> torch.Tensor:
    """Wu et al.'s NCE with ``log P = logits - log Z`` and noise prior ``K/n`` (positive in column 0)."""
    log_p = logits - log_z
    log_noise = math.log(noise)
    pos = F.softplus(log_noise - log_p[:, 0])  # -log(P+ / (P+ + K/n))
    neg = F.softplus(log_p[:, 1:] - log_noise).sum(dim=1)  # -log((K/n) / (P- + K/n)), summed
    return (pos + neg).mean()


class MemoryBank(nn.Module):
    """Query encoder + a bank of per-image features; ``forward(im_q, im_k, index)`` ignores ``im_k``."""

    name = "memory-bank"

    def __init__(self, encoder_q: nn.Module, num_samples: int, dim: int = 128, K: int = 4096, T: float = 0.07,
                 bank_m: float = WU_BANK_MOMENTUM, loss: str = "infonce", bn_splits: int = 1,
                 channels_last: bool = False, seed: int = 0) -> None:
        super().__init__()
        if loss not in LOSSES:
            raise ValueError(f"unknown memory-bank loss {loss!r} (choose from {', '.join(LOSSES)})")
        self.K, self.T, self.dim, self.bank_m, self.loss_name = K, T, dim, bank_m, loss
        self.num_samples, self.bn_splits = num_samples, bn_splits
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.encoder_q = encoder_q
        if bn_splits > 1:
            set_bn_splits(self.encoder_q, bn_splits)
        g = torch.Generator().manual_seed(seed)
        bound = math.sqrt(3.0 / dim)
        self.register_buffer("memory", torch.rand(num_samples, dim, generator=g).mul_(2 * bound).sub_(bound))
        self.register_buffer("nce_log_z", torch.tensor(float("nan")))  # NaN until the first NCE batch sets it
        self.negative_generator = torch.Generator().manual_seed(seed + 1)

    @torch.no_grad()
    def draw_negatives(self, batch_index: torch.Tensor) -> torch.Tensor:
        """``K`` bank indices drawn uniformly with replacement from the images not in ``batch_index``."""
        taken = torch.unique(batch_index.cpu())  # sorted
        free = self.num_samples - taken.numel()
        if free < 1:
            raise ValueError(f"the memory bank has no entry outside the batch ({self.num_samples} images)")
        if get_rank() == 0:
            r = torch.randint(0, free, (self.K,), generator=self.negative_generator)
            # the r-th index not in `taken`: r + (number of taken indices t with t - rank(t) <= r)
            r += torch.searchsorted(taken - torch.arange(taken.numel()), r, right=True)
        else:
            r = torch.empty(self.K, dtype=torch.long)
        return broadcast_(r.to(self.memory.device), 0)

    def forward(self, im_q: torch.Tensor, im_k: torch.Tensor | None,
                index: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        if index is None:
            raise ValueError("the memory bank needs the dataset index of every image")
        q = F.normalize(self.encoder_q(im_q.contiguous(memory_format=self.memory_format)).float(), dim=1)
        index = index.to(self.memory.device)
        index_all = all_gather_cat(index)
        negatives = self.draw_negatives(index_all)
        with torch.autocast(q.device.type, enabled=False):
            l_pos = (q * self.memory[index]).sum(dim=1, keepdim=True)
            l_neg = q @ self.memory[negatives].T
            logits = torch.cat([l_pos, l_neg], dim=1).div_(self.T)
        if self.loss_name == "nce" and torch.isnan(self.nce_log_z):
            with torch.no_grad():
                z = logits.detach().exp().mean().reshape(1) * self.num_samples
                self.nce_log_z.fill_(float(all_reduce_mean_(z).log()))
        return logits, (all_gather_cat(q.detach()), index_all)

    def loss(self, logits: torch.Tensor) -> torch.Tensor:
        if self.loss_name == "nce":
            return nce_loss(logits, self.nce_log_z, self.K / self.num_samples)
        return moco_loss(logits)

    @torch.no_grad()
    def after_step(self, pending: tuple[torch.Tensor, torch.Tensor]) -> None:
        """``v_i <- normalize(m v_i + (1 - m) q_i)`` for the batch's images (all processes' batch)."""
        q_all, index_all = pending
        updated = F.normalize(self.memory[index_all] * self.bank_m + q_all * (1.0 - self.bank_m), dim=1)
        self.memory.index_copy_(0, index_all, updated.to(self.memory.dtype))

    def generators(self) -> dict[str, torch.Generator]:
        return {"negatives": self.negative_generator}

    def describe(self) -> str:
        loss = "InfoNCE" if self.loss_name == "infonce" else "NCE (Wu et al.; Z fixed from the first batch)"
        return (f"dictionary: memory bank of {self.num_samples} per-image features (updated with momentum "
                f"{self.bank_m:g}), K={self.K} negatives drawn per step outside the batch, no key encoder, "
                f"{loss}, T {self.T:g}")
