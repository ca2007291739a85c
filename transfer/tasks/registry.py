"""The registry itself (the package ``transfer.tasks`` re-exports it and registers the suite's tasks)."""


from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

from transfer.tasks.base import Benchmark, Metrics, Task

EXTRA_ENV = "MOCO_BENCH_TASKS"
_TASKS: dict[str, Task] = {}
_BENCHMARKS: dict[str, Benchmark] = {}


def register_task(t: Task) -> Task:
    """Add a task without a runner (e.g. box-only COCO); a later registration of a name replaces the earlier."""
    _TASKS[t.name] = t
    return t


def register(b: Benchmark) -> Benchmark:
    """Add a benchmark and its tasks (a later registration of a name replaces the earlier one, so a project may
    override the suite's evaluator for a task)."""
    _BENCHMARKS[b.name] = b
    for t in b.tasks:
        register_task(t)
    return b


def benchmarks() -> dict[str, Benchmark]:
    """Every registered benchmark, in registration order (the tiny writers run in this order)."""
    _load_extra()
    return dict(_BENCHMARKS)


def benchmark(name: str) -> Benchmark:
    b = benchmarks().get(name)
    if b is None:
        raise KeyError(f"unknown benchmark {name!r} (registered: {', '.join(benchmarks())})")
    return b


def tasks() -> dict[str, Task]:
    _load_extra()
    return dict(_TASKS)


def task(name: str) -> Task | None:
    return tasks().get(name)


def register_datasets(root: str | Path) -> None:
    """Register every task's own datasets under the datasets ``root`` (the trainer does this before it builds
    anything; Detectron2's builtin datasets need nothing)."""
    for b in benchmarks().values():
        if b.register_datasets is not None:
            b.register_datasets(Path(root))


def task_of(cfg: Any) -> str:
    """The task whose datasets are all of ``cfg.DATASETS.TRAIN`` and ``TEST`` ("custom" if none)."""
    names = list(cfg.DATASETS.TRAIN) + list(cfg.DATASETS.TEST)
    for t in tasks().values():
        if names and all(t.owns(n) for n in names) and t.applies(cfg):
            return t.name
    return "custom"


def evaluator_for(cfg: Any, dataset_name: str, output_folder: str) -> Any:
    """The paper's evaluator for a registered dataset."""
    for t in tasks().values():
        if t.owns(dataset_name) and t.applies(cfg):
            return t.build_evaluator(cfg, dataset_name, output_folder)
    raise ValueError(f"no evaluator configured for dataset {dataset_name!r} (register a Task: transfer/tasks/)")


def paper_metrics(task_name: str, results: dict) -> Metrics:
    """Map evaluator output to the paper's metric names (see core/records.py)."""
    t = task(task_name)
    if t is None:
        raise ValueError(f"unknown task {task_name!r}")
    return t.to_metrics(results)


_loaded_extra: set[str] = set()


def _load_extra() -> None:
    """Import the task modules named in ``$MOCO_BENCH_TASKS`` (once each)."""
    for item in filter(None, os.environ.get(EXTRA_ENV, "").split(os.pathsep)):
        if item in _loaded_extra:
            continue
        _loaded_extra.add(item)
        if item.endswith(".py"):
            path = Path(item).expanduser().resolve()
            name = f"moco_bench_task_{path.stem}"
            spec = importlib.util.spec_from_file_location(name, path)
            if spec is None or spec.loader is None:
                raise ImportError(f"${EXTRA_ENV}: cannot load {path}")
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
        else:
            importlib.import_module(item)
