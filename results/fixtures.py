"""Synthetic trial records (tests, docs): valid records written with the real writer.

``paper_trials`` turns a published table into N identical trials per row, which must give back the
paper's own numbers and gaps.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from results.paper import kind_of, load_paper_table
from core.records import write_record


def fake_sha(label: str) -> str:
    """A stable stand-in weights hash for ``label``."""
    return hashlib.sha256(label.encode()).hexdigest()


def make_record(task: str = "voc_det", arch: str = "R50-C4", schedule: str = "24k", label: str = "MoCo IN-1M",
                kind: str | None = None, sha256: str | None = "auto", trial: int = 0, trials_requested: int = 5,
                metrics: dict[str, float] | None = None, status: str = "finished", error: str | None = None,
                tiny: bool = False) -> dict[str, Any]:
    """One record dict (without ``schema``; :func:`core.records.write_record` adds it)."""
    kind = kind or kind_of(label)
    sha = (None if kind == "random" else fake_sha(label)) if sha256 == "auto" else sha256
    return {"task": task, "arch": arch, "schedule": schedule,
            "pretrain": {"label": label, "kind": kind, "weights": None if sha is None else f"/weights/{label}.pkl",
                         "sha256": sha},
            "trial": trial, "seed": 1000 + trial, "trials_requested": trials_requested, "status": status,
            "error": error, "metrics": {} if status == "failed" else dict(metrics or {}), "tiny": tiny}


def write_trial(root: str | os.PathLike, record: dict[str, Any], log: list[dict] | None = None) -> Path:
    """Write ``record`` under ``root/<task>/<arch>/<schedule>/<label>-<sha8>/trial<k>``; plus a metrics log."""
    pre = record["pretrain"]
    name = f"{pre['label']}-{(pre.get('sha256') or 'none')[:8]}".replace(" ", "_").replace("/", "_")
    out = Path(root, record["task"], record["arch"], record["schedule"], name, f"trial{record['trial']}")
    write_record(out, record)
    if log is not None:
        (out / "metrics.json").write_text("".join(json.dumps(line) + "\n" for line in log))
    return out


def paper_trials(table: str = "Table 2", trials: int = 5, source_prefix: str = "MoCo v1") -> list[dict[str, Any]]:
    """Records reproducing a published table: ``trials`` identical finished trials per row."""
    df = load_paper_table()
    df = df[(df.table == table) & df.source.str.startswith(source_prefix)]
    out = []
    for (task, arch, schedule, label), grp in df.groupby(["task", "backbone", "schedule", "pretrain"], sort=False):
        metrics = dict(zip(grp.metric, grp.value.astype(float)))
        for t in range(trials):
            out.append(make_record(task, arch, schedule, label, trial=t, trials_requested=trials, metrics=metrics))
    return out
