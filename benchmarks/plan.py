"""A sweep's plan: its rows (one pre-training each), its trials (row x seed) and how a trial is launched."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Row:
    """One pre-train row of a benchmark table (supervised, random init, and any number of pretrained backbones)."""

    label: str
    kind: str  # pretrained | supervised | random
    config: Path
    weights: str = ""  # .pkl / .pth / detectron2:// URL; "" for random init
    input_format: str = ""  # RGB | BGR, decided from the weights (transfer/weights.py)
    input_reason: str = ""
    checkpoint_bytes: int = 0  # size of one Detectron2 checkpoint of this row's model (0: unknown)
    pending: str = ""  # why the weights do not exist yet (e.g. made by the tiny pretraining)
    opts: tuple[str, ...] = ()  # this row's config overrides (e.g. the FAIR weights' std and stride)
    method: str = ""  # what made the weights, read from their layout (transfer/methods.py); "" for the baselines
    method_reason: str = ""
    order: int | None = None  # the row's place in the sweep, recorded: tables keep the order rows were given in
    origin: str = ""  # where the row was given ("--weights 2", "backbones.yaml entry 1"); "" for the runner's own rows
    prefix: str | None = None  # the encoder's [PATH:]PREFIX given with the weights (transfer/layouts.py otherwise)


@dataclass
class Launch:
    """How one trial's ``train_net.py`` starts: GPUs, machines (multi-node) and environment additions."""

    gpus: int = 1
    machines: int = 1
    machine_rank: int = 0
    dist_url: str = "auto"
    env: dict[str, str] = field(default_factory=dict)  # e.g. CUDA_VISIBLE_DEVICES, OMP_NUM_THREADS per slot

    def args(self) -> list[str]:
        out = ["--num-gpus", str(max(self.gpus, 1))]
        if self.machines > 1:
            out += ["--num-machines", str(self.machines), "--machine-rank", str(self.machine_rank),
                    "--dist-url", self.dist_url]
        return out


@dataclass
class Trial:
    row: Row
    index: int
    seed: int
    output: Path
    opts: list[str] = field(default_factory=list)
    identity: dict | None = None  # what defines the trial (transfer/identity.py); None: not compared


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower() or "row"


def plan_trials(rows: list[Row], trials: int, output: Path, arch: str, base_seed: int, opts: list[str]) -> list[Trial]:
    """Trials of every row, seeds ``base_seed + index`` (the same seeds for every row)."""
    return [Trial(row, i, base_seed + i, output / arch / slug(row.label) / f"trial{i}", list(opts))
            for row in rows for i in range(trials)]
