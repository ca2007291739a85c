"""The papers' published numbers (``results/data/paper_tables.csv``) as reference rows.

The CSV holds MoCo v1 (He et al., CVPR 2020) Tables 2, 5 and 6 (with appendix A.4's LVIS BN ablation)
and the MoCo v2 (Chen et al., 2020) VOC rows, one number per line with its source and table. MoCo v1 Table 3 (contrastive-loss
mechanisms) and Table 4 (previous methods on VOC07) are not included: their numbers could not be
sourced as text, and numbers are never typed in from memory.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import pandas as pd

PAPER_CSV = Path(__file__).resolve().parent / "data" / "paper_tables.csv"
COLUMNS = ("source", "table", "task", "backbone", "schedule", "pretrain", "metric", "value")


def kind_of(label: str) -> str:
    """Pretrain kind of a paper row label: ``random``, ``supervised`` or ``moco``."""
    low = label.lower()
    if low.startswith("random"):
        return "random"
    if low.startswith(("supervised", "super.")):
        return "supervised"
    return "moco"


def short_source(source: str, table: str) -> str:
    """``"MoCo v1 (He et al. CVPR 2020)", "Table 2"`` -> ``"MoCo v1 Table 2"``."""
    return f"{' '.join(source.split()[:2])} {table}"


@lru_cache(maxsize=4)
def _load(path: str) -> pd.DataFrame:
    df = pd.read_csv(path, dtype={"value": float})
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: missing columns {missing}")
    return df


def load_paper_table(path: str | os.PathLike | None = None) -> pd.DataFrame:
    """All published numbers, one row per (source, table, task, backbone, schedule, pretrain, metric)."""
    return _load(str(path or PAPER_CSV)).copy()


def paper_rows(task: str, arch: str, schedule: str, path: str | os.PathLike | None = None) -> list[dict]:
    """Reference rows for one (task, arch, schedule): ``label, kind, source, table, metrics``, in CSV order."""
    df = load_paper_table(path)
    sel = df[(df.task == task) & (df.backbone == arch) & (df.schedule == schedule)]
    rows: list[dict] = []
    for (source, table, label), grp in sel.groupby(["source", "table", "pretrain"], sort=False):
        rows.append({"label": str(label), "kind": kind_of(str(label)), "source": str(source),
                     "table": str(table), "metrics": dict(zip(grp.metric, grp.value.astype(float)))})
    return rows
