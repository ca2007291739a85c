"""Where a sweep stands: ``python -m benchmarks.status OUTPUT [--watch [SECONDS]]``.

For every trial a runner planned (``sweep.json``, written before the first trial) it prints one of:
finished (the metrics), running (iteration / total, s/iter and ETA from the trial's ``metrics.json``;
host and SLURM job from its lock), queued (the SLURM job, its state and why it waits; a requeued job says
the iteration it resumes from), interrupted (resumable from iteration N), cancelled (its SLURM job was),
failed (the one-line reason: the trial's record, or how its SLURM job ended), not started; then what is left
of the sweep and an estimate of the time it needs. The header says how many trials ran at once (for a
SLURM sweep: measured from the trials' run times, since the cluster decides).

SLURM states come from ``squeue -t all`` and then ``sacct`` (``cluster/jobs.py``), so they are right with
and without accounting. Tables can be made at any time from what has finished: ``python -m results --runs OUTPUT``.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.launcher import recorded_job
from benchmarks.locks import describe, is_locked, read_owner
from cluster.jobs import GONE, job_state
from core.records import RECORD_NAME, RecordError, read_record
from core.cli import ArgumentParser


@dataclass
class TrialStatus:
    row: str
    trial: int
    state: str        # finished | running | queued | interrupted | cancelled | failed | not started
    detail: str = ""
    remaining_s: float | None = None  # estimated seconds to finish (running / interrupted / queued)


def _progress(trial_dir: Path) -> tuple[int | None, int | None, float | None]:
    """(last iteration, MAX_ITER, seconds per iteration) from Detectron2's metrics.json and config.yaml."""
    it = sec = None
    lines = []
    try:
        with open(trial_dir / "metrics.json") as f:
            lines = [json.loads(line) for line in f if line.strip()]
    except (OSError, ValueError):
        pass
    timed = [r for r in lines if "iteration" in r and "time" in r]
    if timed:
        it = int(timed[-1]["iteration"])
        sec = sum(float(r["time"]) for r in timed[-20:]) / len(timed[-20:])
    elif lines:
        it = max(int(r.get("iteration", 0)) for r in lines)
    total = None
    try:
        from core import safe_yaml

        total = int(safe_yaml.load(trial_dir / "config.yaml", "trial config")["SOLVER"]["MAX_ITER"])
    except (ValueError, KeyError, TypeError):  # safe_yaml.YamlError is a ValueError
        pass
    return it, total, sec


def _fmt_s(seconds: float) -> str:
    seconds = int(seconds)
    d, rem = divmod(seconds, 86400)
    h, rem = divmod(rem, 3600)
    m = rem // 60
    return f"{d}d{h:02d}h" if d else f"{h}h{m:02d}m" if h else f"{m}m"


def trial_status(row: str, trial: int, trial_dir: Path) -> TrialStatus:
    try:
        rec = read_record(trial_dir / RECORD_NAME)
    except RecordError:
        rec = None
    if rec and rec["status"] == "finished":
        metrics = ", ".join(f"{k} {v:.1f}" for k, v in list(rec["metrics"].items())[:3])
        resumed = (rec.get("resumed") or {}).get("count")
        return TrialStatus(row, trial, "finished", metrics + (f" (resumed {resumed}x)" if resumed else ""))
    it, total, sec = _progress(trial_dir)
    left = (total - it - 1) * sec if (it is not None and total and sec) else None
    where = f"iteration {it + 1}/{total}" if it is not None and total else "starting"
    if trial_dir.exists() and is_locked(trial_dir):
        eta = f", {sec:.2f} s/iter, ETA {_fmt_s(left)}" if left is not None else ""
        return TrialStatus(row, trial, "running", f"{where}{eta} on {describe(read_owner(trial_dir))}", left)
    job = recorded_job(trial_dir)
    ended = None
    resumable = (trial_dir / "last_checkpoint").exists()
    if job and job.get("cluster") == "slurm":
        jid, st = job["job_id"], job_state(job["job_id"])
        if st.state == "RUNNING":  # the job runs, its trial has not taken the lock yet
            return TrialStatus(row, trial, "running", f"starting (SLURM job {jid})", left)
        if st.active:  # queued, requeued, or SLURM cannot be asked
            again = f", requeued: resumes from {where}" if resumable else ""
            return TrialStatus(row, trial, "queued", f"SLURM job {jid} ({st.describe()}){again}", left)
        if st.state != GONE:
            ended = (jid, st)
    if rec and rec["status"] == "failed":
        return TrialStatus(row, trial, "failed", str(rec.get("error") or "no message"))
    if ended and ended[1].state == "CANCELLED":
        more = f"; resumable from {where}" if resumable else ""
        return TrialStatus(row, trial, "cancelled", f"SLURM job {ended[0]} cancelled{more}", left if resumable else None)
    if ended and ended[1].state != "COMPLETED":
        more = f"; resumable from {where}" if resumable else ""
        return TrialStatus(row, trial, "failed", f"SLURM job {ended[0]} ended {ended[1].describe()} without a trial "
                                                 f"record{more}")
    if resumable:
        return TrialStatus(row, trial, "interrupted", f"resumable from {where}", left)
    return TrialStatus(row, trial, "not started")


