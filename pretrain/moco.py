"""The MoCo model: query/key encoders, momentum update, queue of negatives, shuffling BN, InfoNCE.

Follows Algorithm 1 of He et al. (2020) and the v2 head of Chen et al. (2020):

* ``q = normalize(f_q(x_q))``, ``k = normalize(f_k(x_k))`` with no gradient through ``k``;
* logits ``[q.k, q.queue] / T`` (1 positive + K negatives), cross-entropy with label 0;
* ``f_k <- m f_k + (1 - m) f_q`` (parameters only; BN running stats of ``f_k`` follow its own batches),
  done before the keys are computed, as in the reference code;
* enqueue the keys of the whole (all-process) batch, dequeue the oldest.

Shuffling BN. With several processes, the key images of all processes are gathered, permuted by a
permutation drawn on rank 0 and broadcast, and each process encodes its share of the shuffled batch, so
the BN statistics of a key never come from the sub-batch its query was normalised with. On one
process this is emulated with ``S = bn_splits`` virtual devices: :class:`SplitBatchNorm2d` normalises
``S`` contiguous sub-batches separately in both encoders, and the keys are permuted before (and
un-permuted after) the key encoder. That is the computation of an ``S``-process run on the same global
batch, up to floating-point summation order; like rank 0 there, only the first sub-batch updates the
running statistics. The remaining difference: the whole batch lives on one device (memory), and a
real multi-process run normalises with ``B/W`` per process instead of ``B/S``.

The enqueue is a separate call (:meth:`MoCo.enqueue`, i.e. :meth:`MoCo.after_step`) made after the
backward pass: the logits keep a reference to the queue, so updating it in place before backward would
need a copy of the queue (the reference code clones it every step).

:class:`MoCo` is one of the three contrastive-loss mechanisms the training loop drives through the same
interface (``forward(im_q, im_k, index) -> (logits, pending)``, ``loss``, ``after_step``,
``generators``, ``describe``); see :mod:`pretrain.mechanisms` for the other two.
"""

from __future__ import annotations

import copy

import torch
import torch.nn as nn
import torch.nn.functional as F

from pretrain.distributed import all_gather_cat, broadcast_, get_rank, is_distributed
from pretrain.momentum import MomentumUpdated
from pretrain.resnets import build_resnet


class SplitBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d that, in training, normalises ``num_splits`` contiguous sub-batches separately.

    Same parameters, buffers and state-dict keys as :class:`torch.nn.BatchNorm2d`; evaluation uses the
    running statistics as usual. Running statistics are updated from the first sub-batch only.
    """

    num_splits: int = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.num_splits <= 1:
            return super().forward(x)
        if x.shape[0] % self.num_splits:
            raise ValueError(f"batch of {x.shape[0]} does not split into {self.num_splits} BN groups")
        momentum = 0.0 if self.momentum is None else self.momentum
        if self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:
                momentum = 1.0 / float(self.num_batches_tracked)
        chunks = x.chunk(self.num_splits)
        out = [F.batch_norm(chunks[0], self.running_mean, self.running_var, self.weight, self.bias, True, momentum, self.eps)]
        out += [F.batch_norm(c, None, None, self.weight, self.bias, True, 0.0, self.eps) for c in chunks[1:]]
        return torch.cat(out)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, num_splits={self.num_splits}"


def set_bn_splits(module: nn.Module, num_splits: int) -> nn.Module:
    """Make every BatchNorm2d of ``module`` a :class:`SplitBatchNorm2d` with ``num_splits`` (in place)."""
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.__class__ = SplitBatchNorm2d
            m.num_splits = num_splits
    return module


def auto_bn_splits(batch_size: int, per_split: int = 32) -> int:
    """Default number of virtual devices on one process: ~32 images per BN group (the paper's 256/8)."""
    s = max(2, round(batch_size / per_split))
    while s > 1 and batch_size % s:
        s -= 1
    return s


def build_encoder(arch: str, dim: int = 128, mlp: bool = False) -> nn.Module:
    """ResNet whose ``fc`` outputs ``dim``; with ``mlp`` the v2 head fc-ReLU-fc (keys ``fc.0``, ``fc.2``)."""
    enc = build_resnet(arch, num_classes=dim)
    if mlp:
        hidden = enc.fc.weight.shape[1]
        enc.fc = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(inplace=True), enc.fc)
    return enc


def draw_permutation(generator: torch.Generator, n: int, device: torch.device) -> torch.Tensor:
    """A permutation of ``n`` drawn on rank 0 from ``generator`` (CPU) and broadcast to every process."""
    perm = torch.randperm(n, generator=generator) if get_rank() == 0 else torch.empty(n, dtype=torch.long)
    return broadcast_(perm.to(device), 0)


