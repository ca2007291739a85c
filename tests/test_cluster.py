"""Scale-out: the SLURM code path through submitit's local executor, the job scripts for a real cluster,
submissions that never duplicate a trial, a killed sweep resumed, the batch rule and the status view
(parallel trials and stopping at the current iteration: tests/test_sweep_resume.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_sweep_reliability import FAKE_TRAIN_NET
from tiny_runs import FAST, run_voc, tiny_output

from benchmarks import launcher, runner, status
from benchmarks.locks import TrialLock
from core.records import RECORD_NAME, read_record, write_record

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "transfer" / "configs" / "tiny" / "voc_R_18_C4_tiny.yaml"
SHORT = ["SOLVER.MAX_ITER", "4", "SOLVER.CHECKPOINT_PERIOD", "2", *FAST]



def parse_args(argv: list[str]):
    """``run_voc.sh``'s flags, parsed as the runner does."""
    from benchmarks.run import parse

    return parse("voc", argv)[0]

def test_the_slurm_path_runs_a_tiny_sweep_through_submitit_and_never_resubmits(tmp_path: Path, tiny_root: Path) -> None:
    out = tiny_output(tmp_path / "out", tiny_root)
    # one trial: arrays of several are tested on a real SLURM (test_cluster_on_slurm.py)
    args = ["--tiny", "--rows", "random", "--trials", "1", "--output", str(out), "--launcher", "slurm",
            "--cluster", "local", "--", *SHORT]
    res = run_voc(*args)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert res.stdout.count("submitted as job") == 1 and "| 1/1 |" in res.stdout
    (trial,) = out.glob("R18-C4/random-init/trial*")
    assert read_record(trial / RECORD_NAME)["status"] == "finished" and launcher.recorded_job(trial)["cluster"] == "local"
    again = run_voc(*args)
    assert again.returncode == 0 and "submitted as job" not in again.stdout
    assert again.stdout.count("finished, not submitted") == 1 and "| 1/1 |" in again.stdout
    report = "\n".join(status.report(out))
    assert "launcher slurm" in report and "finished" in report


def test_job_scripts_for_a_two_node_trial_ask_for_what_the_trial_needs(tmp_path: Path) -> None:

    args = parse_args(["--launcher", "slurm", "--nodes", "2", "--gpus", "8", "--partition", "learnfair",
                       "--timeout-min", "4320", "--cpus-per-gpu", "10", "--mem", "400G", "--account", "vision",
                       "--qos", "high", "--constraint", "volta32gb", "--slurm-array-parallelism", "4"])
    spec = launcher.SlurmSpec.from_args(args, gpus_per_node=args.gpus)
    text = launcher.sbatch_script(spec, tmp_path, array=15)
    lines = {ln for ln in text.splitlines() if ln.startswith("#SBATCH")}
    for want in ("--nodes=2", "--ntasks-per-node=1", "--gpus-per-node=8", "--cpus-per-task=80", "--partition=learnfair",
                 "--time=4320", "--mem=400G", "--account=vision", "--qos=high", "--constraint=volta32gb",
                 "--signal=USR2@90", "--array=0-14%4"):
        assert f"#SBATCH {want}" in lines, (want, sorted(lines))
    # one process per node, which launches 8 GPU workers and joins the other node's over TCP
    launch = runner.Launch(gpus=8, machines=2, machine_rank=1, dist_url="tcp://node-a:23456")
    assert launch.args() == ["--num-gpus", "8", "--num-machines", "2", "--machine-rank", "1",
                             "--dist-url", "tcp://node-a:23456"]
    # the MoCo pretraining entry takes the same flags (one task per GPU there)
    from pretrain import slurm as pretrain_slurm

    a = pretrain_slurm.build_parser().parse_args(["--nodes", "2", "--partition", "learnfair", "--qos", "high",
                                                  "--", "data"])
    assert (a.nodes, a.gpus_per_node, a.partition, a.qos) == (2, 8, "learnfair", "high")


def _fake_sweep(tmp_path: Path, trials: int = 2) -> tuple[list[runner.Trial], Path, Path]:
    fake = tmp_path / "train_net.py"
    fake.write_text(f"REPO = {str(REPO)!r}\n" + FAKE_TRAIN_NET)
    rows = [runner.Row("random init", "random", TINY)]
    return runner.plan_trials(rows, trials, tmp_path / "out", "R18-C4", 0, []), fake, tmp_path / "calls.jsonl"


