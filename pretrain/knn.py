"""Weighted k-nearest-neighbour monitor (Wu et al. 2018, as used to monitor MoCo training).

Features of a labeled train folder form the memory bank; each validation image votes with its ``k``
most cosine-similar bank features, weighted by ``exp(sim / t)`` (k=200, t=0.1 by default). Features
are the encoder's global-pooled backbone output (input of ``fc``; a ViT's class token, input of ``head``;
``feature="head"`` uses the normalised ``fc``/``head`` output instead), L2-normalised, computed in eval mode.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader


@torch.no_grad()
def extract_features(encoder: nn.Module, loader: DataLoader, device: torch.device, feature: str = "pool",
                     memory_format: torch.memory_format = torch.contiguous_format,
                     amp_dtype: torch.dtype | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """L2-normalised features and labels of every image in ``loader`` (encoder left in its mode)."""
    captured: list[torch.Tensor] = []
    head = encoder.fc if hasattr(encoder, "fc") else encoder.head  # ResNet: fc; ViT: head (MoCo v3 projector)
    hook = head.register_forward_hook(lambda m, inp, out: captured.append(inp[0])) if feature == "pool" else None
    was_training = encoder.training
    encoder.eval()
    feats, labels = [], []
    try:
        for images, target, _ in loader:
            ctx = torch.autocast(device.type, dtype=amp_dtype) if amp_dtype else contextlib.nullcontext()
            with ctx:
                out = encoder(images.to(device, non_blocking=True).contiguous(memory_format=memory_format))
            f = captured.pop() if hook is not None else out
            feats.append(F.normalize(f.float().flatten(1), dim=1))
            labels.append(target.to(device))
    finally:
        if hook is not None:
            hook.remove()
        encoder.train(was_training)
    return torch.cat(feats), torch.cat(labels)


@torch.no_grad()
def knn_predict(queries: torch.Tensor, bank: torch.Tensor, bank_labels: torch.Tensor, num_classes: int,
                k: int = 200, t: float = 0.1, chunk: int = 256) -> torch.Tensor:
    """Class scores (``len(queries) x num_classes``) by similarity-weighted voting of the top-k neighbours."""
    k = min(k, bank.shape[0])
    scores = []
    for q in queries.split(chunk):
        sim, idx = (q @ bank.T).topk(k, dim=1)
        weights = (sim / t).exp()
        onehot = F.one_hot(bank_labels[idx], num_classes).to(weights.dtype)
        scores.append((onehot * weights.unsqueeze(-1)).sum(dim=1))
    return torch.cat(scores)


def knn_accuracy(encoder: nn.Module, bank_loader: DataLoader, val_loader: DataLoader, num_classes: int,
                 device: torch.device, k: int = 200, t: float = 0.1, feature: str = "pool",
                 memory_format: torch.memory_format = torch.contiguous_format,
                 amp_dtype: torch.dtype | None = None) -> float:
    """Top-1 kNN accuracy (%) of ``val_loader`` against the ``bank_loader`` memory bank."""
    bank, bank_labels = extract_features(encoder, bank_loader, device, feature, memory_format, amp_dtype)
    val, val_labels = extract_features(encoder, val_loader, device, feature, memory_format, amp_dtype)
    pred = knn_predict(val, bank, bank_labels, num_classes, k, t).argmax(dim=1)
    return float((pred == val_labels).float().mean() * 100)
