"""Scale-out pieces of a sweep: the batch rule for fewer or smaller GPUs, the sweep plan that
``benchmarks/status.py`` reads, and ``--launcher slurm`` submission (``benchmarks/launcher.py``)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from benchmarks.launcher import (
    LaunchError,
    SlurmSpec,
    default_cluster,
    submit_trials,
    unfinished_trials,
    wait_for_trials,
)
from benchmarks.runner import print_table


def batch_overrides(config: Path, args: argparse.Namespace, tag: str) -> list[str]:
    """Detectron2 overrides that keep the paper's batch on the GPUs a trial gets (gradient accumulation), or
    scale the schedule with the linear rule (``--scale-schedule``); [] when the batch fits as it is.

    The linear rule is the one the MoCo authors gave for fewer GPUs (and Detectron2's
    ``REFERENCE_WORLD_SIZE`` applies): batch x f -> lr x f, iterations, steps, warm-up and checkpoint period
    / f. Batch-norm statistics then come from fewer images, so neither is fully equivalent to the paper;
    both show in the fingerprint and in the table's footnote.
    """
    if args.ims_per_gpu is None:
        if args.scale_schedule:
            raise ValueError("--scale-schedule needs --ims-per-gpu (the images per GPU the memory allows)")
        return []
    from transfer.config import load_cfg

    cfg = load_cfg(str(config), list(args.opts))
    batch, gpus = cfg.SOLVER.IMS_PER_BATCH, max(1, args.gpus) * max(1, args.nodes)
    if batch % gpus:
        raise ValueError(f"the batch of {batch} images does not split over {gpus} GPUs")
    per_gpu = batch // gpus
    if args.ims_per_gpu >= per_gpu:
        print(f"[{tag}] batch: {batch} images on {gpus} GPU(s), {per_gpu} per GPU (fits --ims-per-gpu "
              f"{args.ims_per_gpu})")
        return []
    if not args.scale_schedule:
        if per_gpu % args.ims_per_gpu:
            raise ValueError(f"--ims-per-gpu {args.ims_per_gpu} does not divide the {per_gpu} images per GPU of the "
                             f"paper's batch {batch} on {gpus} GPU(s)")
        steps = per_gpu // args.ims_per_gpu
        print(f"[{tag}] batch: the paper's {batch} images on {gpus} GPU(s) as {steps} accumulation steps of "
              f"{args.ims_per_gpu} per GPU (BN statistics over {args.ims_per_gpu * gpus} images: recorded, "
              "footnoted)")
        return ["SOLVER.ACCUMULATE_STEPS", str(steps)]
    new = args.ims_per_gpu * gpus
    f = new / batch
    it = lambda n: str(max(1, round(n / f)))  # noqa: E731
    out = ["SOLVER.IMS_PER_BATCH", str(new), "SOLVER.BASE_LR", f"{cfg.SOLVER.BASE_LR * f:g}",
           "SOLVER.MAX_ITER", it(cfg.SOLVER.MAX_ITER), "SOLVER.STEPS", f"({','.join(it(x) for x in cfg.SOLVER.STEPS)},)",
           "SOLVER.WARMUP_ITERS", it(cfg.SOLVER.WARMUP_ITERS), "SOLVER.CHECKPOINT_PERIOD", it(cfg.SOLVER.CHECKPOINT_PERIOD)]
    if cfg.TEST.EVAL_PERIOD > 0:
        out += ["TEST.EVAL_PERIOD", it(cfg.TEST.EVAL_PERIOD)]
    print(f"[{tag}] batch: --scale-schedule: batch {batch} -> {new}, lr x{f:g}, iterations/steps/warm-up x{1 / f:g} "
          "(the linear rule; BN statistics change too: recorded, footnoted)")
    return out


def write_sweep(folder: Path, bench, args: argparse.Namespace, plan: list, trials: int) -> None:
    """``sweep.json``: every planned trial, for ``python -m benchmarks.status`` (trials not started have no folder)."""
    from core.atomic import write_atomic

    doc = {"benchmark": bench.name, "runner": bench.prog, "launcher": args.launcher,
           "parallel_trials": args.parallel_trials, "trials_per_row": trials,
           "array_parallelism": args.slurm_array_parallelism if args.launcher == "slurm" else None,
           "trials": [{"row": t.row.label, "trial": t.index, "seed": t.seed, "dir": str(t.output)} for t in plan]}
    try:
        write_atomic(folder / "sweep.json", lambda tmp: tmp.write_text(json.dumps(doc, indent=1)))
    except OSError:
        pass  # the status view only; the preflight already checked the folder


def submit(bench, args: argparse.Namespace, plan: list, trials: int, env: dict, extra: list[str], out: Path,
           tag: str, tiny: bool, banner: str) -> int:
    """``--launcher slurm``: one job per trial (an array). With ``--wait`` (or a local cluster) wait until no job
    of the sweep is queued or running (a requeued job is waited for), print one line per trial that did not
    finish, the table, and exit 1 if any did not finish."""
    spec = SlurmSpec.from_args(args, gpus_per_node=args.gpus, name=f"{bench.name}-bench")
    folder = Path(args.job_dir) if args.job_dir else out / "slurm"
    cluster = args.cluster or default_cluster()
    run_kwargs = dict(trials_requested=trials, env=env, extra=extra, stall_s=args.stall_limit_min * 60)
    try:
        jobs = submit_trials(plan, spec, folder.resolve(), cluster, run_kwargs,
                             log=lambda line: print(f"[{tag}] {line}"))
    except LaunchError as e:
        print(f"{bench.prog}: error: {e}", file=sys.stderr)
        return 2
    if cluster == "slurm" and not args.wait:
        print(f"[{tag}] {len(jobs)} job(s) submitted; follow them with `python -m benchmarks.status {out} --watch`, "
              f"tables any time with `python -m results --runs {out}`")
        return 0
    print(f"[{tag}] waiting for the jobs of {len(plan)} trial(s) ...", flush=True)
    states = wait_for_trials(plan, jobs, cluster)
    if states:
        print(f"[{tag}] no job queued or running: " + ", ".join(f"{j} {s.describe()}" for j, s in states.items()))
    problems = unfinished_trials(plan, states)
    for line in problems:
        print(f"[{tag}] {line}")
    if tiny:
        print(f"[{tag}] {banner}")
    rc = print_table(out, with_paper=args.with_paper)
    return 1 if problems else rc