def test_two_submissions_at_once_train_each_trial_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plan, fake, calls = _fake_sweep(tmp_path, trials=3)
    monkeypatch.setenv("CALLS", str(calls))
    monkeypatch.setenv("FAKE_SECONDS", "2")
    kw = dict(trials_requested=3, env=runner.child_env(None), train_net=fake)
    spec = launcher.SlurmSpec(gpus_per_node=1, timeout_min=10)
    jobs = []
    for i in range(2):  # e.g. a re-submitted sweep: both submissions see nothing finished yet
        jobs += launcher.submit_trials(plan, spec, tmp_path / f"jobs{i}", "local", kw, log=lambda line: None)
    # the second submission skips a trial whose first job already holds its lock (timing), submits the rest
    assert 3 <= len(jobs) <= 6
    results = sorted(job.result() for job in jobs)
    trained = [json.loads(line)["out"] for line in calls.read_text().splitlines()]
    assert sorted(trained) == sorted(str(t.output) for t in plan)  # each trial exactly once
    assert results.count("finished") == 3 and set(results) <= {"finished", "busy", "skipped"}


def test_a_killed_sweep_resumed_redoes_nothing_that_finished(tmp_path: Path) -> None:
    plan, fake, calls = _fake_sweep(tmp_path, trials=3)
    driver = tmp_path / "driver.py"
    driver.write_text(
        "import sys, pickle\nfrom pathlib import Path\nfrom benchmarks import runner\n"
        "plan = pickle.loads(Path(sys.argv[1]).read_bytes())\nrunner.TRAIN_NET = Path(sys.argv[2])\n"
        "runner.run_all(plan, trials_requested=3, env=runner.child_env(None))\n")
    import pickle

    (tmp_path / "plan.pkl").write_bytes(pickle.dumps(plan))
    env = {**runner.child_env(None), "CALLS": str(calls), "PYTHONPATH": str(REPO), "FAKE_SECONDS": "1.5"}
    proc = subprocess.Popen([sys.executable, str(driver), str(tmp_path / "plan.pkl"), str(fake)], env=env)
    while not (plan[0].output / RECORD_NAME).exists():
        time.sleep(0.1)
    time.sleep(0.5)  # trial 1 is running now
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    subprocess.run([sys.executable, str(driver), str(tmp_path / "plan.pkl"), str(fake)], env=env, check=True)
    trained = [json.loads(line)["out"] for line in calls.read_text().splitlines()]
    assert trained.count(str(plan[0].output)) == 1  # finished before the kill: not trained again
    assert all((t.output / RECORD_NAME).exists() for t in plan)


def test_status_shows_finished_running_failed_interrupted_and_not_started(tmp_path: Path) -> None:
    dirs = [tmp_path / "R50-C4" / "moco" / f"trial{i}" for i in range(5)]
    (tmp_path / "R50-C4").mkdir(parents=True)
    (tmp_path / "R50-C4" / "sweep.json").write_text(json.dumps(
        {"runner": "run_voc.sh", "launcher": "local", "parallel_trials": 1,
         "trials": [{"row": "MoCo", "trial": i, "seed": i, "dir": str(d)} for i, d in enumerate(dirs)]}))
    base = {"task": "voc_det", "arch": "R50-C4", "schedule": "24k", "pretrain": {"label": "MoCo"}, "seed": 0}
    write_record(dirs[0], {**base, "trial": 0, "status": "finished", "metrics": {"AP50": 81.5, "AP": 55.9}})
    for d in dirs[1:4]:
        d.mkdir(parents=True)
        (d / "config.yaml").write_text("SOLVER:\n  MAX_ITER: 24000\n")
        (d / "metrics.json").write_text("".join(json.dumps({"iteration": i, "time": 0.5}) + "\n"
                                                for i in range(19, 12000, 20)))
    write_record(dirs[2], {**base, "trial": 2, "status": "failed", "metrics": {}, "error": "RuntimeError: boom"})
    (dirs[3] / "last_checkpoint").write_text("model_0011999.pth")
    lock = TrialLock(dirs[1])
    assert lock.acquire()
    try:
        lines = status.report(tmp_path)
    finally:
        lock.release()
    text = "\n".join(lines)
    assert "trial 0  finished    AP 55.9, AP50 81.5" in text
    assert "trial 1  running     iteration 12000/24000, 0.50 s/iter, ETA 1h40m" in text
    assert "trial 2  failed      RuntimeError: boom" in text
    assert "trial 3  interrupted resumable from iteration 12000/24000" in text
    assert "trial 4  not started" in text
    assert "1 finished, 1 running, 1 interrupted, 1 failed, 1 not started" in text
    assert "remaining: about 6h40m" in text  # 6000 s running + 6000 s interrupted + 12000 s not started
    res = subprocess.run([sys.executable, "-m", "benchmarks.status", str(tmp_path)], capture_output=True, text=True,
                         cwd=REPO)
    assert res.returncode == 0 and "not started" in res.stdout


