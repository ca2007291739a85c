"""Run fine-tuning trials (one ``transfer/train_net.py`` process each) and keep what finished.

Shared by the VOC / COCO / Cityscapes runners: distinct seeds per trial, finished trials skipped
(their ``trial_record.json`` says so), an interrupted trial resumed from Detectron2's last
checkpoint, a readable console (progress lines only; the full log stays in the trial dir), and the
comparison table from ``results`` at the end.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from results.records import RECORD_NAME, RecordError, is_finished, read_record

REPO = Path(__file__).resolve().parents[1]
TRAIN_NET = REPO / "transfer" / "train_net.py"
# Lines of Detectron2's log worth showing on the console while a trial runs.
_PROGRESS = re.compile(r"(eta: |copypaste: |trial record written|Starting training|Resuming|error|Error|Traceback)")


@dataclass
class Row:
    """One pre-train row of a benchmark table (e.g. supervised, MoCo, random init)."""

    label: str
    kind: str  # moco | supervised | random
    config: Path
    weights: str = ""  # .pkl / .pth / detectron2:// URL; "" for random init


@dataclass
class Trial:
    row: Row
    index: int
    seed: int
    output: Path
    opts: list[str] = field(default_factory=list)


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower() or "row"


def plan_trials(rows: list[Row], trials: int, output: Path, arch: str, base_seed: int, opts: list[str]) -> list[Trial]:
    """Trials of every row, seeds ``base_seed + index`` (the same seeds for every row)."""
    return [Trial(row, i, base_seed + i, output / arch / slug(row.label) / f"trial{i}", list(opts))
            for row in rows for i in range(trials)]


def run_trial(trial: Trial, *, trials_requested: int, env: dict[str, str], gpus: int, extra: list[str],
              log=print) -> str:
    """Run (or skip / resume) one trial; return 'skipped', 'finished' or 'failed'."""
    out = trial.output
    name = f"{trial.row.label} / trial {trial.index} (seed {trial.seed})"
    if is_finished(out):
        log(f"[runner] {name}: already finished, skipped ({out / RECORD_NAME})")
        return "skipped"
    resume = (out / "last_checkpoint").exists()
    cmd = [sys.executable, str(TRAIN_NET), "--config-file", str(trial.row.config), "--num-gpus", str(max(gpus, 1)),
           "--seed", str(trial.seed), "--trial", str(trial.index), "--trials-requested", str(trials_requested),
           "--label", trial.row.label, "--kind", trial.row.kind, *extra]
    if resume:
        cmd.append("--resume")
    cmd += ["MODEL.WEIGHTS", trial.row.weights, "OUTPUT_DIR", str(out), *trial.opts]
    log(f"[runner] {name}: {'resuming' if resume else 'starting'} -> {out}")
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with open(out / "console.log", "a") as console:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, bufsize=1)
        assert proc.stdout is not None
        last_error = ""
        for line in proc.stdout:
            console.write(line)
            clean = re.sub(r"\x1b\[[0-9;]*m", "", line.rstrip())
            if clean.startswith("train_net.py: error"):
                last_error = clean
            if _PROGRESS.search(clean) and "Build settings" not in clean:
                shown = clean[clean.index("eta: "):] if "eta: " in clean else clean
                log(f"    {shown[:220]}")
        rc = proc.wait()
    elapsed = time.perf_counter() - t0
    if rc == 0 and is_finished(out):
        rec = read_record(out / RECORD_NAME)
        metrics = ", ".join(f"{k} {v:.1f}" for k, v in rec["metrics"].items())
        log(f"[runner] {name}: finished in {elapsed:.0f}s: {metrics}")
        return "finished"
    try:
        why = read_record(out / RECORD_NAME).get("error") or last_error
    except RecordError:
        why = last_error
    log(f"[runner] {name}: FAILED after {elapsed:.0f}s ({why or f'exit status {rc}'}); see {out / 'console.log'}")
    return "failed"


def run_all(trials: list[Trial], *, trials_requested: int, env: dict[str, str], gpus: int = 1,
            extra: list[str] | None = None, log=print) -> dict[str, int]:
    """Run trials in order; an interrupted or failed trial never touches the finished ones."""
    counts = {"skipped": 0, "finished": 0, "failed": 0}
    for trial in trials:
        counts[run_trial(trial, trials_requested=trials_requested, env=env, gpus=gpus, extra=extra or [], log=log)] += 1
    return counts


def print_table(output: Path, with_paper: bool = False) -> int:
    """Render the comparison table of every record under ``output`` (``python -m results``)."""
    from results.cli import main as results_main

    argv = ["--runs", str(output)] + (["--with-paper"] if with_paper else [])
    return results_main(argv)


def child_env(datasets_root: Path | None) -> dict[str, str]:
    env = dict(os.environ)
    if datasets_root is not None:
        env["DETECTRON2_DATASETS"] = str(datasets_root)
    env.setdefault("PYTHONWARNINGS", "ignore")
    return env
