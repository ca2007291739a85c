"""Sweeps that survive: one owner per trial, no orphans, full disks end in one line, resumed trials end as
uninterrupted ones and are marked, files readable by the group, and ``--tiny`` honours ``--rows/--trials``."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tiny_runs import FAST

from benchmarks import runner
from benchmarks.locks import TrialLock, read_owner
from core.records import RECORD_NAME

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
TINY = REPO / "transfer" / "configs" / "tiny" / "voc_R_18_C4_tiny.yaml"

FAKE_TRAIN_NET = '''
import json, os, sys, time
from pathlib import Path
argv = sys.argv[1:]
out = Path(argv[argv.index("OUTPUT_DIR") + 1])
with open(os.environ["CALLS"], "a") as f:
    f.write(json.dumps({"out": str(out), "pid": os.getpid(), "runner": os.getppid()}) + "\\n")
time.sleep(float(os.environ.get("FAKE_SECONDS", "1")))
sys.path.insert(0, REPO)
from core.records import write_record
seed = int(argv[argv.index("--seed") + 1])
write_record(out, {"task": "voc_det", "arch": "R18-C4", "schedule": "tiny", "seed": seed,
             "trial": int(argv[argv.index("--trial") + 1]),
             "pretrain": {"label": argv[argv.index("--label") + 1], "kind": "random", "sha256": None},
             "status": "finished", "metrics": {"AP50": 50.0 + seed, "AP": 30.0, "AP75": 25.0},
             "trials_requested": 3, "tiny": True})
'''

DRIVER = '''
import sys
from pathlib import Path
from benchmarks import runner
runner.TRAIN_NET = Path(sys.argv[1])
rows = [runner.Row("random init", "random", Path(sys.argv[3])), runner.Row("other", "moco", Path(sys.argv[3]), "w.pkl")]
plan = runner.plan_trials(rows, 3, Path(sys.argv[2]), "R18-C4", base_seed=0, opts=[])
counts = runner.run_all(plan, trials_requested=3, env=runner.child_env(None), wait_poll=0.5)
print("COUNTS", counts)
sys.exit(runner.print_table(Path(sys.argv[2])))
'''


def test_two_runners_on_one_sweep_train_each_trial_once(tmp_path: Path) -> None:
    fake = tmp_path / "train_net.py"
    fake.write_text(f"REPO = {str(REPO)!r}\n" + FAKE_TRAIN_NET)
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    calls, out = tmp_path / "calls.jsonl", tmp_path / "out"
    env = {**runner.child_env(None), "CALLS": str(calls), "PYTHONPATH": str(REPO), "FAKE_SECONDS": "1.5"}
    procs = [subprocess.Popen([PY, str(driver), str(fake), str(out), str(TINY)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=240)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    trained = [json.loads(line)["out"] for line in calls.read_text().splitlines()]
    assert len(trained) == 6 and len(set(trained)) == 6  # 2 rows x 3 trials, each exactly once
    assert len({json.loads(line)["runner"] for line in calls.read_text().splitlines()}) == 2  # both worked
    # the later runner meets a trial the other holds and says who holds it (the first may meet only finished ones)
    assert any("held by" in text for text in outputs), outputs
    for text in outputs:
        assert "random init" in text and "other" in text and "| 3/3 |" in text  # the full table, twice


def test_trial_lock_is_exclusive_and_names_its_holder(tmp_path: Path) -> None:
    first, second = TrialLock(tmp_path), TrialLock(tmp_path)
    assert first.acquire()
    assert not second.acquire() and second.owner["pid"] == os.getpid()
    first.release()
    assert second.acquire()
    second.release()
    owner = read_owner(tmp_path)
    # a live runner on another node (a shared filesystem whose flock is node-local) keeps the trial
    (tmp_path / ".owner.json").write_text(json.dumps({**owner, "host": "node-b", "heartbeat": time.time(),
                                                      "active": True}))
    assert not TrialLock(tmp_path).acquire()
    (tmp_path / ".owner.json").write_text(json.dumps({**owner, "host": "node-b", "heartbeat": time.time() - 3600,
                                                      "active": True}))
    lock = TrialLock(tmp_path)
    assert lock.acquire()  # that node died an hour ago: taken over
    lock.release()


def test_a_full_disk_in_the_runner_ends_in_one_line_and_stops_the_trial(tmp_path: Path) -> None:
    fake = tmp_path / "train_net.py"
    fake.write_text("import sys, time\nfor i in range(100000):\n    print('x' * 200, flush=True)\n    time.sleep(0.0001)\n")
    trial = runner.Trial(runner.Row("r", "random", TINY), 0, 0, tmp_path / "t")
    trial.output.mkdir()
    (trial.output / "console.log").symlink_to("/dev/full")  # every write: ENOSPC, as on a full disk
    old = runner.TRAIN_NET
    runner.TRAIN_NET = fake
    try:
        with pytest.raises(runner.SweepStop) as stop:
            runner.run_all([trial], trials_requested=1, env=runner.child_env(None))
    finally:
        runner.TRAIN_NET = old
    message = str(stop.value)
    assert "\n" not in message and "the disk is full" in message and "rerun the same command" in message
    assert not subprocess.run(["pgrep", "-f", str(fake)], capture_output=True).stdout


FILL_SCRIPT = r'''
set -u
mount -t tmpfs -o size=1400m tmpfs "$MNT" || exit 77
cd "$REPO"
mkdir -p "$MNT/out" && ln -s "$TINY_ROOT" "$MNT/out/datasets"
run() { bash benchmarks/run_voc.sh --tiny --rows random --trials 2 --output "$MNT/out" --seed 1 -- \
        SOLVER.MAX_ITER 8 SOLVER.CHECKPOINT_PERIOD 4 $FAST; }
run > "$LOG/run1.out" 2> "$LOG/run1.err" &
pid=$!
while [ ! -e "$MNT/out/R18-C4/random-init/trial1/model_0000003.pth" ]; do
  kill -0 $pid 2>/dev/null || break; sleep 0.2; done
# the disk fills up while trial 1 trains (another job's files, say)
fallocate -l $(( $(stat -f -c '%a*%S' "$MNT") - 8192 )) "$MNT/ballast" 2>/dev/null || \
  dd if=/dev/zero of="$MNT/ballast" bs=1M 2>/dev/null
wait $pid; echo $? > "$LOG/run1.rc"
pgrep -f "transfer/train_net.py.*$MNT" > "$LOG/orphans" || true
rm -f "$MNT/ballast"
run > "$LOG/run2.out" 2> "$LOG/run2.err"; echo $? > "$LOG/run2.rc"
mount -o remount,ro "$MNT"
bash benchmarks/run_voc.sh --tiny --rows random --output "$MNT/other" > /dev/null 2> "$LOG/ro.err"; echo $? > "$LOG/ro.rc"
umount -l "$MNT"
'''


def test_a_filesystem_that_fills_up_ends_in_one_line_and_a_rerun_completes(tmp_path: Path, tiny_root: Path) -> None:
    """A real full file system: a tmpfs in a private mount namespace (needs ``unshare``; the /dev/full test
    above covers the runner's own writes everywhere)."""
    if shutil.which("unshare") is None or subprocess.run(["unshare", "-rm", "true"]).returncode != 0:
        pytest.skip("no mount namespaces here (unshare -rm failed); the /dev/full twin covers the runner's writes")
    mnt, log = tmp_path / "mnt", tmp_path / "log"
    mnt.mkdir()
    log.mkdir()
    script = tmp_path / "fill.sh"
    script.write_text(FILL_SCRIPT)
    env = {**runner.child_env(None), "VENV": str(Path(PY).parents[1]), "OMP_NUM_THREADS": "1", "MNT": str(mnt),
           "LOG": str(log), "REPO": str(REPO), "TINY_ROOT": str(tiny_root), "FAST": " ".join(FAST)}
    res = subprocess.run(["unshare", "-rm", "bash", str(script)], env=env, capture_output=True, text=True,
                         timeout=900)
    if res.returncode == 77:
        pytest.skip("tmpfs cannot be mounted in a user namespace here; the /dev/full twin covers the runner")
    rc1, err1 = int((log / "run1.rc").read_text()), (log / "run1.err").read_text()
    assert rc1 != 0 and "the disk is full" in err1, (log / "run1.out").read_text()[-3000:] + err1
    ours = [ln for ln in err1.splitlines() if ln.startswith("run_voc.sh:")]
    assert len(ours) == 1 and "rerun the same command" in ours[0] and "Traceback" not in err1
    assert (log / "orphans").read_text().strip() == ""
    assert int((log / "run2.rc").read_text()) == 0, (log / "run2.err").read_text()[-3000:]
    run2 = (log / "run2.out").read_text()
    assert "already finished, skipped" in run2 and "| 2/2, 1 resumed |" in run2  # trial 0 kept, trial 1 completed
    assert int((log / "ro.rc").read_text()) == 2
    assert "read-only" in (log / "ro.err").read_text() and (log / "ro.err").read_text().count("\n") == 1


def test_tiny_honours_rows_and_trials(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from benchmarks import run

    rc = run.main(["voc", "--tiny", "--rows", "moco", "--trials", "2", "--dry-run", "--output", str(tmp_path / "o")])
    out = capsys.readouterr().out
    assert rc == 0 and "plan: 1 row(s) x 2 trial(s)" in out and "MoCo v2 (tiny pretraining)" in out
    assert "random init" not in out and "supervised" not in out and "seeds 0..1" in out


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_results_and_weights_get_the_users_umask(tmp_path: Path, umask: int) -> None:
    from core.records import write_record
    from core.atomic import write_atomic

    old = os.umask(umask)
    try:
        write_record(tmp_path, {"task": "voc_det", "arch": "R18-C4", "schedule": "tiny", "seed": 0, "trial": 0,
                                "pretrain": {"label": "x"}, "status": "finished", "metrics": {"AP": 1.0}})
        write_atomic(tmp_path / "w.pkl", lambda p: p.write_bytes(b"x"), suffix=".pkl")
    finally:
        os.umask(old)
    for name in (RECORD_NAME, "w.pkl"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o666 & ~umask