def test_a_requeued_job_asks_its_trial_for_a_checkpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    import submitit

    asked = []
    monkeypatch.setattr(runner, "request_checkpoint_and_wait", lambda: asked.append(True))
    job = launcher.TrialJob(trial="t", run_kwargs={}, gpus=8)
    again = job.checkpoint()
    assert asked == [True] and isinstance(again, submitit.helpers.DelayedSubmission)
    assert again.function.trial == "t" and again.function.gpus == 8


def test_accumulation_keeps_the_batch_and_scale_schedule_follows_the_linear_rule(capsys) -> None:
    from benchmarks.scaleout import batch_overrides

    cfg = REPO / "transfer" / "configs" / "voc" / "voc_R_50_C4_24k_rgb.yaml"
    assert batch_overrides(cfg, parse_args(["--gpus", "8"]), "t") == []
    assert batch_overrides(cfg, parse_args(["--gpus", "4", "--ims-per-gpu", "2"]), "t") == \
        ["SOLVER.ACCUMULATE_STEPS", "2"]
    scaled = batch_overrides(cfg, parse_args(["--gpus", "4", "--ims-per-gpu", "2", "--scale-schedule"]), "t")
    assert scaled[:10] == ["SOLVER.IMS_PER_BATCH", "8", "SOLVER.BASE_LR", "0.01", "SOLVER.MAX_ITER", "48000",
                           "SOLVER.STEPS", "(36000,44000,)", "SOLVER.WARMUP_ITERS", "200"]
    with pytest.raises(ValueError, match="does not divide"):
        batch_overrides(cfg, parse_args(["--gpus", "1", "--ims-per-gpu", "3"]), "t")


# ----------------------------------------------------------------------------- issue 18: the real-cluster defects

