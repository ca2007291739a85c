"""Submit MoCo pretraining to SLURM through submitit: one task per GPU, requeued on preemption/timeout.

    python -m pretrain.slurm --nodes 4 --gpus-per-node 8 --partition learnfair --timeout-min 4320 \\
        --job-dir /checkpoint/$USER/moco/%j -- --preset v2 --output-dir /checkpoint/$USER/moco/v2 /datasets/imagenet

The SLURM flags, the submission (one-line errors) and the requeue behaviour are the suite's one launcher's
(``cluster/slurm.py``), shared with the benchmark runners: ``--partition --nodes --gpus-per-node
--cpus-per-gpu --cpus-per-task --timeout-min --mem --account --qos --constraint --max-requeues --job-dir
--cluster``. ``--gpus-per-node 0`` submits a CPU-only run (one task). ``--wait`` waits for the job (a
requeued job too) and exits non-zero, with one line, when it did not finish.

Everything after ``--`` is passed to ``pretrain/main_moco.py`` (``--output-dir`` must be on shared
storage). Each task exports RANK/WORLD_SIZE/LOCAL_RANK/MASTER_ADDR/MASTER_PORT (submitit's
``TorchDistributedEnvironment``) and runs ``main_moco.main``; ``--resume auto`` is added unless a
``--resume`` is given, so a requeued job continues from the newest checkpoint. ``--cluster local`` /
``debug`` run the same job on this machine (for trying it out).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import submitit

from core.cli import ArgumentParser
from cluster.jobs import wait_until_ended
from cluster.slurm import LaunchError, SlurmSpec, add_slurm_args, check_fits, make_executor, slurm_text, submit_all


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
    p = ArgumentParser(prog="slurm.py", description="submit main_moco.py to SLURM (submitit)",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--name", default="moco", type=slurm_text("--name"), help="SLURM job name")
    add_slurm_args(p)  # the benchmark runners' flags (cluster/slurm.py)
    p.add_argument("--wait", action="store_true", help="wait for the job (requeued runs too); exit 1 if it failed")
    p.add_argument("moco_args", nargs=argparse.REMAINDER, help="-- then main_moco.py arguments")
    return p


def submit(argv: list[str] | None = None) -> submitit.Job:
    """Submit the run; raises :class:`LaunchError` (one line) when SLURM refuses it."""
    return _submit(build_parser().parse_args(argv))


def _submit(a: argparse.Namespace) -> submitit.Job:
    moco_argv = a.moco_args[1:] if a.moco_args[:1] == ["--"] else a.moco_args
    if not moco_argv:
        raise SystemExit("slurm.py: error: give main_moco.py arguments after --, at least DATA_DIR")
    spec = SlurmSpec.from_args(a, name=a.name)
    folder = a.job_dir or "output/slurm/%j"
    # one task per GPU: each task is one training process (submitit exports its rank); CPU-only: one task
    tasks = max(1, spec.gpus_per_node)
    executor = make_executor(spec, folder, a.cluster, tasks_per_node=tasks)
    if executor.cluster == "slurm":
        check_fits(spec, tasks_per_node=tasks)
    job = submit_all(executor, [MocoJob(with_auto_resume(moco_argv))])[0]
    print(f"submitted job {job.job_id} ({executor.cluster}); logs in {Path(str(folder).replace('%j', str(job.job_id)))}")
    return job


def wait(job: submitit.Job, poll_s: float | None = None) -> int:
    """Wait until the job is no longer queued or running (a requeued job is waited for); 0 when it finished."""
    state = None
    if isinstance(job, submitit.SlurmJob):
        state = wait_until_ended([str(job.job_id)], poll_s)[str(job.job_id)]
    else:
        while not job.done():
            time.sleep(1)
    if job.paths.result_pickle.exists():
        outcome, value = submitit.core.utils.pickle_load(job.paths.result_pickle)
        if outcome == "success":
            print(f"job {job.job_id} finished: last checkpoint {value}")
            return 0
        last = [ln for ln in str(value).strip().splitlines() if ln.strip()]
        print(f"job {job.job_id} failed: {last[-1] if last else 'no message'} (log: {job.paths.stderr})")
        return 1
    print(f"job {job.job_id} ended {state.describe() if state else 'without a result'}; log: {job.paths.stderr}")
    return 1


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    try:
        job = _submit(a)
    except LaunchError as e:
        print(f"slurm.py: error: {e}", file=sys.stderr)
        return 2
    return wait(job) if a.wait else 0


if __name__ == "__main__":
    sys.exit(main())
