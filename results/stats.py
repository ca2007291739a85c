"""The uncertainty of a difference between two rows: 95% intervals from the t distribution.

Rows of one sweep run the same seeds, so trial ``i`` of one row and trial ``i`` of another share their
data order and head initialisation: their difference is *paired*, and the interval of the mean paired
difference is ``mean(d) ± t(0.975, n-1) · sd(d) / sqrt(n)`` over the ``n`` seeds both rows finished
(none with fewer than 2 pairs). Rows without 2 common seeds fall back to Welch's interval for two
independent samples (Welch-Satterthwaite degrees of freedom). scipy gives the t quantiles.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


def _t_quantile(p: float, df: float) -> float:
    """Student's t quantile (scipy, imported here: it takes ~1.5 s and most tables have no pairs to compare)."""
    from scipy import stats

    return float(stats.t.ppf(p, df))


LEVEL = 0.95


@dataclass(frozen=True)
class Diff:
    """``row − reference`` for one metric: mean difference, its interval and how it was computed."""

    mean: float
    lo: float | None
    hi: float | None
    n: int                 # pairs (paired) or the smaller sample size (welch)
    method: str            # "paired" | "welch" | "none" (fewer than 2 pairs / values)

    @property
    def excludes_zero(self) -> bool | None:
        """True when the interval lies entirely above or below 0; None without an interval."""
        if self.lo is None or self.hi is None:
            return None
        return bool(self.lo > 0 or self.hi < 0)


def _mean_sd(xs: list[float]) -> tuple[float, float]:
    m = sum(xs) / len(xs)
    return m, math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def paired(a: list[float], b: list[float], level: float = LEVEL) -> Diff:
    """Interval of the mean of ``a[i] - b[i]`` (t distribution, n-1 degrees of freedom)."""
    d = [x - y for x, y in zip(a, b, strict=True)]
    if len(d) < 2:
        return Diff(d[0] if d else math.nan, None, None, len(d), "none")
    m, sd = _mean_sd(d)
    half = _t_quantile(0.5 + level / 2, len(d) - 1) * sd / math.sqrt(len(d))
    return Diff(m, m - half, m + half, len(d), "paired")


def welch(a: list[float], b: list[float], level: float = LEVEL) -> Diff:
    """Welch's interval of ``mean(a) - mean(b)`` for two independent samples."""
    if len(a) < 2 or len(b) < 2:
        mean = (sum(a) / len(a) - sum(b) / len(b)) if a and b else math.nan
        return Diff(mean, None, None, min(len(a), len(b)), "none")
    (ma, sa), (mb, sb) = _mean_sd(a), _mean_sd(b)
    va, vb = sa ** 2 / len(a), sb ** 2 / len(b)
    se = math.sqrt(va + vb)
    if se == 0:
        return Diff(ma - mb, ma - mb, ma - mb, min(len(a), len(b)), "welch")
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    half = _t_quantile(0.5 + level / 2, df) * se
    return Diff(ma - mb, ma - mb - half, ma - mb + half, min(len(a), len(b)), "welch")


def difference(row: dict[int, float], ref: dict[int, float], level: float = LEVEL) -> Diff:
    """``row − ref`` from per-seed values: paired over the common seeds when there are 2 or more, else Welch."""
    common = sorted(set(row) & set(ref))
    if len(common) >= 2:
        return paired([row[s] for s in common], [ref[s] for s in common], level)
    return welch(list(row.values()), list(ref.values()), level)
