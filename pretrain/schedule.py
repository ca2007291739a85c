"""Per-epoch learning-rate schedules of the reference scripts (set at the start of each epoch)."""

from __future__ import annotations

import math


def epoch_lr(base: float, epoch: int, epochs: int, schedule: list[int], cos: bool = False) -> float:
    """Cosine decay ``base * (1 + cos(pi * epoch / epochs)) / 2`` or ``base * 0.1^(milestones passed)``."""
    if cos:
        return base * 0.5 * (1.0 + math.cos(math.pi * epoch / epochs))
    return base * 0.1 ** sum(epoch >= m for m in schedule)
