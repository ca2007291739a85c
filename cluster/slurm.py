"""SLURM flags, job resources and submission through submitit, shared by every benchmark runner
(``--launcher slurm``), the ablation sweeps and MoCo pretraining (``python -m pretrain.slurm``).

A job that reaches its time limit or is preempted gets submitit's ``--signal=USR2@90`` from SLURM; every
training process stops with a checkpoint of its current iteration on it (:mod:`cluster.signals`), the job's
``checkpoint()`` returns it for resubmission and submitit requeues it (``--max-requeues`` bounds how often).

Resources: ``--gpus-per-node`` GPUs (``--gpus`` in the benchmark runners), ``--cpus-per-gpu`` CPU cores each;
a CPU-only job (0 GPUs) asks for ``--cpus-per-task`` cores (default 1), never ``--cpus-per-gpu`` x nothing.
A request the partition can never satisfy (more cores than its largest node) and a request SLURM refuses
(unknown partition, GPUs on a partition without them) end in one line (:class:`LaunchError`).

Free-text values (``--partition``, ``--account``, ``--qos``, ``--constraint``, ``--job-dir``, a job name) become
``#SBATCH`` lines: one holding a control character (a newline starts a line of its own, after which sbatch
ignores every ``#SBATCH``) is refused when the flags are parsed (:func:`slurm_text`), and again by
:meth:`SlurmSpec.sbatch_parameters`. ``--mem`` takes SLURM's form (:func:`parse_mem`).
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
MAX_SLURM_TEXT = 4096  # a SLURM value (a path at most) is never longer
_MEM = re.compile(r"([0-9]{1,12})([KMGT]?)B?", re.I)
_MEM_GB = {"K": 1 / 1024 ** 2, "M": 1 / 1024, "": 1 / 1024, "G": 1, "T": 1024}
MEM_HINT = "memory per node: a whole number with an optional K/M/G/T suffix (MB when none), e.g. 400G"


class LaunchError(Exception):
    """A job that cannot be submitted; the message is one actionable line."""


def text_problem(value: object, what: str) -> str | None:
    """Why ``value`` cannot be a value of an ``#SBATCH`` line (one short phrase), or None."""
    from core.names import name_problem

    return name_problem(value, what, MAX_SLURM_TEXT)  # type: ignore[arg-type]


def slurm_text(flag: str) -> Callable[[str], str]:
    """An argparse ``type=`` for the free-text SLURM flag ``flag``: a one-line usage error for a value with a
    control or invisible character (or empty, or absurdly long)."""

    def parse(text: str) -> str:
        problem = text_problem(text, "value")
        if problem:
            raise argparse.ArgumentTypeError(problem)
        return text.strip()

    parse.__name__ = flag  # argparse names the type in some messages
    return parse


def parse_mem(text: str) -> str:
    """SLURM's ``--mem`` (``400G``, ``512`` = 512 MB, ``2T``) as ``sbatch`` takes it (``400G``, ``512M``); raises
    ``ValueError`` (one line) for zero (SLURM: the whole node), a negative or garbage value."""
    from core.files import brief

    m = _MEM.fullmatch(text.strip()) if isinstance(text, str) else None
    if not m or int(m.group(1)) <= 0:
        raise ValueError(f"{MEM_HINT}; not {brief(text, 40)}")
    return f"{int(m.group(1))}{m.group(2).upper() or 'M'}"


