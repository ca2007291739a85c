"""The end-to-end mechanism of He et al. (2020), Sec. 3.2 and Figure 2a: the dictionary is the mini-batch.

* Keys come from the query encoder itself: "the keys are consistently encoded (by the same set of encoder
  parameters)" (Sec. 3.2), i.e. ``f_k = f_q`` with shared weights, and the loss is back-propagated through
  both the queries and the keys (Figure 2a: gradients reach both encoders).
* Dictionary: the keys of the current global mini-batch. Query ``i``'s positive is key ``i`` (the other
  view of its image); its negatives are the ``N - 1`` other keys. ``K`` is the mini-batch size ``N``, as in
  Figure 3, whose end-to-end points are at mini-batches of 256, 512 and 1024 (a 1024 batch being what
  8 Volta 32GB GPUs afford); the learning rate follows the linear scaling rule (Sec. 4.1), which is the
  suite's default ``--lr`` (0.03 x batch / 256).
* Shuffling BN: used, as for MoCo ("We use shuffling BN for both MoCo and the end-to-end ablation
  counterpart", Sec. 3.3). The key images are permuted across processes (or across the ``bn_splits``
  virtual devices on one process) before the encoder and the keys un-permuted after it; here the keys keep
  their gradient, and with several processes the gathered keys carry each process's gradient back
  (:func:`pretrain.distributed.all_gather_with_grad`).
* Loss: InfoNCE, ``[q.k+, q.k-] / T`` with the positive in column 0, like MoCo.

The encoder's BN running statistics are updated by both forward passes (queries and keys) of a step.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from pretrain.distributed import all_gather_cat, all_gather_with_grad, get_rank, is_distributed
from pretrain.moco import draw_permutation, moco_loss, set_bn_splits


class EndToEnd(nn.Module):
    """One encoder for queries and keys, both with gradient; dictionary = the current mini-batch."""

    name = "end-to-end"

    def __init__(self, encoder_q: nn.Module, dim: int = 128, T: float = 0.07, bn_splits: int = 1,
                 channels_last: bool = False, seed: int = 0) -> None:
        super().__init__()
        self.T, self.dim, self.bn_splits = T, dim, bn_splits
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.encoder_q = encoder_q
        if bn_splits > 1:
            set_bn_splits(self.encoder_q, bn_splits)
        self.shuffle_generator = torch.Generator().manual_seed(seed + 1)

    def _encode(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.encoder_q(x.contiguous(memory_format=self.memory_format)).float(), dim=1)

    def encode_keys(self, im_k: torch.Tensor) -> torch.Tensor:
        """Normalised keys of the whole batch (all processes), encoded with shuffled BN, with gradient."""
        x_all = all_gather_cat(im_k)  # images need no gradient
        n_all = x_all.shape[0]
        perm = draw_permutation(self.shuffle_generator, n_all, im_k.device)
        if is_distributed():
            n = im_k.shape[0]
            k_shuffled = all_gather_with_grad(self._encode(x_all[perm[get_rank() * n:(get_rank() + 1) * n]]))
        else:
            k_shuffled = self._encode(x_all[perm])
        return k_shuffled[torch.argsort(perm)]

    def forward(self, im_q: torch.Tensor, im_k: torch.Tensor,
                index: torch.Tensor | None = None) -> tuple[torch.Tensor, None]:
        q = self._encode(im_q)
        k_all = self.encode_keys(im_k)
        n, n_all = q.shape[0], k_all.shape[0]
        rows = torch.arange(n, device=q.device)
        own = rows + get_rank() * n  # column of each query's positive among the gathered keys
        with torch.autocast(q.device.type, enabled=False):
            sim = q @ k_all.T  # n x N
            negative = torch.ones_like(sim, dtype=torch.bool)
            negative[rows, own] = False
            logits = torch.cat([sim[rows, own].unsqueeze(1), sim[negative].view(n, n_all - 1)], dim=1) / self.T
        return logits, None

    @staticmethod
    def loss(logits: torch.Tensor) -> torch.Tensor:
        return moco_loss(logits)

    def after_step(self, pending: None) -> None:
        """Nothing to update: the dictionary is rebuilt from every mini-batch."""

    def generators(self) -> dict[str, torch.Generator]:
        return {"shuffle": self.shuffle_generator}

    def describe(self) -> str:
        return ("dictionary: the keys of the current mini-batch (K = batch size), encoded by the query encoder "
                f"with gradient, InfoNCE, T {self.T:g}")
