"""The one runner entry: ``python -m benchmarks.run TASK [flags] [-- Detectron2 overrides]``.

``bash benchmarks/run_TASK.sh`` (voc, coco, cityscapes, voc_semseg, coco_keypoints, lvis, densepose, custom) is
this command. The task module (``transfer/tasks/<task>.py``, read through the registry) adds its own flags and
says what one invocation runs; everything else -- rows, trials, seeds, dataset check or tiny data, preflight,
plan, launcher, table -- is the same for every task (``benchmarks/common.py``). A task registered from outside
the suite (``$MOCO_BENCH_TASKS``) runs the same way.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from benchmarks.common import base_parser, parse_with_opts, run_benchmark
from transfer import tasks
from transfer.tasks.base import RunSpec


def parse(name: str, argv: list[str] | None) -> tuple[argparse.Namespace, RunSpec]:
    """The flags of benchmark ``name`` parsed from ``argv`` and the run they describe."""
    bench = tasks.benchmark(name)
    if bench.runner:  # a runner module of its own (your own data: benchmarks/own_data.py)
        module = importlib.import_module(bench.runner)
        args = module.parse_args(argv)
        return args, module.spec(args)
    if bench.spec is None:
        raise SystemExit(f"run.py: error: benchmark {name!r} has no runner")
    parser = base_parser(f"run_{name}.sh", bench.summary, name)
    bench.add_args(parser)
    if bench.train_fraction:
        from benchmarks.sweep_data import add_fraction_args

        add_fraction_args(parser)
    args = parse_with_opts(parser, argv)
    spec = bench.spec(args)
    if spec.train_fraction and getattr(args, "train_fraction", None):
        from benchmarks.sweep_data import fraction_prepare

        spec.prepare = fraction_prepare
    return args, spec


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    names = tasks.benchmarks()
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: python -m benchmarks.run TASK [flags] [-- Detectron2 overrides]   (TASK --help for its flags)\n")
        for name, b in names.items():
            print(f"  {name:<16} {b.summary}")
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in names:
        print(f"run.py: error: unknown task {name!r} (choose from {', '.join(names)})", file=sys.stderr)
        return 2
    args, spec = parse(name, rest)
    return run_benchmark(spec, args)


if __name__ == "__main__":
    sys.exit(main())
