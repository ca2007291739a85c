"""Submit MoCo pretraining to SLURM through submitit: one task per GPU, requeued on preemption/timeout.

    python -m pretrain.slurm --nodes 4 --gpus-per-node 8 --partition learnfair --timeout-min 4320 \\
        --job-dir /checkpoint/$USER/moco/%j -- --preset v2 --output-dir /checkpoint/$USER/moco/v2 /datasets/imagenet

The SLURM flags and the requeue behaviour are those of the benchmark runners (``benchmarks/launcher.py``):
``--partition --nodes --gpus-per-node --cpus-per-gpu --timeout-min --mem --account --qos --constraint
--max-requeues --job-dir --cluster``.

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

from benchmarks.launcher import SlurmSpec, add_slurm_args, make_executor


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
    p.add_argument("--name", default="moco")
    add_slurm_args(p)  # the benchmark runners' flags (benchmarks/launcher.py)
    p.add_argument("moco_args", nargs=argparse.REMAINDER, help="-- then main_moco.py arguments")
    return p


def submit(argv: list[str] | None = None) -> submitit.Job:
    a = build_parser().parse_args(argv)
    moco_argv = a.moco_args[1:] if a.moco_args[:1] == ["--"] else a.moco_args
    if not moco_argv:
        raise SystemExit("slurm.py: error: give main_moco.py arguments after --, at least DATA_DIR")
    spec = SlurmSpec.from_args(a, name=a.name)
    folder = a.job_dir or "output/slurm/%j"
    # one task per GPU: each task is one training process (submitit exports its rank)
    executor = make_executor(spec, folder, a.cluster, tasks_per_node=max(1, spec.gpus_per_node))
    job = executor.submit(MocoJob(with_auto_resume(moco_argv)))
    print(f"submitted job {job.job_id} ({executor.cluster}); logs in {Path(str(folder).replace('%j', str(job.job_id)))}")
    return job


if __name__ == "__main__":
    submit()
