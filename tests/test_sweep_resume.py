"""One uninterrupted tiny sweep as the reference for what interrupting, resuming and running trials in
parallel must not change: a runner killed with SIGKILL leaves no trial behind, Ctrl-C saves the current
iteration, the resumed trial ends bit-identical to the uninterrupted one and is marked resumed, and
``--parallel-trials 2`` gives the serial table."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
import torch
from tiny_runs import FAST, alive, read, run_voc, table_rows, tiny_output, train_net_pids

from core.records import RECORD_NAME, read_record

OPTS = ["--", "SOLVER.MAX_ITER", "12", "SOLVER.CHECKPOINT_PERIOD", "4", "SOLVER.STEPS", "(9,)", *FAST]
TRIAL0 = Path("R18-C4") / "random-init" / "trial0"


@pytest.fixture(scope="module")
def reference(tiny_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """Two uninterrupted trials (seeds 5 and 6), one after the other: (output folder, runner stdout)."""
    out = tiny_output(tmp_path_factory.mktemp("reference"), tiny_root)
    t0 = time.perf_counter()
    res = run_voc("--tiny", "--rows", "random", "--trials", "2", "--seed", "5", "--output", str(out), *OPTS)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    print(f"tiny 2-trial sweep, serial: {time.perf_counter() - t0:.0f}s")
    return out, res.stdout


def test_parallel_trials_give_the_serial_table(reference, tiny_root: Path, tmp_path: Path) -> None:
    out = tiny_output(tmp_path / "parallel", tiny_root)
    t0 = time.perf_counter()
    res = run_voc("--tiny", "--rows", "random", "--trials", "2", "--seed", "5", "--output", str(out),
                  "--parallel-trials", "2", *OPTS)
    print(f"tiny 2-trial sweep, --parallel-trials 2: {time.perf_counter() - t0:.0f}s")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "[slot 0]" in res.stdout and "[slot 1]" in res.stdout
    assert table_rows(res.stdout) == table_rows(reference[1]) != []


def test_kill_then_ctrl_c_then_resume_ends_as_the_uninterrupted_trial(reference, tiny_root: Path,
                                                                     tmp_path: Path) -> None:
    out = tiny_output(tmp_path / "cut", tiny_root)
    trial = out / TRIAL0
    args = ["--tiny", "--rows", "random", "--seed", "5", "--output", str(out), *OPTS]
    # 1. SIGKILL the runner once the first periodic checkpoint exists: its trial must not survive it
    proc = run_voc(*args, popen=True, start_new_session=True)
    deadline = time.time() + 300
    while not (trial / "model_0000003.pth").exists() and time.time() < deadline:
        time.sleep(0.1)
    children = train_net_pids(out)
    assert children and (trial / "model_0000003.pth").exists()
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    time.sleep(2)
    assert not [p for p in children if alive(p)], "train_net.py outlived its runner"
    # 2. resume, and Ctrl-C after a few more iterations: the trial saves the iteration it is at
    proc = run_voc(*args, popen=True)
    # once the resumed trial has saved its next periodic checkpoint (iteration 7): mid-training whatever the machine's
    # speed (a fixed sleep let a fast machine reach iteration 11 first)
    while not (trial / "model_0000007.pth").exists() and time.time() < deadline:
        time.sleep(0.02)
    assert "Starting training from iteration 4" in read(trial / "console.log")
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 130, stdout[-2000:] + stderr[-2000:]
    assert len(stderr.strip().splitlines()) == 1 and "rerun the same command" in stderr
    stopped = max(int(p.stem.split("_")[1]) for p in trial.glob("model_[0-9]*.pth"))
    assert "checkpoint saved" in read(trial / "console.log") and not (trial / RECORD_NAME).exists()
    # 3. the same command again finishes it: bit-identical to the uninterrupted trial, and marked resumed
    res = run_voc(*args)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    ref, cut = read_record(reference[0] / TRIAL0 / RECORD_NAME), read_record(trial / RECORD_NAME)
    assert cut["resumed"] == {"count": 2, "from_iters": [4, stopped + 1]} and ref["resumed"]["count"] == 0
    assert 7 <= stopped < 11 and cut["metrics"] == ref["metrics"] and cut["raw_results"] == ref["raw_results"]
    a = torch.load(reference[0] / TRIAL0 / "model_final.pth", weights_only=True)["model"]
    b = torch.load(trial / "model_final.pth", weights_only=True)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert "2 resumed" not in res.stdout and "1/1, 1 resumed" in res.stdout
    assert f"resumed after an interruption: trial 0 (from iteration 4, {stopped + 1})" in res.stdout
    assert not list(trial.glob("model_[0-9]*.pth"))  # periodic checkpoints pruned once finished
