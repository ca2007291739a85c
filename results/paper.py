"""The papers' published numbers (``results/data/paper_tables.csv``) as reference rows.

The CSV (a copy of the project's ``shared/reference/moco_paper_tables.csv``) holds, one number per line
with its source and table: MoCo v1 (He et al., CVPR 2020) Tables 1-6, Figure 3's printed values, the
momentum ablation, Sec. 4.1's NCE footnote and the appendix tables; MoCo v2 (Chen et al., 2020) Tables
1-3 and its VOC rows. :func:`paper_rows` serves the transfer tables (``results.tables``); the ablation
tables (MoCo v1 Table 3, MoCo v2 Table 1) have their own layout in ``results.ablation``, and the
tables the suite does not measure are rendered by ``results.paper_only``.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import pandas as pd

PAPER_CSV = Path(__file__).resolve().parent / "data" / "paper_tables.csv"
# Same task/backbone/schedule as Table 2, but rendered in their own layout (results.ablation).
ABLATION_TABLES = ("Table 3", "v2 Table 1")
COLUMNS = ("source", "table", "task", "backbone", "schedule", "pretrain", "metric", "value")


def kind_of(label: str) -> str:
    """Pretrain kind of a paper row label: ``random``, ``supervised`` or ``pretrained`` (the papers' MoCo rows)."""
    low = label.lower()
    if low.startswith("random"):
        return "random"
    if low.startswith(("supervised", "super.")):
        return "supervised"
    return "pretrained"


LABEL_METHODS = ("MoCo v3", "BEiT or MAE", "MAE", "BEiT", "DINO")  # rows of the ViT papers name their method


def method_of_source(source: str, kind: str, label: str = "") -> str:
    """The method of a paper row, none for the baselines: for the MoCo papers, the paper's own (``"MoCo v1 (He et al.,
    CVPR 2020)"`` -> ``"MoCo v1"``); for the ViT benchmarks (ViTDet, Li et al. 2021, Detectron2's zoo), whose rows
    are other methods' weights, the method the row's label starts with (``"MAE IN-1K (100 ep)"`` -> ``"MAE"``)."""
    if kind != "pretrained":
        return ""
    if source.startswith("MoCo"):
        return " ".join(source.split()[:2])
    return next((m for m in LABEL_METHODS if label.startswith(m)), label.split(" ")[0] if label else "")


def short_source(source: str, table: str) -> str:
    """``"MoCo v1 (He et al. CVPR 2020)", "Table 2"`` -> ``"MoCo v1 Table 2"`` (and ``"MoCo v2", "v2 Table 1"``
    -> ``"MoCo v2 Table 1"``)."""
    short = " ".join(source.split()[:2])
    if short.endswith(" v2") and table.startswith("v2 "):
        table = table[3:]
    return f"{short} {table}"


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
    sel = df[(df.task == task) & (df.backbone == arch) & (df.schedule == schedule) & ~df.table.isin(ABLATION_TABLES)]
    rows: list[dict] = []
    for (source, table, label), grp in sel.groupby(["source", "table", "pretrain"], sort=False):
        rows.append({"label": str(label), "kind": kind_of(str(label)), "source": str(source),
                     "table": str(table), "metrics": dict(zip(grp.metric, grp.value.astype(float)))})
    return rows
