"""The three contrastive-loss mechanisms of MoCo's ablation (He et al. 2020, Sec. 3.2, Figure 2, Figure 3),
and MoCo v3 (Chen et al. 2021), behind one interface that the single training loop (``pretrain/main_moco.py``) drives.

===============  ========================  =====================  ==================  ============  ==========
mechanism        keys from                 back-propagated        dictionary, K        shuffling BN  module
===============  ========================  =====================  ==================  ============  ==========
``moco``         momentum key encoder      queries only           queue of K keys      yes           ``moco``
``end-to-end``   the query encoder         queries and keys       mini-batch, K = N    yes           ``end_to_end``
``memory-bank``  bank of per-image feats   queries only           K sampled entries    no            ``memory_bank``
``moco-v3``      momentum encoder          queries (+predictor)   the batch's keys     no (SyncBN)   ``moco_v3``
===============  ========================  =====================  ==================  ============  ==========

Each module's docstring states its choices and their sources. The interface (an ``nn.Module``)::

    encoder_q                              the network being learned (state-dict keys encoder_q.*)
    forward(im_q, im_k, index)             -> (logits N x (1+K), float32, / T, positive in column 0; pending)
    loss(logits)                           -> scalar (InfoNCE; NCE for the memory bank on request)
    after_step(pending)                    after the SGD step: enqueue keys / update bank entries
    generators()                           {name: torch.Generator} whose states checkpoints keep
    describe()                             one log line
    state_dict()                           everything else a checkpoint needs (queue, bank, ...)

The v1 ablation's mechanisms store their query encoder under ``encoder_q.``; MoCo v3 keeps
facebookresearch/moco-v3's names (``base_encoder.``, ``momentum_encoder.``, ``predictor.``) and exposes the
base encoder as ``encoder_q`` (a property, not a second state-dict entry). Its logits have the positive of
row ``i`` in column ``rank * N + i`` (not 0), so it also provides ``pretext_topk(logits)``, and
``trainable_parameters()`` (encoder and predictor).
"""

from __future__ import annotations

import torch.nn as nn

from pretrain.end_to_end import EndToEnd
from pretrain.memory_bank import WU_BANK_MOMENTUM, MemoryBank
from pretrain.moco import MoCo, build_encoder
from pretrain.moco_v3 import build_moco_v3

MECHANISMS = ("moco", "end-to-end", "memory-bank")  # MoCo v1's ablation (Sec. 3.2, Figure 3): what sweeps compare
ALL_MECHANISMS = (*MECHANISMS, "moco-v3")
DISPLAY = {"moco": "MoCo", "end-to-end": "end-to-end", "memory-bank": "memory bank", "moco-v3": "MoCo v3"}


def build_mechanism(mechanism: str, arch: str, *, dim: int = 128, K: int = 65536, m: float = 0.999,
                    T: float = 0.07, mlp: bool = False, bn_splits: int = 1, channels_last: bool = False,
                    seed: int = 0, num_samples: int | None = None, bank_m: float = WU_BANK_MOMENTUM,
                    bank_loss: str = "infonce", mlp_dim: int = 4096, img_size: int = 224,
                    stop_grad_conv1: bool = False) -> nn.Module:
    """The model of ``mechanism`` around ``build_encoder(arch, dim, mlp)`` (MoCo v3: ``build_moco_v3``).

    ``K`` is the queue length (MoCo) or the number of negatives drawn per step (memory bank); the
    end-to-end dictionary is the mini-batch. ``num_samples`` (memory bank) is the number of training images.
    ``mlp_dim``, ``img_size``, ``stop_grad_conv1``: MoCo v3's head width, ViT input size and frozen patch projection.
    """
    if mechanism == "moco-v3":
        return build_moco_v3(arch, dim, mlp_dim, m, T, img_size, stop_grad_conv1)
    encoder = build_encoder(arch, dim, mlp)
    if mechanism == "moco":
        return MoCo(encoder, dim, K, m, T, bn_splits, channels_last, seed)
    if mechanism == "end-to-end":
        return EndToEnd(encoder, dim, T, bn_splits, channels_last, seed)
    if mechanism == "memory-bank":
        if not num_samples:
            raise ValueError("the memory bank needs the number of training images (num_samples)")
        return MemoryBank(encoder, num_samples, dim, K, T, bank_m, bank_loss, bn_splits, channels_last, seed)
    raise ValueError(f"unknown mechanism {mechanism!r} (choose from {', '.join(ALL_MECHANISMS)})")
