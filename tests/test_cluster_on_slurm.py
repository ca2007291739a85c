"""The cluster path on a real SLURM 22.05 cluster (``scripts/local_slurm.sh``: one node, 2 CPUs in CI, no
GPUs, accounting through slurmdbd): a sweep as one job array and ``--wait``; re-submission trains nothing;
a time limit (``SIGUSR2``) and a preemption (``scontrol requeue``, ``SIGTERM``) save the current iteration and
the requeued trials end bit-identical to uninterrupted ones while ``--wait`` waits for them; failures before
and during training leave records whose one-line reasons ``--wait`` and ``benchmarks.status`` print;
``benchmarks.status`` in every state with and without accounting; refused submissions in one line;
CPU-only jobs ask for one CPU; MoCo pretraining and an ablation sweep through the same launcher.

Trials are tiny (20 iterations of R18-C4 at 96 px, seconds each). A requeued job may start again only
~120 s later (SLURM's begin time); the tests check that state, then start it a few seconds after the requeue
(``scontrol update StartTime=now``, as an administrator may) instead of idling.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from slurm_cluster import REPO, no_accounting_path, slurm, squeue, wait_for  # noqa: F401  (slurm: fixture)
from tiny_runs import FAST, read, run_voc, tiny_output

from benchmarks import status
from core.records import RECORD_NAME, read_record

pytestmark = pytest.mark.slurm

ARGS = ["--tiny", "--rows", "random", "--gpus", "0", "--launcher", "slurm", "--cluster", "slurm"]
OPTS = ["SOLVER.MAX_ITER", "20", "SOLVER.CHECKPOINT_PERIOD", "100", "SOLVER.STEPS", "(14,)", *FAST]
TRIALS = Path("R18-C4") / "random-init"


def sweep(out: Path, *flags: str, opts: tuple[str, ...] = (), **kw):
    return run_voc(*ARGS, "--output", str(out), *flags, "--", *OPTS, *opts, **kw)


def job_of(trial_dir: Path) -> str:
    return json.loads((trial_dir / ".slurm.json").read_text())["job_id"]


def trial_states(out: Path, path: str | None = None) -> dict[int, str]:
    """``{trial: "state detail"}`` from ``benchmarks.status`` (with ``path``: on that PATH)."""
    before = os.environ["PATH"]
    if path:
        os.environ["PATH"] = path
    try:
        lines = status.report(out)
    finally:
        os.environ["PATH"] = before
    found = {}
    for line in lines:
        m = re.match(r"\s+\S.*?  trial (\d+)  (.*)$", line)
        if m:
            found[int(m.group(1))] = " ".join(m.group(2).split())
    return found


def header(out: Path) -> str:
    return next(line for line in status.report(out) if not line.startswith(" "))


# ----------------------------------------------------------------------------- an uninterrupted sweep

@pytest.fixture(scope="module")
def reference(slurm, tiny_root: Path, tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """Two trials (seeds 5, 6) as one array with --wait, the status polled while they run."""
    out = tiny_output(tmp_path_factory.mktemp("reference"), tiny_root)
    t0 = time.perf_counter()
    proc = sweep(out, "--trials", "2", "--seed", "5", "--wait", popen=True)
    seen: set[str] = set()
    while proc.poll() is None:  # each look runs squeue and sacct: once a second leaves the CPUs to the trials
        seen.update(trial_states(out).values())
        time.sleep(1)
    stdout, stderr = proc.communicate()
    print(f"reference sweep on SLURM: {time.perf_counter() - t0:.0f}s")
    return SimpleNamespace(out=out, rc=proc.returncode, stdout=stdout, stderr=stderr, seen=seen)


def test_a_sweep_is_one_job_array_and_wait_prints_the_table(reference) -> None:
    assert reference.rc == 0, reference.stdout[-3000:] + reference.stderr[-3000:]
    jobs = re.findall(r"submitted as job (\d+)_(\d+) \(slurm\)", reference.stdout)
    assert len(jobs) == 2 and jobs[0][0] == jobs[1][0] and {j[1] for j in jobs} == {"0", "1"}
    assert "| random init | this run | 2/2 |" in reference.stdout
    assert all(read_record(reference.out / TRIALS / f"trial{i}" / RECORD_NAME)["status"] == "finished" for i in (0, 1))
    # the status view showed the trials running, with their iteration
    assert any(re.match(r"running iteration \d+/20", s) for s in reference.seen), reference.seen


def test_cpu_only_jobs_ask_for_one_cpu_and_the_status_says_how_many_ran_at_once(reference) -> None:
    trial_dirs = [reference.out / TRIALS / f"trial{i}" for i in (0, 1)]
    # --gpus 0 with the default --cpus-per-gpu 10: one CPU per job, so the 2-CPU node runs both at once
    assert [squeue(job_of(d), "%C") for d in trial_dirs] == ["1", "1"]
    assert "launcher slurm, 2 at a time so far" in header(reference.out / "R18-C4")


def test_resubmitting_a_finished_sweep_trains_nothing(reference) -> None:
    res = sweep(reference.out, "--trials", "2", "--seed", "5", "--wait")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert res.stdout.count("finished, not submitted") == 2 and "submitted as job" not in res.stdout
    assert "| random init | this run | 2/2 |" in res.stdout


# ----------------------------------------------------------------------------- time limit and preemption

@pytest.fixture(scope="module")
def interrupted(reference, tiny_root: Path, tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """The reference's trials again, with --wait: trial 0 is requeued (``scontrol requeue``: SIGTERM, as a
    preemption), trial 1 gets the time-limit signal (``scancel --signal=USR2``, what SLURM sends 90 s before the
    limit), both while training. The status is taken while both wait for their begin time (--wait must still be
    waiting), then they are started."""
    out = tiny_output(tmp_path_factory.mktemp("interrupted"), tiny_root)
    shim = no_accounting_path(tmp_path_factory.mktemp("noacct"))
    t0 = time.perf_counter()
    proc = sweep(out, "--trials", "2", "--seed", "5", "--wait", popen=True)
    dirs = [out / TRIALS / f"trial{i}" for i in (0, 1)]
    for d, how in zip(dirs, (["scontrol", "requeue"], ["scancel", "--signal=USR2"])):
        wait_for(f"{d.name} training", lambda d=d: "Starting training from iteration 0" in read(d / "console.log"))
        time.sleep(1.5)  # a few iterations in, far from the end (no periodic checkpoint: period 100)
        subprocess.run([*how, job_of(d)], check=True, capture_output=True)
    jobs = [job_of(d) for d in dirs]
    wait_for("both jobs requeued", lambda: all(squeue(j, "%T %r") == "PENDING BeginTime" for j in jobs), 120)
    states = trial_states(out)
    states_no_acct = trial_states(out, shim)
    waiting = proc.poll() is None
    # SLURM's own delay: a requeued job started in the second its previous run's credential was revoked is
    # killed ("Job credential revoked", seen once in 6 runs); a few seconds are enough, 120 are SLURM's default
    time.sleep(3)
    for j in jobs:
        subprocess.run(["scontrol", "update", f"JobId={j}", "StartTime=now"], check=True, capture_output=True)
    stdout, stderr = proc.communicate(timeout=600)
    print(f"interrupted sweep on SLURM: {time.perf_counter() - t0:.0f}s")
    return SimpleNamespace(out=out, dirs=dirs, jobs=jobs, rc=proc.returncode, stdout=stdout, stderr=stderr,
                           states=states, states_no_acct=states_no_acct, waiting=waiting)


def _stopped_at(trial_dir: Path) -> int:
    return json.loads((trial_dir / "resumes.json").read_text())[0]


@pytest.mark.parametrize("trial", [0, 1], ids=["preemption-requeue", "time-limit-USR2"])
def test_an_interrupted_trial_resumes_from_its_current_iteration_bit_identical(reference, interrupted,
                                                                               trial: int) -> None:
    assert interrupted.rc == 0, interrupted.stdout[-3000:] + interrupted.stderr[-3000:]
    ref, cut = (x / TRIALS / f"trial{trial}" for x in (reference.out, interrupted.out))
    rec, ref_rec = read_record(cut / RECORD_NAME), read_record(ref / RECORD_NAME)
    stopped = _stopped_at(cut)
    assert 0 < stopped < 20 and rec["resumed"] == {"count": 1, "from_iters": [stopped]}  # the current iteration
    assert f"resumes from iteration {stopped}/20" in interrupted.states[trial]
    assert rec["metrics"] == ref_rec["metrics"] and rec["raw_results"] == ref_rec["raw_results"]
    a = torch.load(ref / "model_final.pth", weights_only=True)["model"]
    b = torch.load(cut / "model_final.pth", weights_only=True)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_wait_waits_for_requeued_jobs_and_status_shows_them_requeued(interrupted) -> None:
    assert interrupted.waiting  # both jobs requeued: --wait is still waiting, it has not reported a failure
    assert interrupted.rc == 0 and "failed" not in interrupted.stdout.lower(), interrupted.stdout[-3000:]
    assert "2/2, 2 resumed" in interrupted.stdout
    for trial, job in enumerate(interrupted.jobs):
        assert interrupted.states[trial].startswith(f"queued SLURM job {job} (PENDING: BeginTime), requeued")
    assert interrupted.states_no_acct == interrupted.states  # squeue -t all: the same without accounting


# ----------------------------------------------------------------------------- failures, cancellation

@pytest.fixture(scope="module")
def failures(interrupted, tiny_root: Path, tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """With --wait, at once: a trial that fails before training (its training sampler does not exist: the data
    loader cannot be built; the runner's checks build the model and load its weights, not the loader) and one that
    fails during training (the loss diverges)."""
    before, during = (tiny_output(tmp_path_factory.mktemp(n), tiny_root) for n in ("before", "during"))
    procs = [sweep(before, "--trials", "1", "--wait", opts=("DATALOADER.SAMPLER_TRAIN", "NopeSampler"), popen=True),
             sweep(during, "--trials", "1", "--wait", opts=("SOLVER.BASE_LR", "1e5"), popen=True)]
    outs = [p.communicate(timeout=600) for p in procs]
    return SimpleNamespace(before=before, during=during, rc=[p.returncode for p in procs],
                           stdout=[o[0] for o in outs], stderr=[o[1] for o in outs])


def test_a_failure_before_training_leaves_a_failed_record_whose_reason_wait_and_status_print(failures,
                                                                                             tmp_path: Path) -> None:
    rec = read_record(failures.before / TRIALS / "trial0" / RECORD_NAME)
    assert rec["status"] == "failed" and rec["error"].startswith("ValueError: ") and "NopeSampler" in rec["error"]
    assert failures.rc[0] == 1, failures.stdout[0][-3000:]
    assert f"random init / trial 0: failed: {rec['error']}" in failures.stdout[0]
    shim = no_accounting_path(tmp_path / "noacct")
    assert trial_states(failures.before / "R18-C4") == trial_states(failures.before / "R18-C4", shim) == \
        {0: f"failed {rec['error']}"}


def test_a_failure_during_training_fails_wait_with_its_reason(failures, tmp_path: Path) -> None:
    rec = read_record(failures.during / TRIALS / "trial0" / RECORD_NAME)
    assert rec["status"] == "failed" and "FloatingPointError" in rec["error"]
    assert failures.rc[1] == 1 and f"random init / trial 0: failed: {rec['error']}" in failures.stdout[1]
    shim = no_accounting_path(tmp_path / "noacct")
    assert trial_states(failures.during / "R18-C4") == trial_states(failures.during / "R18-C4", shim) == \
        {0: f"failed {rec['error']}"}


def test_queued_and_cancelled_without_accounting(slurm, tiny_root: Path, tmp_path: Path) -> None:
    """Two trials that each need the whole node (--cpus-per-task 2): one runs, the other waits for resources;
    both are cancelled. --wait on a client without accounting sees the jobs end and exits 1 in one line each."""
    out = tiny_output(tmp_path / "cancelled", tiny_root)
    shim = no_accounting_path(tmp_path / "noacct")
    proc = sweep(out, "--trials", "2", "--cpus-per-task", "2", "--wait", popen=True, env={"PATH": shim})
    dirs = [out / TRIALS / f"trial{i}" for i in (0, 1)]
    wait_for("trial 0 training", lambda: "Starting training from iteration 0" in read(dirs[0] / "console.log"))
    time.sleep(1.5)
    queued = trial_states(out, shim)
    assert queued[0].startswith("running") and re.match(rf"queued SLURM job {job_of(dirs[1])} \(PENDING: "
                                                        r"(Resources|Priority)\)$", queued[1]), queued
    subprocess.run(["scancel", job_of(dirs[0]).split("_")[0]], check=True)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 1, stdout[-3000:] + stderr[-3000:]
    assert re.search(rf"trial 0: job {job_of(dirs[0])} ended CANCELLED.*resumes from its checkpoint", stdout)
    assert re.search(rf"trial 1: job {job_of(dirs[1])} ended CANCELLED without a trial record$", stdout, re.M), stdout
    ended = trial_states(out)
    assert ended == trial_states(out, shim)
    assert re.match(rf"cancelled SLURM job {job_of(dirs[0])} cancelled; resumable from iteration \d+/20$", ended[0])
    assert ended[1] == f"cancelled SLURM job {job_of(dirs[1])} cancelled"


# ----------------------------------------------------------------------------- refusals in one line

def _one_line(res: subprocess.CompletedProcess) -> str:
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.stdout + res.stderr, res.stdout[-2000:] + res.stderr
    return lines[0]


def test_refused_submissions_are_one_line(slurm, tiny_root: Path, tmp_path: Path) -> None:
    out = tiny_output(tmp_path / "out", tiny_root)
    res = sweep(out, "--partition", "nope")
    assert res.returncode == 2 and "SLURM refused the job: Invalid partition name specified" in _one_line(res)
    moco = [sys.executable, "-m", "pretrain.slurm", "--cluster", "slurm", "--job-dir", str(tmp_path / "jobs"), "--",
            str(tmp_path)]
    res = subprocess.run([*moco[:3], "--gpus-per-node", "1", "--cpus-per-gpu", "1", *moco[3:]], capture_output=True,
                         text=True, cwd=REPO)
    assert res.returncode == 2 and "Invalid generic resource" in _one_line(res)  # no GPUs on this cluster
    res = subprocess.run([*moco[:3], "--gpus-per-node", "0", "--cpus-per-task", "64", *moco[3:]], capture_output=True,
                         text=True, cwd=REPO)
    assert res.returncode == 2 and "need 64 CPUs" in _one_line(res) and "largest node" in res.stderr


# ----------------------------------------------------------------------------- pretraining and ablations

def test_moco_pretraining_runs_through_the_launcher(slurm, tmp_path: Path) -> None:
    from pretrain.synthetic import write_image_folder

    write_image_folder(tmp_path / "data" / "train", classes=2, per_class=8, size=36)
    res = subprocess.run([sys.executable, "-m", "pretrain.slurm", "--cluster", "slurm", "--gpus-per-node", "0",
                          "--timeout-min", "10", "--job-dir", str(tmp_path / "jobs"), "--wait", "--",
                          "-a", "resnet18", "-b", "8", "--crop-size", "32", "--moco-k", "16", "--workers", "0",
                          "--no-tensorboard", "--epochs", "1", "--output-dir", str(tmp_path / "moco"),
                          str(tmp_path / "data")], capture_output=True, text=True, cwd=REPO, timeout=600,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    job = re.search(r"submitted job (\d+) \(slurm\)", res.stdout).group(1)
    assert f"job {job} finished: last checkpoint" in res.stdout
    assert (tmp_path / "moco" / "checkpoint_0000.pth.tar").is_file()
    assert squeue(job, "%C") == "1"


def test_an_ablation_sweep_runs_one_job_per_point(slurm, tmp_path: Path) -> None:
    from pretrain.synthetic import write_image_folder

    data = tmp_path / "data"
    write_image_folder(data / "train", classes=2, per_class=8, size=36)
    write_image_folder(data / "val", classes=2, per_class=3, size=36, seed=1)
    spec = tmp_path / "s.yaml"
    spec.write_text("name: s\nview: figure3\neval: knn\npretrain: {arch: resnet18, batch_size: 8, crop_size: 32, "
                    "epochs: 1, workers: 0, tensorboard: false, print_freq: 100, lr_per_256: 0.48}\n"
                    "points:\n  - grid: {mechanism: [moco, memory-bank], K: [16]}\n")
    res = subprocess.run(["bash", str(REPO / "benchmarks" / "run_ablation.sh"), str(spec), "--data", str(data),
                          "--output", str(tmp_path / "out"), "--launcher", "slurm", "--cluster", "slurm",
                          "--gpus", "0", "--wait"], capture_output=True, text=True, cwd=REPO, timeout=600,
                         env={**os.environ, "OMP_NUM_THREADS": "1",
                              "VENV": str(Path(sys.executable).parents[1])})
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    jobs = re.findall(r"submitted as job (\d+)_(\d) \(slurm\)", res.stdout)
    assert len(jobs) == 2 and jobs[0][0] == jobs[1][0]  # one array
    assert "2 finished, 0 failed" in res.stdout
    records = sorted((tmp_path / "out").rglob("ablation_record.json"))
    assert len(records) == 2 and all(json.loads(r.read_text())["status"] == "finished" for r in records)
