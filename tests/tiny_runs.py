"""Short real runs of the benchmark runner on the tiny VOC data, shared by the reliability and cluster tests.

``FAST`` shrinks a tiny trial further (2 images per batch, 96 px, few ROIs and detections): a trial then
takes seconds of training on a CPU; the runner, ``train_net.py``, the data stream, checkpoints and the
real VOC07 evaluator are all exercised as they are.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from benchmarks import runner

REPO = Path(__file__).resolve().parents[1]
# Small images, few proposals at test time (C4 runs res5 once per proposal: the main CPU cost of its inference),
# one precise-BN batch: a tiny trial is then mostly process start-up
SMALL = ["TEST.PRECISE_BN.NUM_ITER", "1", "INPUT.MIN_SIZE_TRAIN", "(96,)", "INPUT.MAX_SIZE_TRAIN", "160",
         "INPUT.MIN_SIZE_TEST", "96", "INPUT.MAX_SIZE_TEST", "160", "MODEL.RPN.POST_NMS_TOPK_TEST", "5",
         "TEST.DETECTIONS_PER_IMAGE", "20"]
FAST = ["SOLVER.IMS_PER_BATCH", "2", "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "8", *SMALL, "SOLVER.WARMUP_ITERS", "2"]


def tiny_output(path: Path, tiny_root: Path) -> Path:
    """An output folder whose generated tiny data is the session's (saves generating it again per run)."""
    path.mkdir(parents=True, exist_ok=True)
    if not (path / "datasets").exists():
        (path / "datasets").symlink_to(tiny_root, target_is_directory=True)
    return path


def run_voc(*argv: str, popen: bool = False, env: dict | None = None, **kw):
    """``bash benchmarks/run_voc.sh ARGV`` with one thread per process."""
    cmd = ["bash", str(REPO / "benchmarks" / "run_voc.sh"), *argv]
    env = {**runner.child_env(None), "VENV": str(Path(sys.executable).parents[1]), "OMP_NUM_THREADS": "1",
           **(env or {})}
    if popen:
        return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900, **kw)


def table_rows(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.startswith("| ") and "pre-train" not in ln]


def train_net_pids(output: Path) -> list[int]:
    """train_net.py processes training into ``output`` (other tests may train at the same time)."""
    out = subprocess.run(["pgrep", "-f", f"transfer/train_net.py.*{output}"], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status")
    return not (status.exists() and "State:\tZ" in status.read_text())


def read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def install_fake_train_net(folder: Path, monkeypatch, source: str) -> Path:
    """Make the runner start ``source`` (a script that records its argv) instead of ``train_net.py``;
    returns the calls file the script appends to."""
    fake = folder / "fake" / "train_net.py"
    fake.parent.mkdir()
    fake.write_text(f"REPO = {str(REPO)!r}\n" + source)
    monkeypatch.setattr(runner, "TRAIN_NET", fake)
    return fake.parent / "calls.jsonl"


def read_calls(path: Path) -> list[dict]:
    """The argv (and whatever else) each fake trial recorded, in order."""
    import json

    return [json.loads(line) for line in path.read_text().splitlines()]


def arg(argv: list[str], flag: str) -> str:
    """The value after ``flag`` in ``argv``."""
    return argv[argv.index(flag) + 1]
