"""Scale-out: the SLURM code path through submitit's local executor, the job scripts for a real cluster,
submissions that never duplicate a trial, a killed sweep resumed, the batch rule and the status view
(parallel trials and stopping at the current iteration: tests/test_sweep_resume.py)."""

from __future__ import annotations

import json
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
from results.records import RECORD_NAME, read_record, write_record

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "transfer" / "configs" / "tiny" / "voc_R_18_C4_tiny.yaml"
SHORT = ["SOLVER.MAX_ITER", "4", "SOLVER.CHECKPOINT_PERIOD", "2", *FAST]


def test_the_slurm_path_runs_a_tiny_sweep_through_submitit_and_never_resubmits(tmp_path: Path, tiny_root: Path) -> None:
    out = tiny_output(tmp_path / "out", tiny_root)
    args = ["--tiny", "--rows", "random", "--trials", "2", "--output", str(out), "--launcher", "slurm",
            "--cluster", "local", "--", *SHORT]
    res = run_voc(*args)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert res.stdout.count("submitted as job") == 2 and "| 2/2 |" in res.stdout
    trials = sorted(out.glob("R18-C4/random-init/trial*"))
    assert len(trials) == 2 and all(read_record(t / RECORD_NAME)["status"] == "finished" for t in trials)
    assert all(launcher.recorded_job(t)["cluster"] == "local" for t in trials)
    again = run_voc(*args)
    assert again.returncode == 0 and "submitted as job" not in again.stdout
    assert again.stdout.count("finished, not submitted") == 2 and "| 2/2 |" in again.stdout
    report = "\n".join(status.report(out))
    assert "launcher slurm" in report and report.count("finished") >= 2


def test_job_scripts_for_a_two_node_trial_ask_for_what_the_trial_needs(tmp_path: Path) -> None:
    from benchmarks.run_voc import parse_args

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
    from benchmarks.run_voc import parse_args

    cfg = REPO / "transfer" / "configs" / "voc" / "voc_R_50_C4_24k_moco.yaml"
    assert batch_overrides(cfg, parse_args(["--gpus", "8"]), "t") == []
    assert batch_overrides(cfg, parse_args(["--gpus", "4", "--ims-per-gpu", "2"]), "t") == \
        ["SOLVER.ACCUMULATE_STEPS", "2"]
    scaled = batch_overrides(cfg, parse_args(["--gpus", "4", "--ims-per-gpu", "2", "--scale-schedule"]), "t")
    assert scaled[:10] == ["SOLVER.IMS_PER_BATCH", "8", "SOLVER.BASE_LR", "0.01", "SOLVER.MAX_ITER", "48000",
                           "SOLVER.STEPS", "(36000,44000,)", "SOLVER.WARMUP_ITERS", "200"]
    with pytest.raises(ValueError, match="does not divide"):
        batch_overrides(cfg, parse_args(["--gpus", "1", "--ims-per-gpu", "3"]), "t")