class MoCo(MomentumUpdated):
    """Query encoder, momentum key encoder and queue. ``forward`` returns ``(logits, keys_all)``.

    ``logits`` are ``N x (1+K)`` with the positive in column 0, already divided by ``T`` (float32);
    ``keys_all`` are the normalised keys of the whole batch over all processes, for :meth:`enqueue`.
    """

    name = "moco"

    def __init__(self, encoder_q: nn.Module, dim: int = 128, K: int = 65536, m: float = 0.999,
                 T: float = 0.07, bn_splits: int = 1, channels_last: bool = False, seed: int = 0) -> None:
        super().__init__()
        self.K, self.m, self.T, self.dim = K, m, T, dim
        self.bn_splits = bn_splits
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.encoder_q = encoder_q
        if bn_splits > 1:
            set_bn_splits(self.encoder_q, bn_splits)
        self.encoder_k = copy.deepcopy(encoder_q)
        for p in self.encoder_k.parameters():
            p.requires_grad_(False)
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("queue", F.normalize(torch.randn(dim, K, generator=g), dim=0))
        self.register_buffer("queue_ptr", torch.zeros(1, dtype=torch.long))
        self.shuffle_generator = torch.Generator().manual_seed(seed + 1)  # CPU: same draws on any device
        self._ptr: int | None = None  # host copy of queue_ptr: no device->host sync per step
        self.register_load_state_dict_post_hook(lambda module, incompatible: setattr(module, "_ptr", None))

    # --- momentum encoder -------------------------------------------------------------------------
    def momentum_encoders(self) -> tuple[nn.Module, nn.Module]:
        return self.encoder_k, self.encoder_q

    # --- shuffling BN -------------------------------------------------------------------------------
    def _permutation(self, n: int, device: torch.device) -> torch.Tensor:
        return draw_permutation(self.shuffle_generator, n, device)

    @torch.no_grad()
    def encode_keys(self, im_k: torch.Tensor) -> torch.Tensor:
        """Normalised float32 keys of the *whole* batch (all processes), encoded with shuffled BN."""
        x_all = all_gather_cat(im_k)
        n_all = x_all.shape[0]
        perm = self._permutation(n_all, im_k.device)
        if is_distributed():
            n = im_k.shape[0]
            mine = perm[get_rank() * n:(get_rank() + 1) * n]
            k_mine = self.encoder_k(x_all[mine].contiguous(memory_format=self.memory_format))
            k_shuffled = all_gather_cat(F.normalize(k_mine.float(), dim=1))
        else:
            k_shuffled = F.normalize(self.encoder_k(x_all[perm].contiguous(memory_format=self.memory_format)).float(), dim=1)
        return k_shuffled[torch.argsort(perm)]

    # --- loss pieces --------------------------------------------------------------------------------
    def contrast(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """Logits ``[q.k, q.queue] / T`` in float32 (``q``, ``k`` normalised, same rows)."""
        with torch.autocast(q.device.type, enabled=False):
            q = q.float()
            l_pos = (q * k).sum(dim=1, keepdim=True)
            l_neg = q @ self.queue
            return torch.cat([l_pos, l_neg], dim=1).div_(self.T)

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor) -> None:
        """Replace the oldest ``len(keys)`` queue entries by ``keys`` (all processes' keys, same on each)."""
        n = keys.shape[0]
        if n > self.K:
            raise ValueError(f"batch of {n} keys is larger than the queue (K={self.K})")
        ptr = int(self.queue_ptr) if self._ptr is None else self._ptr
        idx = (torch.arange(n, device=keys.device) + ptr) % self.K if ptr + n > self.K else slice(ptr, ptr + n)
        self.queue[:, idx] = keys.T.to(self.queue.dtype)
        self._ptr = (ptr + n) % self.K
        self.queue_ptr.fill_(self._ptr)

    def forward(self, im_q: torch.Tensor, im_k: torch.Tensor,
                index: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        q = F.normalize(self.encoder_q(im_q.contiguous(memory_format=self.memory_format)).float(), dim=1)
        self.momentum_update()
        k_all = self.encode_keys(im_k)
        if is_distributed():
            n = im_q.shape[0]
            k = k_all[get_rank() * n:(get_rank() + 1) * n]
        else:
            k = k_all
        return self.contrast(q, k), k_all

    # --- the mechanism interface the training loop drives ----------------------------------------
    @staticmethod
    def loss(logits: torch.Tensor) -> torch.Tensor:
        return moco_loss(logits)

    def after_step(self, keys: torch.Tensor) -> None:
        """Enqueue this step's keys (after the backward pass and the SGD step)."""
        self.enqueue(keys)

    def generators(self) -> dict[str, torch.Generator]:
        """Generators whose state a checkpoint must keep (stored under ``rng[name]``)."""
        return {"shuffle": self.shuffle_generator}

    def fill_steps(self, batch_size: int) -> int:
        """Steps until the queue holds real keys only (it starts as random unit vectors)."""
        return -(-self.K // batch_size)

    def describe(self) -> str:
        return (f"dictionary: queue of K={self.K} keys from the momentum encoder (m {self.m:g}), "
                f"key encoder without gradient, InfoNCE, T {self.T:g}")


def build_moco(arch: str, dim: int = 128, K: int = 65536, m: float = 0.999, T: float = 0.07, mlp: bool = False,
               bn_splits: int = 1, channels_last: bool = False, seed: int = 0) -> MoCo:
    """MoCo around ``pretrain.resnets.build_resnet(arch, num_classes=dim)`` (+ v2 MLP head)."""
    return MoCo(build_encoder(arch, dim, mlp), dim, K, m, T, bn_splits, channels_last, seed)


def moco_loss(logits: torch.Tensor) -> torch.Tensor:
    """InfoNCE: cross-entropy of the (1+K)-way logits with the positive at index 0."""
    return F.cross_entropy(logits, torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device))


@torch.no_grad()
def pretext_topk(logits: torch.Tensor, ks: tuple[int, ...] = (1, 5)) -> list[torch.Tensor]:
    """Fraction (in %) of rows whose positive (column 0) ranks within the top-k of the 1+K logits."""
    rank = (logits[:, 1:] > logits[:, :1]).sum(dim=1)
    return [(rank < k).float().mean() * 100 for k in ks]
