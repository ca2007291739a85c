"""Submit MoCo pretraining to SLURM through submitit: one task per GPU, requeued on preemption/timeout.

    python -m pretrain.slurm --nodes 4 --gpus-per-node 8 --partition learnfair --timeout-min 4320 \\
        --job-dir /checkpoint/$USER/moco/%j -- --preset v2 --output-dir /checkpoint/$USER/moco/v2 /datasets/imagenet

Everything after ``--`` is passed to ``pretrain/main_moco.py`` (``--output-dir`` must be on shared
storage). Each task exports RANK/WORLD_SIZE/LOCAL_RANK/MASTER_ADDR/MASTER_PORT (submitit's
``TorchDistributedEnvironment``) and runs ``main_moco.main``; ``--resume auto`` is added unless a
``--resume`` is given, so a requeued job continues from the newest checkpoint. ``--cluster local`` /
``debug`` run the same job on this machine (for trying it out).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import submitit


class MocoJob:
    """The callable submitit pickles: runs main_moco with ``argv``; ``checkpoint()`` requeues it."""

    def __init__(self, argv: list[str]) -> None:
        self.argv = list(argv)

    def __call__(self) -> str | None:
        from pretrain import main_moco

        env = submitit.JobEnvironment()
        if env.num_tasks > 1:
            submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False, overwrite=True)
        path = main_moco.main(self.argv)
        return str(path) if path else None

    def checkpoint(self, *args: Any, **kwargs: Any) -> submitit.helpers.DelayedSubmission:
        """Called by submitit on preemption or timeout: resubmit; the run resumes from its last checkpoint."""
        return submitit.helpers.DelayedSubmission(MocoJob(self.argv))


def with_auto_resume(argv: list[str]) -> list[str]:
    return argv if any(a == "--resume" or a.startswith("--resume=") for a in argv) else ["--resume", "auto", *argv]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="slurm.py", description="submit main_moco.py to SLURM (submitit)",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--job-dir", default="output/slurm/%j", help="submitit logs and pickles (%%j: job id)")
    p.add_argument("--nodes", type=int, default=1)
    p.add_argument("--gpus-per-node", type=int, default=8)
    p.add_argument("--cpus-per-task", type=int, default=10)
    p.add_argument("--mem-gb", type=int, default=None, help="memory per node")
    p.add_argument("--timeout-min", type=int, default=72 * 60)
    p.add_argument("--partition", default=None)
    p.add_argument("--account", default=None)
    p.add_argument("--constraint", default=None)
    p.add_argument("--max-requeues", type=int, default=10, help="how many times a timed-out/preempted job is resubmitted")
    p.add_argument("--name", default="moco")
    p.add_argument("--cluster", default=None, choices=(None, "slurm", "local", "debug"), help="default: auto-detect")
    p.add_argument("moco_args", nargs=argparse.REMAINDER, help="-- then main_moco.py arguments")
    return p


def submit(argv: list[str] | None = None) -> submitit.Job:
    a = build_parser().parse_args(argv)
    moco_argv = a.moco_args[1:] if a.moco_args[:1] == ["--"] else a.moco_args
    if not moco_argv:
        raise SystemExit("slurm.py: error: give main_moco.py arguments after --, at least DATA_DIR")
    executor = submitit.AutoExecutor(folder=a.job_dir, cluster=a.cluster, slurm_max_num_timeout=a.max_requeues)
    params: dict[str, Any] = dict(name=a.name, nodes=a.nodes, tasks_per_node=a.gpus_per_node, gpus_per_node=a.gpus_per_node,
                                  cpus_per_task=a.cpus_per_task, timeout_min=a.timeout_min)
    if a.mem_gb:
        params["mem_gb"] = a.mem_gb
    slurm = {k: v for k, v in (("slurm_partition", a.partition), ("slurm_account", a.account),
                               ("slurm_constraint", a.constraint)) if v}
    if executor.cluster == "slurm":
        params.update(slurm)
    elif executor.cluster in ("local", "debug"):
        params = {"timeout_min": a.timeout_min, "name": a.name}
    executor.update_parameters(**params)
    job = executor.submit(MocoJob(with_auto_resume(moco_argv)))
    print(f"submitted job {job.job_id} ({executor.cluster}); logs in {Path(str(a.job_dir).replace('%j', str(job.job_id)))}")
    return job


if __name__ == "__main__":
    submit()
