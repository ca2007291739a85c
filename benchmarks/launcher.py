"""Where trials and pretraining runs execute: here (``local``) or as SLURM jobs through submitit (``slurm``).

The one launcher module of the suite, used by every benchmark runner (``--launcher slurm``) and by
``pretrain/slurm.py``; both take the same flags (:func:`add_slurm_args`) and requeue the same way:

* a job that reaches its time limit or is preempted gets ``SIGUSR2`` from SLURM (``--signal USR2@90``,
  submitit's default); submitit calls the job's ``checkpoint()``, which asks the training process to save
  a checkpoint now (``SIGUSR1``: Detectron2 trials save the current iteration, ``transfer/train_net.py``;
  MoCo pretraining keeps its latest checkpoint) and returns the same job for resubmission; the requeued job
  resumes from that checkpoint. ``--max-requeues`` bounds how often.
* each fine-tuning trial is one job (the trials of a sweep are submitted as one array, ``--slurm-array-
  parallelism`` of them at a time); a trial over ``--nodes N`` runs one ``train_net.py`` per node with
  ``--num-machines N --machine-rank <node> --dist-url tcp://<first node>:<port>``, all of them one
  Detectron2 job over ``N x --gpus`` GPUs.
* ownership across jobs and nodes: the first node of a job takes the trial's lock (``benchmarks/locks.py``,
  which records the SLURM job id); a job whose trial is finished or held by another job or runner exits
  without training, and the other nodes of a job follow their first node. Submitting a sweep twice
  therefore never trains a trial twice; trials whose recorded job is still queued or running are not
  submitted again.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

SLURM_JOB_FILE = ".slurm.json"
ACTIVE_STATES = {"PENDING", "RUNNING", "REQUEUED", "CONFIGURING", "COMPLETING", "SUSPENDED", "RESIZING"}


def add_slurm_args(p: argparse.ArgumentParser, gpus_flag: bool = True) -> None:
    """The SLURM flags, the same for the benchmark runners and ``pretrain/slurm.py``."""
    g = p.add_argument_group("SLURM (with --launcher slurm; submitit)")
    g.add_argument("--partition", help="SLURM partition")
    g.add_argument("--nodes", type=int, default=1, help="nodes per job (a multi-node Detectron2 trial / MoCo run)")
    if gpus_flag:
        g.add_argument("--gpus-per-node", type=int, default=8, help="GPUs per node")
    g.add_argument("--cpus-per-gpu", type=int, default=10, help="CPU cores per GPU (data loading)")
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
                   cpus_per_gpu=args.cpus_per_gpu, timeout_min=args.timeout_min, partition=args.partition,
                   mem=args.mem, account=args.account, qos=args.qos, constraint=args.constraint,
                   array_parallelism=args.slurm_array_parallelism, max_requeues=args.max_requeues, name=name)

    def sbatch_parameters(self, tasks_per_node: int = 1) -> dict[str, Any]:
        """Parameters in submitit's SLURM names (``SlurmExecutor.update_parameters``)."""
        params: dict[str, Any] = dict(job_name=self.name, nodes=self.nodes, ntasks_per_node=tasks_per_node,
                                      gpus_per_node=self.gpus_per_node,
                                      cpus_per_task=self.cpus_per_gpu * max(1, self.gpus_per_node) // tasks_per_node,
                                      time=self.timeout_min, array_parallelism=self.array_parallelism)
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
        executor.update_parameters(**{f"slurm_{k}": v for k, v in spec.sbatch_parameters(tasks_per_node).items()
                                      if k not in ("job_name", "nodes", "ntasks_per_node", "gpus_per_node",
                                                   "cpus_per_task", "time", "mem")},
                                   name=spec.name, nodes=spec.nodes, tasks_per_node=tasks_per_node,
                                   gpus_per_node=spec.gpus_per_node, timeout_min=spec.timeout_min,
                                   cpus_per_task=spec.cpus_per_gpu * max(1, spec.gpus_per_node) // tasks_per_node,
                                   **({"mem_gb": _mem_gb(spec.mem)} if spec.mem else {}))
    else:
        executor.update_parameters(timeout_min=spec.timeout_min, name=spec.name)
    return executor


def _mem_gb(mem: str) -> int:
    text = mem.strip().upper().removesuffix("B")
    scale = {"G": 1, "T": 1024, "M": 1 / 1024}.get(text[-1:], 1)
    return max(1, int(float(text.rstrip("GTM")) * scale))


# ----------------------------------------------------------------------------- a recorded job per trial

def record_job(trial_dir: Path, job_id: str, cluster: str) -> None:
    from transfer.atomic import write_atomic

    info = {"job_id": str(job_id), "cluster": cluster, "submitted": time.time()}
    write_atomic(trial_dir / SLURM_JOB_FILE, lambda tmp: tmp.write_text(json.dumps(info)))