def _mem_arg(text: str) -> str:
    try:
        return parse_mem(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_slurm_args(p: argparse.ArgumentParser, gpus_flag: bool = True) -> None:
    """The SLURM flags, the same for the benchmark runners, the ablation sweeps and ``pretrain/slurm.py``."""
    g = p.add_argument_group("SLURM (with --launcher slurm; submitit)")
    g.add_argument("--partition", type=slurm_text("--partition"), help="SLURM partition")
    g.add_argument("--nodes", type=int, default=1, help="nodes per job (a multi-node Detectron2 trial / MoCo run)")
    if gpus_flag:
        g.add_argument("--gpus-per-node", type=int, default=8, help="GPUs per node (0: a CPU-only job)")
    g.add_argument("--cpus-per-gpu", type=int, default=10, help="CPU cores per GPU (data loading)")
    g.add_argument("--cpus-per-task", type=int, default=None,
                   help=f"CPU cores per task (default: --cpus-per-gpu x GPUs; {CPU_ONLY_CPUS} for a CPU-only job)")
    g.add_argument("--timeout-min", type=int, default=72 * 60, help="time limit per job; requeued after it")
    g.add_argument("--mem", type=_mem_arg, help="memory per node, e.g. 400G (K/M/G/T; MB when no suffix)")
    g.add_argument("--account", type=slurm_text("--account"), help="SLURM account")
    g.add_argument("--qos", type=slurm_text("--qos"), help="SLURM quality of service")
    g.add_argument("--constraint", type=slurm_text("--constraint"), help="SLURM constraint, e.g. volta32gb")
    g.add_argument("--slurm-array-parallelism", type=int, default=64, help="jobs of an array running at once")
    g.add_argument("--max-requeues", type=int, default=10, help="times a timed-out/preempted job is requeued")
    g.add_argument("--job-dir", type=slurm_text("--job-dir"), default=None, help="submitit logs (default: <output>/slurm)")
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
        """Parameters in submitit's SLURM names (``SlurmExecutor.update_parameters``); raises :class:`LaunchError`
        (one line) for a value that would break the ``#SBATCH`` script (the last guard after argument parsing)."""
        self.check()
        params: dict[str, Any] = dict(job_name=self.name, nodes=self.nodes, ntasks_per_node=tasks_per_node,
                                      cpus_per_task=self.cpus_per_task(tasks_per_node), time=self.timeout_min,
                                      array_parallelism=self.array_parallelism)
        if self.gpus_per_node > 0:
            params["gpus_per_node"] = self.gpus_per_node
        for key in ("partition", "account", "qos", "constraint"):
            if getattr(self, key):
                params[key] = getattr(self, key)
        if self.mem:
            params["mem"] = parse_mem(self.mem)  # as sbatch reads it, also in submitit's job script
        params.update(self.extra)
        return params

    def check(self) -> None:
        """Raise :class:`LaunchError` (one line naming the value) for a text value that would not stay one
        ``#SBATCH`` line, or a ``mem`` SLURM would misread."""
        texts = {"job name": self.name, **{f"--{k}": getattr(self, k) for k in ("partition", "account", "qos",
                                                                                "constraint")},
                 **{f"SLURM parameter {str(k)[:40]!r}": v for k, v in self.extra.items()}}
        for what, value in texts.items():
            problem = None if value is None or not isinstance(value, str) else text_problem(value, "value")
            if problem:
                raise LaunchError(f"{what}: {problem}")
        if self.mem is not None:
            try:
                parse_mem(self.mem)
            except ValueError as e:
                raise LaunchError(f"--mem: {e}") from None


def check_folder(folder: str | os.PathLike) -> None:
    """Raise :class:`LaunchError` (one line) for a job folder that would not stay one ``#SBATCH`` line."""
    problem = text_problem(str(folder), "job folder")
    if problem:
        raise LaunchError(f"--job-dir: {problem}")


def sbatch_script(spec: SlurmSpec, folder: str | os.PathLike, tasks_per_node: int = 1, array: int = 0) -> str:
    """The ``#SBATCH`` script submitit writes for ``spec`` (an array of ``array`` jobs when > 1), also where
    SLURM is not installed: what ``--launcher slurm`` will ask the cluster for."""
    from submitit.slurm.slurm import _make_sbatch_string

    check_folder(folder)
    params = spec.sbatch_parameters(tasks_per_node)
    if array > 1:
        params["map_count"] = array
    return _make_sbatch_string(command="python -u -m submitit.core._submit FOLDER", folder=str(folder), **params)


def default_cluster() -> str:
    return "slurm" if shutil.which("sbatch") else "local"


def make_executor(spec: SlurmSpec, folder: str | os.PathLike, cluster: str | None = None, tasks_per_node: int = 1):
    """A submitit executor for ``spec`` (``cluster``: slurm / local / debug)."""
    import submitit

    check_folder(folder)
    spec.check()
    cluster = cluster or default_cluster()
    executor = submitit.AutoExecutor(folder=str(folder), cluster=cluster, slurm_max_num_timeout=spec.max_requeues)
    if cluster == "slurm":
        params = spec.sbatch_parameters(tasks_per_node)
        executor.update_parameters(**{f"slurm_{k}": v for k, v in params.items()
                                      if k not in ("job_name", "nodes", "ntasks_per_node", "gpus_per_node",
                                                   "cpus_per_task", "time")},
                                   name=spec.name, nodes=spec.nodes, tasks_per_node=tasks_per_node,
                                   timeout_min=spec.timeout_min, cpus_per_task=params["cpus_per_task"],
                                   **({"gpus_per_node": spec.gpus_per_node} if spec.gpus_per_node > 0 else {}))
    else:
        executor.update_parameters(timeout_min=spec.timeout_min, name=spec.name)
    return executor


def _mem_gb(mem: str) -> float:
    """GB of a ``--mem`` value (:func:`parse_mem`; ``ValueError`` when it is not one)."""
    m = _MEM.fullmatch(parse_mem(mem))
    assert m is not None
    return int(m.group(1)) * _MEM_GB[m.group(2)]


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
