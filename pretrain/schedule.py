"""Per-epoch learning-rate schedules of the reference scripts (set at the start of each epoch)."""

from __future__ import annotations

import math


def epoch_lr(base: float, epoch: int, epochs: int, schedule: list[int], cos: bool = False) -> float:
    """Cosine decay ``base * (1 + cos(pi * epoch / epochs)) / 2`` or ``base * 0.1^(milestones passed)``."""
    if cos:
        return base * 0.5 * (1.0 + math.cos(math.pi * epoch / epochs))
    return base * 0.1 ** sum(epoch >= m for m in schedule)


def warmup_cosine_lr(base: float, progress: float, epochs: int, warmup_epochs: int) -> float:
    """MoCo v3's per-iteration lr at ``progress`` epochs (fractional): linear warm-up from 0 over
    ``warmup_epochs``, then a half-cycle cosine to 0 at ``epochs`` (moco-v3 main_moco.py adjust_learning_rate)."""
    if progress < warmup_epochs:
        return base * progress / warmup_epochs
    return base * 0.5 * (1.0 + math.cos(math.pi * (progress - warmup_epochs) / (epochs - warmup_epochs)))


def cosine_momentum(m: float, progress: float, epochs: int) -> float:
    """Momentum ``1 - (1 - m) * (1 + cos(pi * progress / epochs)) / 2``: ``m`` at the start, 1 at the end
    (moco-v3 ``--moco-m-cos``, main_moco.py adjust_moco_momentum; paper App. A for R-50)."""
    return 1.0 - 0.5 * (1.0 + math.cos(math.pi * progress / epochs)) * (1.0 - m)
