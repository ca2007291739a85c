"""The downstream tasks, one module each, read through this one registry.

A task module (``voc``, ``coco``, ``cityscapes``, ``voc_semseg``, ``coco_keypoints``, ``lvis``, ``densepose``,
``custom``) holds all it knows: dataset registration, dataset check, tiny-data writer, evaluator and metric names,
table title and metric order, configs, runner flags and row rules (``transfer/tasks/base.py``). The trainer
(:func:`task_of`, :func:`evaluator_for`, :func:`paper_metrics`), the runners (``benchmarks/run.py``), the checks
(``benchmarks/dataset_check.py``), the tiny data (``benchmarks/tiny_data.py``), ``results`` and the doctor read
nothing else.

Adding a task = one module calling :func:`register` + its configs + its paper rows. A module outside the suite is
loaded when named in ``$MOCO_BENCH_TASKS`` (``os.pathsep``-separated module names or ``.py`` paths): the runners
pass the variable on to their trials, so a project's task runs like a built-in one.
"""

from transfer.tasks.base import Benchmark, Metrics, RunSpec, Task
from transfer.tasks.registry import (EXTRA_ENV, benchmark, benchmarks, evaluator_for, paper_metrics, register,
                                     register_datasets, register_task, task, task_of, tasks)

__all__ = ["Benchmark", "Metrics", "RunSpec", "Task", "register", "register_task", "benchmarks", "benchmark",
           "tasks", "task", "task_of", "evaluator_for", "paper_metrics", "register_datasets", "EXTRA_ENV"]

# The suite's tasks, in the order their tiny data is written (voc_semseg reads VOC2012, lvis the COCO images).
from transfer.tasks import voc, coco, cityscapes, voc_semseg, coco_keypoints, lvis, densepose, custom  # noqa: E402,F401
