"""What SLURM says about a job, the one job id the suite records, and waiting for jobs to end.

A job's state comes from ``squeue -t all`` (it knows running jobs and, for ``MinJobAge`` seconds, ended ones;
without ``-t all`` an ended job prints nothing), then from ``sacct`` (accounting, where the cluster has it).
A job neither knows has ended long ago (:data:`GONE`); when SLURM cannot be asked, the state is
:data:`UNREACHABLE` and callers keep treating the job as alive.

Job ids are submitit's everywhere (the launcher's record, the trial lock, the status view, the nodes of a
multi-node job): ``ARRAYJOB_TASK`` for an array task (``5_0``), the plain id otherwise; SLURM's raw
``SLURM_JOB_ID`` of an array task (``6``) is never recorded.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping

JOB_ID_ENV = "MOCO_BENCH_JOB_ID"  # set by the launcher inside a job: submitit's id of that job
ACTIVE_STATES = {"PENDING", "RUNNING", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD", "CONFIGURING", "COMPLETING",
                 "SUSPENDED", "RESIZING", "SIGNALING", "STAGE_OUT", "STOPPED", "RESV_DEL_HOLD", "SPECIAL_EXIT"}
GONE, UNREACHABLE = "GONE", "UNREACHABLE"


@dataclass(frozen=True)
class JobState:
    """``state`` as SLURM names it (``PENDING``, ``RUNNING``, ``COMPLETED``, ``CANCELLED`` ...), :data:`GONE` or
    :data:`UNREACHABLE`; ``reason``: why it is pending (``Resources``, ``BeginTime`` ...) or what failed."""

    state: str
    reason: str = ""

    @property
    def active(self) -> bool:
        """Queued or running, or not known to have ended (SLURM could not be asked)."""
        return self.state in ACTIVE_STATES or self.state == UNREACHABLE

    def describe(self) -> str:
        if self.state == UNREACHABLE:
            return f"state unknown: {self.reason}"
        shown = {"None", "(null)", ""}
        return f"{self.state}: {self.reason}" if self.reason not in shown else self.state


def current_job_id(environ: Mapping[str, str] | None = None) -> str | None:
    """The id of the job this process runs in, as submitit and ``squeue`` name it (None outside a job)."""
    env = os.environ if environ is None else environ
    if env.get(JOB_ID_ENV):
        return env[JOB_ID_ENV]
    array, task = env.get("SLURM_ARRAY_JOB_ID"), env.get("SLURM_ARRAY_TASK_ID")
    if array and task:
        return f"{array}_{task}"
    return env.get("SLURM_JOB_ID")


def _run(cmd: list[str]) -> tuple[int, str, str]:
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return 1, "", f"{cmd[0]}: {e}"
    return res.returncode, res.stdout, res.stderr


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def job_state(job_id: str) -> JobState:
    """The job's state from ``squeue -t all``, then ``sacct``; :data:`GONE` when neither knows the job."""
    problems = []
    if shutil.which("squeue"):
        rc, out, err = _run(["squeue", "-h", "-t", "all", "-j", str(job_id), "-o", "%T|%r"])
        line = _last_line(out)
        if rc == 0 and line:
            state, _, reason = line.partition("|")
            state = state.strip()  # an ended job keeps its last pending reason in %r: not shown
            return JobState(state, reason.strip() if state in ACTIVE_STATES else "")
        if rc != 0 and "Invalid job id" not in err:
            problems.append(_last_line(err) or f"squeue exit {rc}")
    if shutil.which("sacct"):
        rc, out, err = _run(["sacct", "-n", "-X", "-P", "-j", str(job_id), "-o", "State,ExitCode"])
        line = _last_line(out)
        if rc == 0 and line:
            state, _, code = line.partition("|")
            state = state.split()[0].rstrip("+") if state.split() else "UNKNOWN"
            return JobState(state, f"exit code {code}" if code and code != "0:0" else "")
        if rc != 0 and "accounting storage is disabled" not in err.lower():
            problems.append(_last_line(err) or f"sacct exit {rc}")
    if problems:
        return JobState(UNREACHABLE, problems[0])
    return JobState(GONE)


def poll_seconds() -> float:
    """How often ``--wait`` asks SLURM about its jobs: 5 s, or ``$MOCO_BENCH_POLL_S`` (0.2-60; e.g. a test cluster)."""
    try:
        return min(max(float(os.environ.get("MOCO_BENCH_POLL_S", "5")), 0.2), 60.0)
    except ValueError:
        return 5.0


def wait_until_ended(job_ids: Iterable[str], poll_s: float | None = None, state: Callable[[str], JobState] = job_state,
                     still_running: Callable[[], bool] = lambda: False) -> dict[str, JobState]:
    """Block until none of ``job_ids`` is queued or running (a requeued job is still queued) and
    ``still_running()`` is false; return the last state of each job."""
    ids = list(job_ids)
    poll_s = poll_seconds() if poll_s is None else poll_s
    last: dict[str, JobState] = {}
    gone_before: set[str] = set()
    while True:
        last = {j: state(j) for j in ids}
        # A job neither squeue nor sacct knows counts as ended only when it is still unknown one poll later: an
        # array task that is just being split off its array (pending -> starting) can be unknown to both for a
        # moment (seen on a one-node cluster scheduling every second).
        gone = {j for j, s in last.items() if s.state == GONE}
        settled = gone <= gone_before
        gone_before = gone
        if settled and not any(s.active for s in last.values()) and not still_running():
            return last
        time.sleep(poll_s)
