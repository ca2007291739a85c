"""What a sweep will cost before it runs: GPU-hours and wall-clock per row and in total, from measured s/iter.

The figures are ``docs/gpu-check/finetune-figures.csv``: this suite's own ``make gpu-check`` measurements (by GPU
model and precision, each naming its report) and Detectron2's model-zoo training speeds (MODEL_ZOO.md: 8 V100 with
NVLink, fp32). A figure is seconds per iteration at its batch on its GPUs, so one image costs
``s_per_iter x gpus / batch`` GPU-seconds; a trial costs that x the row's ``SOLVER.IMS_PER_BATCH`` x
``SOLVER.MAX_ITER``. The figure picked for a row: this suite's for the GPU this machine has, in the row's precision;
else Detectron2's V100 figure (fp32 only); else, on a machine without a GPU, this suite's figure on the GPU it was
measured on. The wall-clock assumes the trial's GPUs scale linearly (evaluation excluded); none found:
"no measured figure for this config".
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from benchmarks.plan import Row

FIGURES = Path(__file__).resolve().parent.parent / "docs" / "gpu-check" / "finetune-figures.csv"
NO_FIGURE = "no measured figure for this config"


@dataclass(frozen=True)
class Figure:
    """One measured training speed: ``s_per_iter`` at ``batch`` images per iteration on ``gpus`` x ``gpu``."""

    gpu: str
    gpus: int
    precision: str  # fp32 | tf32 | amp
    task: str
    arch: str
    batch: int
    s_per_iter: float
    source: str

    @property
    def gpu_s_per_image(self) -> float:
        return self.s_per_iter * self.gpus / self.batch

    def describe(self) -> str:
        return (f"{self.s_per_iter:g} s/iter at batch {self.batch} on {self.gpus} x {self.gpu}, {self.precision}: "
                f"{self.source}")


@dataclass(frozen=True)
class RowCost:
    """One row's estimate: ``gpu_hours`` per trial (None without a figure) and the figure used, or why none."""

    label: str
    trials: int
    gpu_hours_per_trial: float | None
    figure: Figure | None
    why: str = ""

    @property
    def gpu_hours(self) -> float | None:
        return None if self.gpu_hours_per_trial is None else self.gpu_hours_per_trial * self.trials


def load_figures(path: str | Path = FIGURES) -> list[Figure]:
    """The figures file, one :class:`Figure` per line."""
    with open(path, newline="") as f:
        return [Figure(r["gpu"], int(r["gpus"]), r["precision"], r["task"], r["arch"], int(r["batch"]),
                       float(r["s_per_iter"]), r["source"]) for r in csv.DictReader(f)]


def local_gpu() -> str | None:
    """The name of this machine's first CUDA GPU (``NVIDIA H200``), or None."""
    try:
        import torch

        return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except Exception:  # noqa: BLE001  (a broken driver plans like no GPU)
        return None


def _same_gpu(model: str, name: str) -> bool:
    """``NVIDIA H200`` names the GPU ``NVIDIA H200 NVL``/``NVIDIA H200``; ``NVIDIA V100`` names ``Tesla V100-SXM2``."""
    key = model.replace("NVIDIA ", "").lower()
    return key in name.lower()


def pick_figure(figures: Iterable[Figure], task: str, arch: str, precision: str, gpu: str | None) -> Figure | None:
    """The figure for (task, arch, precision): see the module's order."""
    same = [f for f in figures if f.task == task and f.arch == arch]
    ours = [f for f in same if not f.source.startswith("Detectron2") and f.precision == precision]
    zoo = [f for f in same if f.source.startswith("Detectron2") and f.precision == precision]
    if gpu is not None:
        mine = [f for f in ours if _same_gpu(f.gpu, gpu)]
        return (mine or zoo or [None])[0]
    return (ours or zoo or [None])[0]


def precision_of(cfg) -> str:
    """``amp`` (Detectron2 AMP: fp16 autocast and TF32), ``tf32`` or ``fp32`` (the paper's), from the config."""
    if bool(cfg.SOLVER.AMP.ENABLED):
        return "amp"
    return "tf32" if bool(getattr(cfg.SOLVER, "TF32", False)) else "fp32"


def row_cost(row: Row, trials: int, opts: list[str], figures: list[Figure], gpu: str | None) -> RowCost:
    """The estimate for one row from its config (with the sweep's overrides)."""
    from transfer.config import arch_of, load_cfg
    from transfer.tasks.registry import task_of

    try:
        cfg = load_cfg(str(row.config), [*row.opts, *opts, "MODEL.DEVICE", "cpu"])
    except Exception as e:  # noqa: BLE001  (e.g. DensePose without its project: no estimate, one reason)
        return RowCost(row.label, trials, None, None, f"{NO_FIGURE} (config not readable here: "
                                                      f"{str(e).splitlines()[0][:80] if str(e) else type(e).__name__})")
    task, arch, precision = task_of(cfg), arch_of(cfg), precision_of(cfg)
    fig = pick_figure(figures, task, arch, precision, gpu)
    if fig is None:
        return RowCost(row.label, trials, None, None, f"{NO_FIGURE} ({task}, {arch}, {precision})")
    seconds = fig.gpu_s_per_image * int(cfg.SOLVER.IMS_PER_BATCH) * int(cfg.SOLVER.MAX_ITER)
    return RowCost(row.label, trials, seconds / 3600, fig)


def _hours(h: float) -> str:
    return f"{h:.1f} h" + (f" ({h / 24:.1f} days)" if h >= 48 else "")


def cost_lines(costs: list[RowCost], gpus: int, parallel: int = 1, gpu: str | None = None) -> list[str]:
    """The plan's cost lines: one per row, a total, and the figures used."""
    gpus, parallel = max(gpus, 1), max(parallel, 1)
    lines = []
    for c in costs:
        if c.gpu_hours_per_trial is None:
            lines.append(f"cost {c.label}: {c.why}")
            continue
        lines.append(f"cost {c.label}: {c.gpu_hours:.1f} GPU-hours ({c.trials} x {c.gpu_hours_per_trial:.1f}), "
                     f"wall-clock {_hours(c.gpu_hours / gpus)} on {gpus} GPU(s) per trial"
                     + (f", {parallel} trials at once" if parallel > 1 else ""))
    known = [c for c in costs if c.gpu_hours is not None]
    if known:
        total = sum(c.gpu_hours or 0.0 for c in known)
        lines.append(f"cost total: {total:.1f} GPU-hours ({total / 24:.1f} GPU-days), wall-clock "
                     f"{_hours(total / gpus / parallel)}" + (f"; {len(costs) - len(known)} row(s) without a figure"
                                                             if len(known) < len(costs) else "")
                     + " (training only, linear scaling across GPUs assumed)")
        for fig in dict.fromkeys(c.figure for c in known):
            if fig is not None:
                lines.append(f"cost figure: {fig.describe()}")
        if gpu is None:
            lines.append("cost: no GPU on this machine; the figures are of the GPUs named")
    return lines


def plan_cost(rows: list[Row], trials: int, opts: list[str], gpus: int, parallel: int = 1,
              figures: list[Figure] | None = None, gpu: str | None = None, detect: bool = True) -> list[str]:
    """The cost lines of a plan (``--dry-run`` and every plan print them)."""
    figures = load_figures() if figures is None else figures
    gpu = local_gpu() if gpu is None and detect else gpu
    return cost_lines([row_cost(r, trials, opts, figures, gpu) for r in rows], gpus, parallel, gpu)
