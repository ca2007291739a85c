"""SLURM flags, job resources and submission through submitit, shared by every benchmark runner
(``--launcher slurm``), the ablation sweeps and MoCo pretraining (``python -m pretrain.slurm``).

A job that reaches its time limit or is preempted gets submitit's ``--signal=USR2@90`` from SLURM; every
training process stops with a checkpoint of its current iteration on it (:mod:`cluster.signals`), the job's
``checkpoint()`` returns it for resubmission and submitit requeues it (``--max-requeues`` bounds how often).

Resources: ``--gpus-per-node`` GPUs (``--gpus`` in the benchmark runners), ``--cpus-per-gpu`` CPU cores each;
a CPU-only job (0 GPUs) asks for ``--cpus-per-task`` cores (default 1), never ``--cpus-per-gpu`` x nothing.
A request the partition can never satisfy (more cores than its largest node) and a request SLURM refuses
(unknown partition, GPUs on a partition without them) end in one line (:class:`LaunchError`).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from typing import Any, Callable

CPU_ONLY_CPUS = 1  # cores of a CPU-only job unless --cpus-per-task says otherwise


class LaunchError(Exception):
    """A job that cannot be submitted; the message is one actionable line."""


def add_slurm_args(p: argparse.ArgumentParser, gpus_flag: bool = True) -> None:
    """The SLURM flags, the same for the benchmark runners, the ablation sweeps and ``pretrain/slurm.py``."""
    g = p.add_argument_group("SLURM (with --launcher slurm; submitit)")
    g.add_argument("--partition", help="SLURM partition")
    g.add_argument("--nodes", type=int, default=1, help="nodes per job (a multi-node Detectron2 trial / MoCo run)")
    if gpus_flag:
        g.add_argument("--gpus-per-node", type=int, default=8, help="GPUs per node (0: a CPU-only job)")
    g.add_argument("--cpus-per-gpu", type=int, default=10, help="CPU cores per GPU (data loading)")
    g.add_argument("--cpus-per-task", type=int, default=None,
                   help=f"CPU cores per task (default: --cpus-per-gpu x GPUs; {CPU_ONLY_CPUS} for a CPU-only job)")
    g.add_argument("--timeout-min", type=int, default=72 * 60, help="time limit per job; requeued after it")
    g.add_argument("--mem", help="memory per node, e.g. 400G")
    g.add_argument("--account", help="SLURM account")
    g.add_argument("--qos", help="SLURM quality of service")
    g.add_argument("--constraint", help="SLURM constraint, e.g. volta32gb")
    g.add_argument("--slurm-array-parallelism", type=int, default=64, help="jobs of an array running at once")
    g.add_argument("--max-requeues", type=int, default=10, help="times a timed-out/preempted job is requeued")
    g.add_argument("--job-dir", default=None, help="submitit logs (default: <output>/slurm)")
    g.add_argument("--cluster", choices=("slurm", "local", "debug"), default=None,
                   help="submitit cluster (default: slurm when sbatch is present; local/debug run here, to try out)")


@dataclass
class SlurmSpec:
    """The resources of one job."""

    nodes: int = 1
    gpus_per_node: int = 8
    cpus_per_gpu: int = 10
    cpus: int | None = None  # cores per task; None: the rule of cpus_per_task()
    timeout_min: int = 72 * 60
    partition: str | None = None
    mem: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    array_parallelism: int = 64
    max_requeues: int = 10
    name: str = "moco-bench"
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_args(cls, args: argparse.Namespace, gpus_per_node: int | None = None, name: str = "moco-bench") -> "SlurmSpec":
        return cls(nodes=args.nodes, gpus_per_node=gpus_per_node if gpus_per_node is not None else args.gpus_per_node,
                   cpus_per_gpu=args.cpus_per_gpu, cpus=getattr(args, "cpus_per_task", None),
                   timeout_min=args.timeout_min, partition=args.partition, mem=args.mem, account=args.account,
                   qos=args.qos, constraint=args.constraint, array_parallelism=args.slurm_array_parallelism,
                   max_requeues=args.max_requeues, name=name)

    def cpus_per_task(self, tasks_per_node: int = 1) -> int:
        """``--cpus-per-task``: explicit, else ``cpus_per_gpu`` x the GPUs of a task, else (no GPU) 1."""
        if self.cpus:
            return self.cpus
        if self.gpus_per_node <= 0:
            return CPU_ONLY_CPUS
        return max(1, self.cpus_per_gpu * self.gpus_per_node // max(1, tasks_per_node))

    def sbatch_parameters(self, tasks_per_node: int = 1) -> dict[str, Any]:
        """Parameters in submitit's SLURM names (``SlurmExecutor.update_parameters``)."""
        params: dict[str, Any] = dict(job_name=self.name, nodes=self.nodes, ntasks_per_node=tasks_per_node,
                                      cpus_per_task=self.cpus_per_task(tasks_per_node), time=self.timeout_min,
                                      array_parallelism=self.array_parallelism)
        if self.gpus_per_node > 0:
            params["gpus_per_node"] = self.gpus_per_node
        for key in ("partition", "mem", "account", "qos", "constraint"):
            if getattr(self, key):
                params[key] = getattr(self, key)
        params.update(self.extra)
        return params