def test_every_node_of_a_multi_node_array_task_sees_one_job_id(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Array task 0 of array 5 is SLURM job 6: the lock, the launcher's record and the other nodes must all say
    ``5_0`` (submitit's id), or every node after the first takes the trial for someone else's and the first
    waits for machines that never join."""
    from benchmarks.locks import read_owner

    trial = runner.Trial(runner.Row("random init", "random", TINY), 0, 0, tmp_path / "trial0")
    node = {"SLURM_JOB_ID": "6", "SLURM_ARRAY_JOB_ID": "5", "SLURM_ARRAY_TASK_ID": "0", "SLURM_JOB_NUM_NODES": "2",
            "SLURM_JOB_NODELIST": "node[1-2]", "SLURM_NTASKS": "2", "SLURM_LOCALID": "0", "SUBMITIT_EXECUTOR": "slurm"}
    for key, value in {**node, "SLURM_NODEID": "0", "SLURM_PROCID": "0"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("MOCO_BENCH_JOB_ID", raising=False)
    runs = []

    def first_node_trains(t, launch, lock=True, **kw):  # holds the lock while "node 2" looks at it
        from benchmarks.locks import TrialLock

        held = TrialLock(t.output)
        assert held.acquire()
        try:
            owner = read_owner(t.output)
            monkeypatch.setenv("SLURM_NODEID", "1")
            monkeypatch.setenv("SLURM_PROCID", "1")
            monkeypatch.setattr(runner, "run_trial", lambda t, launch, lock=True, **kw: runs.append(
                (launch.machine_rank, lock)) or "finished")
            follower = launcher.TrialJob(trial, {}, gpus=8)()
        finally:
            held.release()
        return owner, follower

    monkeypatch.setattr(runner, "run_trial", first_node_trains)
    import submitit

    job = launcher.TrialJob(trial, {}, gpus=8)
    assert submitit.JobEnvironment().job_id == "5_0"
    owner, follower = job()
    assert owner["job"] == "5_0" and follower == "finished" and runs == [(1, False)]


def test_cpu_only_jobs_ask_for_one_cpu_and_impossible_requests_are_refused(monkeypatch: pytest.MonkeyPatch,
                                                                           tmp_path: Path) -> None:

    from cluster import slurm as cluster_slurm

    spec = launcher.SlurmSpec.from_args(parse_args(["--launcher", "slurm", "--gpus", "0"]), gpus_per_node=0)
    lines = set(launcher.sbatch_script(spec, tmp_path).splitlines())
    assert "#SBATCH --cpus-per-task=1" in lines and not any("gpus" in ln for ln in lines)
    spec = launcher.SlurmSpec.from_args(parse_args(["--gpus", "0", "--cpus-per-task", "4"]), gpus_per_node=0)
    assert spec.cpus_per_task() == 4
    monkeypatch.setattr(cluster_slurm, "largest_node_cpus", lambda partition: 2)
    with pytest.raises(launcher.LaunchError, match="would need 4 CPUs .* largest node of the default partition has 2"):
        launcher.check_fits(spec)


def _fake_slurm(folder: Path, squeue: str, sacct: str) -> str:
    """A PATH with ``squeue`` and ``sacct`` scripts (shell bodies) in front."""
    folder.mkdir()
    for name, body in (("squeue", squeue), ("sacct", sacct)):
        (folder / name).write_text(f"#!/bin/sh\n{body}\n")
        (folder / name).chmod(0o755)
    return f"{folder}:{os.environ['PATH']}"


def test_job_state_asks_squeue_for_ended_jobs_too_and_needs_no_accounting(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from cluster.jobs import GONE, UNREACHABLE, job_state

    no_acct = "echo 'sacct: error: Slurm accounting storage is disabled' >&2; exit 1"
    # squeue lists an ended job only with -t all (as SLURM 22.05 does, for MinJobAge seconds)
    ended = 'case "$*" in *"-t all"*) echo "CANCELLED|None";; esac'
    monkeypatch.setenv("PATH", _fake_slurm(tmp_path / "a", ended, no_acct))
    assert (job_state("5_0").state, job_state("5_0").active) == ("CANCELLED", False)
    monkeypatch.setenv("PATH", _fake_slurm(tmp_path / "b", 'echo "PENDING|BeginTime"', no_acct))
    assert job_state("5_0").describe() == "PENDING: BeginTime" and job_state("5_0").active
    gone = "echo 'slurm_load_jobs error: Invalid job id specified' >&2; exit 1"
    monkeypatch.setenv("PATH", _fake_slurm(tmp_path / "c", gone, no_acct))
    assert job_state("5_0").state == GONE  # neither knows it: ended long ago, not "queued (state unknown)"
    monkeypatch.setenv("PATH", _fake_slurm(tmp_path / "d", gone, 'echo "COMPLETED|0:0"'))
    assert job_state("5_0").state == "COMPLETED"
    down = "echo 'slurm_load_jobs error: Unable to contact slurm controller (connect failure)' >&2; exit 1"
    monkeypatch.setenv("PATH", _fake_slurm(tmp_path / "e", down, no_acct))
    assert job_state("5_0").state == UNREACHABLE and job_state("5_0").active


FAKE_SQUEUE = r"""
# squeue as SLURM 22.05 answers for four jobs: pending ones always, ended ones only with -t all
while [ $# -gt 0 ]; do case "$1" in -j) job=$2; shift;; -o) fmt=$2; shift;; -t) all=1;; esac; shift; done
case "$job" in
  7_0) line="PENDING|BeginTime";; 7_3) line="PENDING|Resources";;
  7_1) [ -n "$all" ] && line="CANCELLED|None";; 7_2) [ -n "$all" ] && line="FAILED|NonZeroExitCode";;
