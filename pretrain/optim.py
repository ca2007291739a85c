"""The pretraining optimisers: SGD (MoCo v1/v2), LARS (MoCo v3 ResNet) and AdamW (MoCo v3 ViT).

LARS as in facebookresearch/moco-v3 ``moco/optimizer.py`` (You et al. 2017): for tensors of more than one
dimension the weight decay is added to the gradient and the update scaled by
``trust * ||w|| / ||g + wd w||`` (1 where either norm is 0); biases and normalisation parameters get neither
decay nor scaling; then heavy-ball momentum ``mu <- momentum mu + g``, ``w <- w - lr mu``.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from pretrain.speed import sgd

OPTIMIZERS = ("sgd", "lars", "adamw")


class LARS(torch.optim.Optimizer):
    """Layer-wise adaptive rate scaling with momentum; 1-D parameters are neither decayed nor scaled."""

    def __init__(self, params: Iterable[torch.nn.Parameter], lr: float = 0.0, weight_decay: float = 0.0,
                 momentum: float = 0.9, trust_coefficient: float = 0.001) -> None:
        super().__init__(params, dict(lr=lr, weight_decay=weight_decay, momentum=momentum,
                                      trust_coefficient=trust_coefficient))

    @torch.no_grad()
    def step(self, closure=None):  # noqa: ANN001 - torch's signature
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                if p.ndim > 1:
                    g = g.add(p, alpha=group["weight_decay"])
                    w_norm, g_norm = torch.linalg.vector_norm(p), torch.linalg.vector_norm(g)
                    ratio = group["trust_coefficient"] * w_norm / g_norm
                    g = g * torch.where((w_norm > 0) & (g_norm > 0), ratio, torch.ones_like(ratio))
                state = self.state[p]
                if "mu" not in state:
                    state["mu"] = torch.zeros_like(p)
                state["mu"].mul_(group["momentum"]).add_(g)
                p.add_(state["mu"], alpha=-group["lr"])
        return loss


def build_optimizer(name: str, params: Iterable[torch.nn.Parameter], lr: float, momentum: float,
                    weight_decay: float, device: torch.device) -> torch.optim.Optimizer:
    """``sgd`` (momentum, fused/foreach), ``lars`` or ``adamw`` (torch's defaults: betas 0.9/0.999, eps 1e-8)."""
    if name == "sgd":
        return sgd(params, lr, momentum, weight_decay, device)
    if name == "lars":
        return LARS(params, lr, weight_decay, momentum)
    if name == "adamw":
        fast = {"fused": True} if device.type == "cuda" else {"foreach": True}
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, **fast)
    raise ValueError(f"unknown optimizer {name!r} (choose from {', '.join(OPTIMIZERS)})")