def sbatch_script(spec: SlurmSpec, folder: str | os.PathLike, tasks_per_node: int = 1, array: int = 0) -> str:
    """The ``#SBATCH`` script submitit writes for ``spec`` (an array of ``array`` jobs when > 1), also where
    SLURM is not installed: what ``--launcher slurm`` will ask the cluster for."""
    from submitit.slurm.slurm import _make_sbatch_string

    params = spec.sbatch_parameters(tasks_per_node)
    if array > 1:
        params["map_count"] = array
    return _make_sbatch_string(command="python -u -m submitit.core._submit FOLDER", folder=str(folder), **params)


def default_cluster() -> str:
    return "slurm" if shutil.which("sbatch") else "local"


def make_executor(spec: SlurmSpec, folder: str | os.PathLike, cluster: str | None = None, tasks_per_node: int = 1):
    """A submitit executor for ``spec`` (``cluster``: slurm / local / debug)."""
    import submitit

    cluster = cluster or default_cluster()
    executor = submitit.AutoExecutor(folder=str(folder), cluster=cluster, slurm_max_num_timeout=spec.max_requeues)
    if cluster == "slurm":
        params = spec.sbatch_parameters(tasks_per_node)
        executor.update_parameters(**{f"slurm_{k}": v for k, v in params.items()
                                      if k not in ("job_name", "nodes", "ntasks_per_node", "gpus_per_node",
                                                   "cpus_per_task", "time", "mem")},
                                   name=spec.name, nodes=spec.nodes, tasks_per_node=tasks_per_node,
                                   timeout_min=spec.timeout_min, cpus_per_task=params["cpus_per_task"],
                                   **({"gpus_per_node": spec.gpus_per_node} if spec.gpus_per_node > 0 else {}),
                                   **({"mem_gb": _mem_gb(spec.mem)} if spec.mem else {}))
    else:
        executor.update_parameters(timeout_min=spec.timeout_min, name=spec.name)
    return executor


def _mem_gb(mem: str) -> int:
    text = mem.strip().upper().removesuffix("B")
    scale = {"G": 1, "T": 1024, "M": 1 / 1024}.get(text[-1:], 1)
    return max(1, int(float(text.rstrip("GTM")) * scale))


def largest_node_cpus(partition: str | None) -> int | None:
    """The most CPUs one node of ``partition`` (default partition: all nodes) has, from ``sinfo``; None if unknown."""
    cmd = ["sinfo", "-h", "-o", "%c"] + (["-p", partition] if partition else [])
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    counts = [int(x) for x in re.findall(r"\d+", out)]
    return max(counts) if counts else None


def check_fits(spec: SlurmSpec, tasks_per_node: int = 1) -> None:
    """Refuse (one line) a request no node of the partition can ever run: it would stay PENDING forever."""
    want = spec.cpus_per_task(tasks_per_node) * tasks_per_node
    have = largest_node_cpus(spec.partition)
    if have is not None and want > have:
        where = f"partition {spec.partition}" if spec.partition else "the default partition"
        gpus = f"{spec.gpus_per_node} GPU(s) x --cpus-per-gpu {spec.cpus_per_gpu}" if spec.gpus_per_node > 0 \
            else "--cpus-per-task"
        raise LaunchError(f"each node would need {want} CPUs ({gpus}) but the largest node of {where} has {have}; "
                          "lower --cpus-per-gpu or --cpus-per-task")


def sbatch_error(e: BaseException) -> str:
    """SLURM's own reason from a failed ``sbatch`` (its last ``sbatch: error:`` line)."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    errors = [ln for ln in lines if "error:" in ln]
    line = (errors or lines or [type(e).__name__])[-1]
    line = line.split("error:", 1)[1].strip() if "error:" in line else line
    return line.removeprefix("Batch job submission failed: ")


def submit_all(executor, functions: list[Callable[[], Any]]) -> list:
    """Submit ``functions`` (several: one job array) and return the jobs; a refused submission raises
    :class:`LaunchError` with SLURM's reason in one line (submitit would print sbatch's stderr and a traceback)."""
    from submitit.core.utils import FailedJobError

    quiet = io.StringIO()
    try:
        with contextlib.redirect_stderr(quiet):
            if len(functions) == 1:
                return [executor.submit(functions[0])]
            with executor.batch():
                jobs = [executor.submit(fn) for fn in functions]
            return jobs
    except (FailedJobError, subprocess.CalledProcessError, OSError) as e:
        reason = sbatch_error(e) if str(e).strip() else sbatch_error(RuntimeError(quiet.getvalue()))
        hint = ""
        if re.search(r"partition", reason, re.I):
            hint = " (check --partition: `sinfo -s` lists the partitions)"
        elif re.search(r"gres|generic resource|gpu", reason, re.I):
            hint = " (this partition has no such GPUs: check --gpus/--gpus-per-node and --partition)"
        raise LaunchError(f"SLURM refused the job: {reason}{hint}") from None