def ran_at_once(trial_dirs: list[Path], now: float | None = None) -> int:
    """The most trials that ran at the same time, from each trial's last run (``.owner.json``: start, last
    heartbeat or release; a held trial runs until now)."""
    now = time.time() if now is None else now
    events = []
    for d in trial_dirs:
        owner = read_owner(d)
        if not owner or "started" not in owner:
            continue
        end = now if d.exists() and is_locked(d) else float(owner.get("heartbeat", owner["started"]))
        events += [(float(owner["started"]), 1), (max(end, float(owner["started"])), -1)]
    best = cur = 0
    for _, step in sorted(events, key=lambda e: (e[0], e[1])):  # an end before a start at the same instant
        cur += step
        best = max(best, cur)
    return best


def sweeps(output: Path) -> list[Path]:
    return sorted(output.rglob("sweep.json")) if output.is_dir() else []


def report(output: Path) -> list[str]:
    lines: list[str] = []
    found = sweeps(output)
    if not found:
        return [f"no sweep under {output} (a runner writes sweep.json before its first trial)"]
    for sweep in found:
        doc = json.loads(sweep.read_text())
        statuses = [trial_status(t["row"], t["trial"], Path(t["dir"])) for t in doc["trials"]]
        slurm = doc.get("launcher") == "slurm"
        running = sum(s.state == "running" for s in statuses)
        if slurm:  # the cluster decides how many run at once: say how many did
            at_once = max(ran_at_once([Path(t["dir"]) for t in doc["trials"]]), running)
            limit = f", array limit {doc['array_parallelism']}" if doc.get("array_parallelism") else ""
            how = f"{at_once} at a time so far{limit}" if at_once else f"none started yet{limit}"
        else:
            at_once = doc.get("parallel_trials", 1)
            how = f"{at_once} at a time"
        lines.append(f"{sweep.parent} ({doc.get('runner', '?')}, {len(statuses)} trials, launcher "
                     f"{doc.get('launcher', 'local')}, {how})")
        width = max(len(s.row) for s in statuses)
        for s in statuses:
            lines.append(f"  {s.row:<{width}}  trial {s.trial}  {s.state:<11} {s.detail}".rstrip())
        counts = {k: sum(s.state == k for s in statuses) for k in
                  ("finished", "running", "queued", "interrupted", "cancelled", "failed", "not started")}
        lines.append("  " + ", ".join(f"{n} {k}" for k, n in counts.items() if n))
        known = [s.remaining_s for s in statuses if s.remaining_s is not None]
        per_trial = _per_trial_seconds(statuses, doc)
        todo = sum(1 for s in statuses if s.state in ("not started", "queued", "interrupted") and s.remaining_s is None)
        if known or (todo and per_trial):
            at_once = max(1, at_once, counts["running"])
            total = (sum(known) + todo * (per_trial or 0)) / at_once
            lines.append(f"  remaining: about {_fmt_s(total)} at {at_once} trial(s) at a time")
    return lines


def _per_trial_seconds(statuses: list[TrialStatus], doc: dict) -> float | None:
    """Wall time of one whole trial, from the trials' own s/iter (None when no trial has run yet)."""
    for t in doc["trials"]:
        it, total, sec = _progress(Path(t["dir"]))
        if total and sec:
            return total * sec
    return None


def main(argv: list[str] | None = None) -> int:
    p = ArgumentParser(prog="python -m benchmarks.status", description=__doc__.splitlines()[0])
    p.add_argument("output", type=Path, help="a runner's --output folder")
    p.add_argument("--watch", nargs="?", type=float, const=30.0, default=None, metavar="SECONDS",
                   help="refresh every SECONDS (default 30) until every trial is finished or failed")
    args = p.parse_args(argv)
    while True:
        lines = report(args.output)
        if args.watch:
            print("\033[2J\033[H", end="")
        print("\n".join(lines))
        done = all(" running" not in ln and " queued" not in ln for ln in lines if ln.startswith("  "))
        if not args.watch or done:
            return 0 if sweeps(args.output) else 1
        try:
            time.sleep(args.watch)
        except KeyboardInterrupt:
            return 0


if __name__ == "__main__":
    sys.exit(main())
