"""Fine-tuning trials as SLURM jobs (``--launcher slurm``), on the suite's one launcher (:mod:`cluster`).

* each trial is one job; the trials of a sweep are submitted as one array (``--slurm-array-parallelism`` of
  them at a time); a trial over ``--nodes N`` runs one ``train_net.py`` per node with ``--num-machines N
  --machine-rank <node> --dist-url tcp://<first node>:<port>``, all of them one Detectron2 job over
  ``N x --gpus`` GPUs.
* time limit or preemption: SLURM sends ``SIGUSR2`` (time limit, submitit's ``--signal USR2@90``) or ``SIGTERM``
  (preemption, ``scontrol requeue``) to every process of the job; the trial saves its current iteration and
  stops (``transfer/train_net.py``). On ``SIGUSR2`` submitit calls the job's ``checkpoint()`` and requeues it;
  on ``SIGTERM`` SLURM requeues it. Either way the job ends without a result, so ``--wait`` keeps waiting for
  the requeued job, which resumes from that iteration.
* ownership across jobs and nodes: the first node of a job takes the trial's lock (``benchmarks/locks.py``,
  which records the job's id, submitit's ``5_0`` form, :func:`cluster.jobs.current_job_id`); a job whose
  trial is finished or held by another job or runner exits without training, and the other nodes of a job
  follow their first node. Submitting a sweep twice therefore never trains a trial twice; trials whose
  recorded job is still queued or running are not submitted again.
* ``--wait`` (and ``--cluster local``): wait until no job of the sweep is queued or running, then judge
  every trial by its record: a trial that did not finish is one line (its recorded error, or the job's end
  state) and the exit status is 1.
"""

from __future__ import annotations

import json
import os
import time
import zlib
from pathlib import Path
from typing import Any, Callable

from cluster.jobs import JOB_ID_ENV, JobState, job_state, wait_until_ended
from cluster.slurm import (  # noqa: F401  (re-exported: the runners' and tests' names)
    LaunchError,
    SlurmSpec,
    add_slurm_args,
    check_fits,
    default_cluster,
    make_executor,
    sbatch_script,
    submit_all,
)

SLURM_JOB_FILE = ".slurm.json"


# ----------------------------------------------------------------------------- a recorded job per trial

def record_job(trial_dir: Path, job_id: str, cluster: str) -> None:
    from core.atomic import write_atomic

    info = {"job_id": str(job_id), "cluster": cluster, "submitted": time.time()}
    write_atomic(trial_dir / SLURM_JOB_FILE, lambda tmp: tmp.write_text(json.dumps(info)))


def recorded_job(trial_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((trial_dir / SLURM_JOB_FILE).read_text())
    except (OSError, ValueError):
        return None


def job_is_active(trial_dir: Path) -> str | None:
    """The recorded job id if SLURM says it is queued or running (or cannot be asked); None otherwise."""
    job = recorded_job(trial_dir)
    if not job or job.get("cluster") != "slurm":
        return None
    return job["job_id"] if job_state(job["job_id"]).active else None


# ----------------------------------------------------------------------------- the job that runs a trial

class TrialJob:
    """The callable submitit runs on the compute node(s) for one trial."""

    def __init__(self, trial: Any, run_kwargs: dict[str, Any], gpus: int, port_seed: int = 0) -> None:
        self.trial, self.run_kwargs, self.gpus, self.port_seed = trial, dict(run_kwargs), gpus, port_seed

    def __call__(self) -> str:
        import submitit

        from benchmarks import runner

        env = submitit.JobEnvironment()
        os.environ[JOB_ID_ENV] = str(env.job_id)  # the lock records submitit's id, the one every node compares
        launch = runner.Launch(gpus=self.gpus)
        if env.num_nodes > 1:
            port = 20000 + zlib.crc32(f"{env.job_id}/{self.port_seed}".encode()) % 20000  # same on every node
            launch = runner.Launch(gpus=self.gpus, machines=env.num_nodes, machine_rank=env.node,
                                   dist_url=f"tcp://{env.hostnames[0]}:{port}")
        try:
            if env.node > 0:
                return self._follow_first_node(env, launch)
            return runner.run_trial(self.trial, launch=launch, **self.run_kwargs)
        except runner.SweepStop as e:
            if e.exit_code != runner.EXIT_INTERRUPTED:
                raise
            # Preempted, requeued or cancelled: the trial saved its iteration. No result, so that whoever waits
            # for this job waits for its requeued run (SystemExit is not an Exception: submitit stores nothing).
            raise SystemExit(f"[launcher] job {env.job_id}: {e}") from None

    def _follow_first_node(self, env: Any, launch: Any) -> str:
        """Other nodes train only once the first node of this job holds the trial."""
        from benchmarks import runner
        from benchmarks.locks import read_owner
        from core.records import is_finished

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

    Returns the submitit jobs (in trial order). Trials of one call go out as one job array. Raises
    :class:`LaunchError` (one line) when SLURM refuses the jobs or no node could ever run them.
    """
    from benchmarks.locks import describe, is_locked, read_owner
    from core.records import is_finished

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
    if cluster == "slurm":
        check_fits(spec)
    executor = make_executor(spec, folder, cluster)
    jobs = submit_all(executor, [TrialJob(t, run_kwargs, spec.gpus_per_node, port_seed=i) for i, t in enumerate(todo)])
    for t, job in zip(todo, jobs):
        t.output.mkdir(parents=True, exist_ok=True)
        record_job(t.output, job.job_id, cluster)
        log(f"[launcher] {t.row.label} / trial {t.index}: submitted as job {job.job_id} ({cluster})")
    return jobs


# ----------------------------------------------------------------------------- --wait

def wait_for_trials(trials: list, jobs: list, cluster: str, poll_s: float | None = None) -> dict[str, JobState]:
    """Block until no job of these trials is queued or running and no trial is held by a runner; return the
    last SLURM state of each recorded job (``{}`` for submitit's local cluster)."""
    from benchmarks.locks import is_locked

    def held() -> bool:
        return any(t.output.exists() and is_locked(t.output) for t in trials)

    if cluster != "slurm":
        while not all(job.done() for job in jobs) or held():
            time.sleep(min(poll_s or 1.0, 1.0))
        return {}
    ids = {str(j.job_id) for j in jobs} | {str(r["job_id"]) for t in trials
                                           if (r := recorded_job(t.output)) and r.get("cluster") == "slurm"}
    return wait_until_ended(sorted(ids), poll_s, still_running=held)


def unfinished_trials(trials: list, states: dict[str, JobState]) -> list[str]:
    """One line per trial without a finished record: its recorded error, else how its job ended."""
    from core.records import RECORD_NAME, RecordError, is_finished, read_record

    lines = []
    for t in trials:
        if is_finished(t.output):
            continue
        name = f"{t.row.label} / trial {t.index}"
        try:
            rec = read_record(t.output / RECORD_NAME)
        except RecordError:
            rec = None
        if rec and rec["status"] == "failed":
            lines.append(f"{name}: failed: {rec.get('error') or 'no message'}")
            continue
        job = recorded_job(t.output) or {}
        st = states.get(str(job.get("job_id")))
        how = f"job {job['job_id']} ended" + (f" {st.describe()}" if st else "") if job else "never ran"
        resumable = (t.output / "last_checkpoint").exists()
        lines.append(f"{name}: {how} without a trial record"
                     + ("; it resumes from its checkpoint when submitted again" if resumable else ""))
    return lines
