"""The momentum (key) encoder update shared by MoCo v1/v2 (``pretrain/moco.py``) and v3 (``pretrain/moco_v3.py``)."""

from __future__ import annotations

import torch
import torch.nn as nn


class MomentumUpdated(nn.Module):
    """A model holding a momentum copy of an encoder: :meth:`momentum_update` does
    ``theta_k <- m theta_k + (1 - m) theta_q`` over all parameters, fused over tensors. A subclass sets ``m`` and
    names the two encoders in :meth:`momentum_encoders`."""

    m: float
    _pairs: tuple[list[torch.Tensor], list[torch.Tensor]] | None = None

    def momentum_encoders(self) -> tuple[nn.Module, nn.Module]:
        """(the momentum encoder, the encoder it follows)."""
        raise NotImplementedError

    @torch.no_grad()
    def momentum_update(self) -> None:
        """``theta_k <- m theta_k + (1 - m) theta_q`` over all encoder parameters (fused over tensors)."""
        if self._pairs is None:
            key, query = self.momentum_encoders()
            self._pairs = (list(key.parameters()), list(query.parameters()))
        ks, qs = self._pairs
        torch._foreach_mul_(ks, self.m)
        torch._foreach_add_(ks, qs, alpha=1.0 - self.m)

    def _apply(self, fn, recurse=True):  # .to()/.cuda() replace parameter tensors: drop the cached lists
        self._pairs = None
        return super()._apply(fn, recurse)