def recorded_job(trial_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((trial_dir / SLURM_JOB_FILE).read_text())
    except (OSError, ValueError):
        return None


def slurm_state(job_id: str) -> str | None:
    """The job's SLURM state (``squeue``, then ``sacct``), or None when SLURM cannot say."""
    for cmd in (["squeue", "-h", "-j", job_id, "-o", "%T"], ["sacct", "-n", "-X", "-j", job_id, "-o", "State"]):
        if shutil.which(cmd[0]) is None:
            continue
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=20).stdout.split()
        except (OSError, subprocess.TimeoutExpired):
            continue
        if out:
            return out[0].rstrip("+")
    return None


def job_is_active(trial_dir: Path) -> str | None:
    """The recorded job id if SLURM says it is queued or running; None otherwise."""
    job = recorded_job(trial_dir)
    if not job or job.get("cluster") != "slurm":
        return None
    state = slurm_state(job["job_id"])
    return job["job_id"] if state in ACTIVE_STATES else None


# ----------------------------------------------------------------------------- the job that runs a trial

class TrialJob:
    """The callable submitit runs on the compute node(s) for one trial."""

    def __init__(self, trial: Any, run_kwargs: dict[str, Any], gpus: int, port_seed: int = 0) -> None:
        self.trial, self.run_kwargs, self.gpus, self.port_seed = trial, dict(run_kwargs), gpus, port_seed

    def __call__(self) -> str:
        import submitit

        from benchmarks import runner

        env = submitit.JobEnvironment()
        launch = runner.Launch(gpus=self.gpus)
        if env.num_nodes > 1:
            port = 20000 + zlib.crc32(f"{env.job_id}/{self.port_seed}".encode()) % 20000  # same on every node
            launch = runner.Launch(gpus=self.gpus, machines=env.num_nodes, machine_rank=env.node,
                                   dist_url=f"tcp://{env.hostnames[0]}:{port}")
        os.environ["SLURM_JOB_ID"] = os.environ.get("SLURM_JOB_ID", str(env.job_id))
        if env.node > 0:
            return self._follow_first_node(env, launch)
        return runner.run_trial(self.trial, launch=launch, **self.run_kwargs)

    def _follow_first_node(self, env: Any, launch: Any) -> str:
        """Other nodes train only once the first node of this job holds the trial."""
        from benchmarks import runner
        from benchmarks.locks import read_owner
        from results.records import is_finished

        deadline = time.time() + 600
        while time.time() < deadline:
            if is_finished(self.trial.output):
                return "skipped"
            owner = read_owner(self.trial.output) or {}
            if owner.get("active") and str(owner.get("job")) == str(env.job_id):
                return runner.run_trial(self.trial, launch=launch, lock=False, **self.run_kwargs)
            if owner.get("active") and owner.get("job") not in (None, str(env.job_id)):
                return "busy"
            time.sleep(2)
        return "busy"

    def checkpoint(self, *args: Any, **kwargs: Any):
        """Time limit or preemption: the trial saves its current iteration, then the job is requeued."""
        import submitit

        from benchmarks import runner

        runner.request_checkpoint_and_wait()
        return submitit.helpers.DelayedSubmission(TrialJob(self.trial, self.run_kwargs, self.gpus, self.port_seed))


def submit_trials(trials: list, spec: SlurmSpec, folder: Path, cluster: str | None, run_kwargs: dict[str, Any],
                  log: Callable[[str], None] = print) -> list:
    """Submit one job per trial that is neither finished, held by a runner, nor queued/running as a job.

    Returns the submitit jobs (in trial order). Trials of one call go out as one job array.
    """
    from benchmarks.locks import describe, is_locked, read_owner
    from results.records import is_finished

    cluster = cluster or default_cluster()
    todo = []
    for t in trials:
        name = f"{t.row.label} / trial {t.index}"
        if is_finished(t.output):
            log(f"[launcher] {name}: finished, not submitted")
        elif t.output.exists() and is_locked(t.output):
            log(f"[launcher] {name}: running under {describe(read_owner(t.output))}, not submitted")
        elif job_is_active(t.output):
            log(f"[launcher] {name}: job {recorded_job(t.output)['job_id']} is queued or running, not submitted")
        else:
            todo.append(t)
    if not todo:
        return []
    executor = make_executor(spec, folder, cluster)
    with executor.batch():
        jobs = [executor.submit(TrialJob(t, run_kwargs, spec.gpus_per_node, port_seed=i)) for i, t in enumerate(todo)]
    for t, job in zip(todo, jobs):
        t.output.mkdir(parents=True, exist_ok=True)
        record_job(t.output, job.job_id, cluster)
        log(f"[launcher] {t.row.label} / trial {t.index}: submitted as job {job.job_id} ({cluster})")
    return jobs