esac
[ -z "$line" ] && exit 0
case "$fmt" in *%r*) echo "$line";; *) echo "${line%%|*}";; esac
"""


def test_status_names_requeued_cancelled_and_ended_jobs_and_measures_parallelism(tmp_path: Path,
                                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Without accounting (sacct disabled): what squeue says, also about ended jobs."""
    dirs = [tmp_path / "R18-C4" / "random-init" / f"trial{i}" for i in range(4)]
    (tmp_path / "R18-C4").mkdir()
    (tmp_path / "R18-C4" / "sweep.json").write_text(json.dumps(
        {"runner": "run_voc.sh", "launcher": "slurm", "parallel_trials": 1, "array_parallelism": 64,
         "trials": [{"row": "random init", "trial": i, "seed": i, "dir": str(d)} for i, d in enumerate(dirs)]}))
    for i, d in enumerate(dirs):
        d.mkdir(parents=True)
        launcher.record_job(d, f"7_{i}", "slurm")
        (d / ".owner.json").write_text(json.dumps({"host": "n", "pid": 1, "started": 100.0 + 10 * (i % 2),
                                                  "heartbeat": 150.0, "active": False}))
    for d in dirs[:2]:
        (d / "config.yaml").write_text("SOLVER:\n  MAX_ITER: 30\n")
        (d / "metrics.json").write_text(json.dumps({"iteration": 10, "time": 0.4}) + "\n")
        (d / "last_checkpoint").write_text("model_0000010.pth")
    (dirs[3] / ".owner.json").unlink()
    no_acct = "echo 'sacct: error: Slurm accounting storage is disabled' >&2; exit 1"
    monkeypatch.setenv("PATH", _fake_slurm(tmp_path / "bin", FAKE_SQUEUE, no_acct))
    text = "\n".join(status.report(tmp_path))
    assert "launcher slurm, 3 at a time so far, array limit 64" in text  # not "1 at a time"
    assert "trial 0  queued      SLURM job 7_0 (PENDING: BeginTime), requeued: resumes from iteration 11/30" in text
    assert "trial 1  cancelled   SLURM job 7_1 cancelled; resumable from iteration 11/30" in text
    assert "trial 2  failed      SLURM job 7_2 ended FAILED without a trial record" in text
    assert "trial 3  queued      SLURM job 7_3 (PENDING: Resources)" in text


HANGING_TRAIN_NET = '''
import sys, time
print("Starting training from iteration 0", flush=True)
time.sleep(600)
'''


def test_the_runner_stops_a_trial_that_prints_nothing_and_records_it_failed(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "train_net.py"
    fake.write_text(HANGING_TRAIN_NET)
    trial = runner.Trial(runner.Row("random init", "random", TINY), 0, 0, tmp_path / "trial0")
    t0 = time.perf_counter()
    lines: list[str] = []
    result = runner.run_trial(trial, trials_requested=1, env=runner.child_env(None), train_net=fake, stall_s=3,
                              log=lines.append, extra=["--tiny", "--schedule", "tiny"])
    assert result == "failed" and time.perf_counter() - t0 < 60
    rec = read_record(trial.output / RECORD_NAME)
    assert rec["status"] == "failed" and rec["error"].startswith("no output for 3 s (hung?)")
    assert (rec["task"], rec["arch"], rec["schedule"], rec["seed"]) == ("voc_det", "R18-C4", "tiny", 0)
    assert any("FAILED" in line and "watchdog" in line for line in lines)


def test_a_trial_failing_before_training_leaves_a_failed_record(tmp_path: Path, tiny_root: Path) -> None:
    from weights_files import d2_pkl, resnet_state

    weights = d2_pkl(tmp_path / "moco.pkl", resnet_state("resnet18"), author="MOCO")
    weights.write_bytes(weights.read_bytes()[:1000])  # found truncated inside the job
    trial = runner.Trial(runner.Row("MoCo", "moco", TINY, str(weights)), 0, 3, tmp_path / "trial0", list(SHORT))
    lines: list[str] = []
    env = {**runner.child_env(tiny_root), "OMP_NUM_THREADS": "1"}
    assert runner.run_trial(trial, trials_requested=1, env=env, log=lines.append) == "failed"
    rec = read_record(trial.output / RECORD_NAME)
    assert rec["status"] == "failed" and "not a readable weights pickle" in rec["error"]
    assert "written_by" not in rec and rec["seed"] == 3  # train_net's own record
    assert (status.trial_status("MoCo", 0, trial.output).state, status.trial_status("MoCo", 0, trial.output).detail) \
        == ("failed", rec["error"])
    assert any("FAILED after" in line and rec["error"] in line for line in lines)


def test_wait_does_not_end_on_a_job_that_is_unknown_for_one_poll() -> None:
    from cluster.jobs import GONE, JobState, wait_until_ended

    # an array task being split off its array: pending, then unknown to squeue and sacct for a moment, then running
    seen = iter(["PENDING", GONE, "RUNNING", "COMPLETED", "COMPLETED"])
    calls = []

    def state(job_id: str) -> JobState:
        calls.append(job_id)
        return JobState(next(seen))

    assert wait_until_ended(["7_1"], poll_s=0, state=state)["7_1"].state == "COMPLETED" and len(calls) == 4
    # a job that stays unknown (ended long ago) ends the wait one poll later
    assert wait_until_ended(["8"], poll_s=0, state=lambda j: JobState(GONE))["8"].state == GONE
