"""The SLURM cluster the cluster tests run on (``bash scripts/local_slurm.sh start``; CI starts one).

A test that needs it takes the ``slurm`` fixture: with no reachable cluster it is skipped on a developer's
machine and *fails* under ``CI`` (a CI run must not turn green by skipping the cluster). The cluster is
found through ``SLURM_CONF``, else the configuration ``scripts/local_slurm.sh`` writes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Callable

import pytest

REPO = Path(__file__).resolve().parents[1]
LOCAL_CONF = Path(os.environ.get("LOCAL_SLURM_DIR", "/tmp/moco-bench-slurm")) / "etc" / "slurm.conf"


def find_cluster() -> tuple[str | None, str]:
    """(the SLURM_CONF to use, or None when no cluster answers; why not)."""
    if not shutil.which("sinfo"):
        return None, "no sinfo on PATH"
    conf = os.environ.get("SLURM_CONF") or (str(LOCAL_CONF) if LOCAL_CONF.is_file() else "")
    env = {**os.environ, **({"SLURM_CONF": conf} if conf else {})}
    try:
        res = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=20, env=env)
    except (OSError, subprocess.TimeoutExpired) as e:
        return None, f"sinfo: {e}"
    if res.returncode or not res.stdout.strip():
        return None, (res.stderr.strip().splitlines() or ["sinfo printed nothing"])[-1]
    return conf, ""


@pytest.fixture(scope="module")
def slurm():
    """SLURM_CONF set for the module (the runners' subprocesses inherit it); the module's jobs are cancelled
    at its end."""
    conf, why = find_cluster()
    if conf is None:
        message = f"no SLURM cluster reachable ({why}); start one with `bash scripts/local_slurm.sh start`"
        if os.environ.get("CI"):
            pytest.fail(f"CI is set but {message}")
        pytest.skip(message)
    before = os.environ.get("SLURM_CONF")
    if conf:
        os.environ["SLURM_CONF"] = conf
    known = set(job_ids())
    yield conf
    leftover = sorted(set(job_ids()) - known)
    if leftover:
        subprocess.run(["scancel", *leftover], capture_output=True)
    if before is None:
        os.environ.pop("SLURM_CONF", None)
    else:
        os.environ["SLURM_CONF"] = before


def job_ids() -> list[str]:
    out = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True).stdout
    return out.split()


def squeue(job_id: str, fmt: str) -> str:
    """One field of a job, also shortly after it ended (``-t all``)."""
    return subprocess.run(["squeue", "-h", "-t", "all", "-j", job_id, "-o", fmt], capture_output=True,
                          text=True).stdout.strip()


def no_accounting_path(folder: Path) -> str:
    """A PATH on which ``sacct`` answers like a cluster without accounting."""
    folder.mkdir(parents=True, exist_ok=True)
    fake = folder / "sacct"
    fake.write_text("#!/bin/sh\necho 'sacct: error: Slurm accounting storage is disabled' >&2\nexit 1\n")
    fake.chmod(0o755)
    return f"{folder}:{os.environ['PATH']}"


def wait_for(what: str, check: Callable[[], bool], timeout: float = 300, poll: float = 0.3) -> None:
    deadline = time.time() + timeout
    while not check():
        if time.time() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(poll)
