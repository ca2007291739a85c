"""Validate a benchmark's on-disk dataset layout before training: the check its task module declares
(``transfer/tasks/<task>.py``; shared pieces in ``transfer/tasks/checks.py``), read through the task registry.

Each check returns a list of problem lines (empty means OK); each names the offending file and what to do about
it, at most ``MAX_PER_KIND`` lines per kind of problem followed by a count of the rest, and fills a ``notes``
list with facts worth knowing that are not errors. What is checked is what Detectron2's loaders and the
evaluators read: the files each split lists, every annotation field they parse and every image (present,
complete, of the size the annotations state). CLI::

    python -m benchmarks.dataset_check voc|coco|cityscapes|voc_semseg|coco_keypoints|lvis|densepose \\
        [--datasets DIR] [--task sem_seg] [--no-masks]

``--datasets`` (the runners' flag too) defaults to ``$DETECTRON2_DATASETS`` (or ``datasets``), as in Detectron2.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Sequence

from transfer import tasks
from transfer.tasks.checks import MAX_PER_KIND, DatasetLayoutError, Problems, default_root  # noqa: F401  (the API)
from core.cli import ArgumentParser


def checkable() -> dict[str, Any]:
    """Benchmarks whose data sits under the datasets root, with their checks."""
    return {name: b for name, b in tasks.benchmarks().items() if b.check is not None}


def check(dataset: str, root: Path | str | None = None, **kwargs: Any) -> list[str]:
    """Run the check of benchmark ``dataset`` under ``root``."""
    benches = checkable()
    if dataset not in benches:
        raise ValueError(f"dataset must be one of {sorted(benches)}, not {dataset!r}")
    return benches[dataset].check(default_root() if root is None else root, **kwargs)


def require_layout(dataset: str, root: Path | str | None = None, **kwargs: Any) -> None:
    """Raise :class:`DatasetLayoutError` listing the problems, if any (for benchmark runners)."""
    problems = check(dataset, root, **kwargs)
    if problems:
        where = default_root() if root is None else root
        raise DatasetLayoutError(f"{dataset} layout under {where} has problems:\n  " + "\n  ".join(problems))


def main(argv: Sequence[str] | None = None) -> int:
    benches = checkable()
    options = sorted({o for b in benches.values() for o in b.check_options})
    parser = ArgumentParser(description="Validate a benchmark's dataset layout before training.")
    parser.add_argument("dataset", choices=sorted(benches))
    parser.add_argument("--datasets", "--root", dest="root", type=Path, default=None,
                        help="dataset root (default: $DETECTRON2_DATASETS or 'datasets')")
    parser.add_argument("--task", choices=options, default=None,
                        help="for a benchmark with several ground truths (cityscapes: instance_seg or sem_seg)")
    parser.add_argument("--no-masks", action="store_true", help="coco only: boxes suffice")
    args = parser.parse_args(argv)
    bench = benches[args.dataset]
    root = default_root() if args.root is None else args.root
    notes: list[str] = []
    kwargs: dict[str, Any] = {"notes": notes}
    if args.task is not None:
        if args.task not in bench.check_options:
            parser.error(f"--task {args.task} is not an option of {args.dataset} "
                         f"({', '.join(bench.check_options) or 'it has none'})")
        kwargs.update(task=args.task)
    if args.no_masks:
        if args.dataset != "coco":
            parser.error("--no-masks is for coco")
        kwargs.update(need_masks=False)
    problems = check(args.dataset, root, **kwargs)
    for line in problems:
        print(line)
    for line in notes:
        print(f"note: {line}")
    if problems:
        print(f"{args.dataset}: layout under {root} has problems (see above)", file=sys.stderr)
        return 1
    print(f"{args.dataset}: layout under {root} OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
