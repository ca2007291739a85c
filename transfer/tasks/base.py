"""What a downstream task module declares (``transfer/tasks/<task>.py``), read through one registry
(``transfer/tasks/__init__.py``) by the trainer, the runners, the dataset checks, the tiny data, the results and
the doctor.

* :class:`Task`: one record task id (``trial_record.json``'s ``task``): which registered datasets it owns, the
  evaluator that scores it, how the evaluator's output becomes the paper's metric names, and its table's title,
  paper table and metric order.
* :class:`Benchmark`: one runner entry (``python -m benchmarks.run NAME``, ``bash benchmarks/run_NAME.sh``): its
  tasks, its data (where it lives, how it is checked, how its tiny version is written, what the doctor looks
  for), its flags, and what one invocation runs (:class:`RunSpec`: configs, output folders, check options).

Nothing here imports Detectron2 or a later stage: evaluators are built lazily, and a runner hook that needs
runner code is named by a capability (``train_fraction``) and supplied by ``benchmarks/``.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

Metrics = dict[str, float]
CONFIGS = Path(__file__).resolve().parents[1] / "configs"
RGB_FLAVOUR = "_rgb"  # config suffix of torchvision-style (RGB) weights; the base config is the Caffe2/BGR one


@dataclass(frozen=True)
class Task:
    name: str                                        # record task id, e.g. "voc_det"
    dataset_prefixes: tuple[str, ...]                # registered dataset names of this task start with one
    build_evaluator: Callable[[Any, str, str], Any]  # (cfg, dataset name, output folder) -> DatasetEvaluator
    to_metrics: Callable[[dict], Metrics]            # evaluator results -> paper metric names (percent)
    title: str = ""                                  # table title (default: the id)
    paper_table: str = ""                            # e.g. "Table 2"; "" without a paper table
    metrics: tuple[str, ...] = ()                    # table column order (default: as measured, sorted)
    short: str = ""                                  # column group name in a multi-task view (Table 6)
    applies: Callable[[Any], bool] = field(default=lambda cfg: True)  # e.g. needs MODEL.MASK_ON

    def owns(self, dataset_name: str) -> bool:
        return dataset_name.startswith(self.dataset_prefixes)


@dataclass
class RunSpec:
    """What one runner invocation runs, resolved from its flags (the rest is the runner's)."""

    name: str                          # console tag and default output dir, e.g. "coco"
    prog: str                          # e.g. "run_coco.sh"
    table: str                         # paper table the full protocol reproduces, e.g. "Table 5"
    dataset: str                       # what is missing when the real data is absent, e.g. "COCO 2017"
    has_data: Callable[[Path], bool]
    check: Callable[[Path, list[str]], list[str]]  # (root, notes out) -> problem lines of the layout (empty: OK)
    config: Path                       # supervised-flavour config of the full protocol
    run_dir: str                       # output sub-directory of the full protocol, e.g. "R50-FPN-1x"
    tiny_config: Path | None           # None: no embedded default for this variant
    tiny_run_dir: str = ""
    tiny_unavailable: str = ""         # the error when tiny_config is None
    requires: Callable[[], str | None] | None = None   # a missing package, as one line (None: all there)
    adjust_rows: Callable[[list, bool], None] | None = None   # (rows, tiny): e.g. a variant of one row
    # data-derived datasets, schedule and sweep folder (own data, --train-fraction; benchmarks/sweep_data.py)
    prepare: Callable[..., object] | None = None   # (SweepContext) -> SweepSetup
    tiny_data: Callable[[Path, str], Path] | None = None  # (out, tag) -> tiny data root (default: generated)
    banner: str = ""                   # replaces the tiny banner
    location: str = ""                 # where the data is, for messages (default: the dataset root)
    train_fraction: bool = False       # --train-fraction applies (the runner supplies the hook)
    opts: tuple[str, ...] = ()         # Detectron2 overrides of a named variant, before the user's (its own run dir)


@dataclass(frozen=True)
class Benchmark:
    """One downstream task module's entry: a runner, a dataset check, a tiny writer and a doctor line."""

    name: str                                        # "voc": run_voc.sh, `benchmarks.run voc`, `dataset_check voc`
    summary: str                                     # one line: what it measures (help, doctor)
    tasks: tuple[Task, ...]
    dataset: str                                     # the real data, e.g. "VOC2007/VOC2012"
    has_data: Callable[[Path], bool]
    check: Callable[..., list[str]] | None           # (root, notes=None, **options) -> problem lines; None: per run
    needs: tuple[str, ...] = ()                      # doctor: files/folders under the datasets root
    add_args: Callable[[argparse.ArgumentParser], None] = field(default=lambda p: None)
    spec: Callable[[argparse.Namespace], RunSpec] | None = None   # flags -> what to run (None: no runner)
    check_options: tuple[str, ...] = ()              # `dataset_check NAME --task X` choices, if any
    write_tiny: Callable[[Path, int, dict[str, int]], str] | None = None  # (root, seed, sizes) -> summary line
    tiny_sizes: dict[str, int] = field(default_factory=dict)    # image counts of its tiny layout (per split)
    tiny_dirs: tuple[str, ...] = ()                  # top-level folders its tiny writer creates
    train_fraction: bool = False                     # takes --train-fraction
    runner: str | None = None                        # a runner module of its own (its flags and spec), by name
    register_datasets: Callable[[Path], None] | None = None  # datasets Detectron2 does not register itself
    docs: str = "docs/benchmarks.md"
