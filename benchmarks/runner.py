"""Run fine-tuning trials (one ``transfer/train_net.py`` process each) and keep what finished.

Shared by every benchmark runner: distinct seeds per trial, finished trials skipped (their
``trial_record.json`` says so), an interrupted trial resumed from Detectron2's last checkpoint, a
readable console (progress lines only; the full log stays in the trial dir), and the comparison table.

What a sweep survives:

* **Two runners on one sweep** (a re-submitted job): each trial is trained by the runner holding its lock
  (``benchmarks/locks.py``); the other skips it, says who holds it, goes on with the rest, then waits for
  the held trials (taking one over if its holder dies) so that both end with the full table.
* **The runner dying**: a trial runs in its own process group and dies with the runner (``PR_SET_PDEATHSIG``
  via ``core/process.py``), also on ``SIGKILL``; ``Ctrl-C``/``SIGTERM`` stop the current trial
  (``SIGINT`` to its group, then ``SIGKILL``) and leave it resumable.
* **A full or read-only disk**: free space is checked before each trial; ``ENOSPC``/``EROFS``/``EACCES`` in
  the runner or in a trial end the sweep with one line naming the path; finished records are never touched.
* **A trial that hangs** (a deadlock, a stuck file system): a trial that prints nothing for ``stall_s``
  seconds (``--stall-limit-min``, default 30 minutes; Detectron2 prints every 20 iterations and every few
  seconds of an evaluation) is stopped and recorded as failed with that reason.
* **A trial that dies without its record** (an error before training, a crash, a kill): the runner writes
  a failed record with the one-line reason, so ``benchmarks.status`` and the tables show it as failed.
* A finished trial keeps ``model_final.pth`` only: its periodic checkpoints are deleted.
"""

from __future__ import annotations

import errno
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from pathlib import Path

from benchmarks.plan import Launch, Row, Trial, plan_trials, slug  # noqa: F401  (the runner's vocabulary)
from benchmarks.locks import TrialLock, describe, is_locked
from core.records import RECORD_NAME, RecordError, is_finished, read_record
from core.process import DIE_WITH_PARENT_ENV

REPO = Path(__file__).resolve().parents[1]
TRAIN_NET = REPO / "transfer" / "train_net.py"
# Lines of Detectron2's log worth showing on the console while a trial runs.
_PROGRESS = re.compile(r"(eta: |copypaste: |trial record written|Starting training|Resuming|input format|"
                       r"load report|error|Error)")
DISK_ERRNOS = {errno.ENOSPC: "the disk is full", errno.EROFS: "the file system is read-only",
               errno.EACCES: "permission denied", errno.EDQUOT: "the disk quota is exceeded"}
EXIT_DISK, EXIT_STOPPED = 3, 4  # train_net.py's exit statuses: disk error; stopped on request, checkpoint saved
EXIT_INTERRUPTED = 130   # SweepStop's exit status when a signal stopped the sweep (trials resumable)
STALL_LIMIT_S = 30 * 60  # a trial printing nothing for this long is stopped as hung (watchdog)
STOP_GRACE_S = 120       # a stopped trial gets this long to save its checkpoint and exit before SIGKILL
WAIT_POLL_S = 5.0        # how often a runner looks at trials another runner holds


class SweepStop(Exception):
    """Ends the whole sweep (full disk, interrupt); the message is one actionable line."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def disk_line(e: OSError, what: str = "writing") -> str:
    where = e.filename or "the output directory"
    reason = DISK_ERRNOS.get(e.errno or 0, e.strerror or str(e))
    return (f"{what} {where}: {reason}; free space or fix the permissions there, then rerun the same command "
            "(finished trials are kept; an interrupted one resumes)")


def free_bytes(path: Path) -> int:
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


def trial_footprint(row: Row, keep: int = 1) -> int:
    """Peak bytes a running trial needs: ``keep`` periodic checkpoints, the next one while it is written,
    and ``model_final.pth``."""
    return (keep + 2) * row.checkpoint_bytes


def prune_periodic(output: Path) -> int:
    """Delete the periodic checkpoints of a finished trial (``model_final.pth`` stays); bytes freed."""
    freed = 0
    for p in output.glob("model_[0-9]*.pth"):
        try:
            size = p.stat().st_size
            p.unlink()
        except OSError:  # gone already (another runner), or a read-only folder: kept, no harm
            continue
        freed += size
    return freed


def _command(trial: Trial, trials_requested: int, launch: Launch, extra: list[str], resume: bool,
             train_net: Path | None = None) -> list[str]:
    row = trial.row
    cmd = [sys.executable, str(train_net or TRAIN_NET), "--config-file", str(row.config), *launch.args(),
           "--seed", str(trial.seed), "--trial", str(trial.index), "--trials-requested", str(trials_requested),
           "--label", row.label, "--kind", row.kind, *extra]
    if row.method:
        cmd += ["--method", row.method]
    if row.order is not None:
        cmd += ["--row-order", str(row.order)]
    if row.input_format:
        cmd += ["--input-format", row.input_format]
    if resume:
        cmd.append("--resume")
    return cmd + [*row.opts, "MODEL.WEIGHTS", row.weights, "OUTPUT_DIR", str(trial.output), *trial.opts]


_ACTIVE: set[subprocess.Popen] = set()  # the trials running now (several with --parallel-trials)
_ACTIVE_LOCK = threading.Lock()


def _stop(proc: subprocess.Popen, grace: float = STOP_GRACE_S, sig: int = signal.SIGINT) -> None:
    """Stop a trial's whole process group: ``sig`` (the trial saves its iteration and exits), then SIGKILL."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, sig)
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass
    except ProcessLookupError:
        return
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def stop_all(grace: float = STOP_GRACE_S, sig: int = signal.SIGINT) -> None:
    """Stop every running trial of this process (each saves its current iteration)."""
    with _ACTIVE_LOCK:
        procs = list(_ACTIVE)
    for proc in procs:
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
    for proc in procs:
        _stop(proc, grace=grace, sig=sig)


def request_checkpoint_and_wait(grace: float = 80) -> None:
    """SLURM time limit or preemption: every running trial saves its iteration (SIGUSR1) and exits."""
    stop_all(grace=grace, sig=signal.SIGUSR1)


def run_trial(trial: Trial, *, trials_requested: int, env: dict[str, str], launch: Launch | None = None,
              extra: list[str] | None = None, log=print, keep_checkpoints: int = 1, lock: bool = True,
              train_net: Path | None = None, stall_s: float = STALL_LIMIT_S) -> str:
    """Run (or skip / resume) one trial; return 'skipped', 'finished', 'failed' or 'busy' (held elsewhere).

    ``lock=False``: the caller already owns the trial (the other nodes of a multi-node SLURM job).
    ``stall_s``: stop the trial as hung after that many seconds without a line of output (0 or less: never).
    Raises :class:`SweepStop` on a disk error or an interrupt (the trial stays resumable).
    """
    launch = launch or Launch()
    out = trial.output
    name = f"{trial.row.label} / trial {trial.index} (seed {trial.seed})"
    from benchmarks.sweep_checks import identity_problem

    problem = identity_problem(trial)
    if problem:
        raise SweepStop(problem)
    if is_finished(out):
        freed = prune_periodic(out)  # left behind when a runner died between the record and the pruning
        log(f"[runner] {name}: already finished, skipped ({out / RECORD_NAME})"
            + (f"; {freed / 1e6:.0f} MB of its periodic checkpoints deleted" if freed else ""))
        return "skipped"
    try:
        held = TrialLock(out)
        if lock and not held.acquire():
            log(f"[runner] {name}: held by {describe(held.owner)}; leaving it to that runner")
            return "busy"
    except OSError as e:
        raise SweepStop(disk_line(e, "cannot create the trial folder")) from None
    try:
        if is_finished(out):  # finished while we were taking the lock
            log(f"[runner] {name}: finished by another runner, skipped")
            return "skipped"
        need = trial_footprint(trial.row, keep_checkpoints)
        if need and free_bytes(out) < need:
            raise SweepStop(f"only {free_bytes(out) / 1e9:.1f} GB free under {out}, a trial of this row needs about "
                            f"{need / 1e9:.1f} GB (checkpoints); free space and rerun the same command "
                            "(finished trials are kept)")
        return _run_locked(trial, name, trials_requested, {**env, **launch.env}, launch, extra or [], log, train_net,
                           stall_s)
    finally:
        held.release()


class _Copier(threading.Thread):
    """Copies a trial's output to its ``console.log`` and shows the progress lines; keeps the last error line."""

    def __init__(self, proc: subprocess.Popen, console, path: Path, log) -> None:
        super().__init__(daemon=True, name=f"output of {path.parent.name}")
        self.proc, self.console, self.path, self.log = proc, console, path, log
        self.last_error = ""
        self.last_output = time.monotonic()  # the watchdog's measure of progress
        self.error: OSError | None = None
        self.start()

    def run(self) -> None:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM, signal.SIGHUP})
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.last_output = time.monotonic()
            if self.error is None:
                try:
                    self.console.write(line)
                except OSError as e:  # a full disk: the runner stops the trial and the sweep
                    self.error = OSError(e.errno, e.strerror, str(self.path))
            clean = re.sub(r"\x1b\[[0-9;]*m", "", line.rstrip())
            if clean.startswith("train_net.py: error"):
                self.last_error = clean
            if _PROGRESS.search(clean) and "Build settings" not in clean:
                shown = clean[clean.index("eta: "):] if "eta: " in clean else clean
                self.log(f"    {shown[:220]}")


def _run_locked(trial: Trial, name: str, trials_requested: int, env: dict[str, str], launch: Launch, extra: list[str],
                log, train_net: Path | None, stall_s: float = STALL_LIMIT_S) -> str:
    out = trial.output
    resume = (out / "last_checkpoint").exists()
    cmd = _command(trial, trials_requested, launch, extra, resume, train_net)
    log(f"[runner] {name}: {'resuming' if resume else 'starting'} -> {out}")
    t0, t0_wall = time.perf_counter(), time.time()
    try:
        console = open(out / "console.log", "a", buffering=1)  # line by line: `tail -f` shows progress
    except OSError as e:
        raise SweepStop(disk_line(e)) from None
    stalled = ""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                            env={**env, DIE_WITH_PARENT_ENV: str(os.getpid())}, start_new_session=True)
    with _ACTIVE_LOCK:
        _ACTIVE.add(proc)
    copier = _Copier(proc, console, out / "console.log", log)
    try:
        # The child's output is copied by a thread; this thread only waits, so a signal for the runner
        # (Ctrl-C, SIGTERM) is handled at once whichever thread the kernel delivered it to.
        while proc.poll() is None and copier.error is None:
            time.sleep(0.2)
            if stall_s > 0 and time.monotonic() - copier.last_output > stall_s:
                stalled = f"no output for {_minutes(stall_s)} (hung?); stopped by the runner's watchdog"
                log(f"[runner] {name}: {stalled}")
                _stop(proc, grace=min(STOP_GRACE_S, 30))
                break
        if copier.error is not None:
            raise copier.error
        copier.join()
        if copier.error is not None:
            raise copier.error
        rc = proc.wait()
    except OSError as e:
        _stop(proc, grace=10)
        raise SweepStop(disk_line(e)) from None
    except KeyboardInterrupt:
        log(f"[runner] {name}: stopping; it saves its current iteration and resumes from there when rerun")
        _stop(proc)
        raise SweepStop("interrupted; rerun the same command to continue (finished trials are skipped, "
                        "this one resumes from the iteration it saved)", exit_code=EXIT_INTERRUPTED) from None
    finally:
        if proc.poll() is None:
            _stop(proc, grace=5)
        with _ACTIVE_LOCK:
            _ACTIVE.discard(proc)
        copier.join(timeout=10)
        try:
            console.close()
        except OSError:
            pass
    last_error = copier.last_error
    elapsed = time.perf_counter() - t0
    if stalled:
        record_failure(trial, stalled, trials_requested, extra)
        log(f"[runner] {name}: FAILED after {elapsed:.0f}s ({stalled}); see {out / 'console.log'}")
        return "failed"
    if rc == EXIT_DISK:
        raise SweepStop(last_error.removeprefix("train_net.py: error: ") or "a trial could not write to disk")
    if rc == EXIT_STOPPED:
        log(f"[runner] {name}: {last_error.removeprefix('train_net.py: error: ') or 'stopped'}")
        raise SweepStop("stopped on request; rerun the same command to continue (finished trials are skipped, this "
                        "one resumes from the iteration it saved)", exit_code=EXIT_INTERRUPTED)
    if rc == 0 and is_finished(out):
        rec = read_record(out / RECORD_NAME)
        metrics = ", ".join(f"{k} {v:.1f}" for k, v in rec["metrics"].items())
        freed = prune_periodic(out)
        log(f"[runner] {name}: finished in {elapsed:.0f}s: {metrics}"
            + (f" ({freed / 1e6:.0f} MB of periodic checkpoints deleted)" if freed else ""))
        return "finished"
    why = _fresh_error(out, t0_wall)
    if not why:  # it died without writing its record (before training, a crash, a kill): leave one
        why = last_error.removeprefix("train_net.py: error: ") or f"exit status {rc}"
        record_failure(trial, why, trials_requested, extra)
    log(f"[runner] {name}: FAILED after {elapsed:.0f}s ({why}); see {out / 'console.log'}")
    return "failed"


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:g} min" if seconds >= 60 else f"{seconds:g} s"


def _fresh_error(out: Path, since: float) -> str:
    """The error of a failed record this run of the trial wrote ('' when there is none)."""
    try:
        if (out / RECORD_NAME).stat().st_mtime < since - 1:
            return ""
        rec = read_record(out / RECORD_NAME)
    except (OSError, RecordError):
        return ""
    return str(rec.get("error") or "failed") if rec["status"] == "failed" else ""


def record_failure(trial: Trial, why: str, trials_requested: int, extra: list[str]) -> None:
    """A failed record for a trial that ended without one (died before or while training, or hung); best effort."""
    from core.records import write_record

    if is_finished(trial.output):  # a finished trial's record is never replaced
        return
    try:
        from transfer.tasks import task_of
        from transfer.config import arch_of, load_cfg, schedule_of

        cfg = load_cfg(str(trial.row.config), [*trial.row.opts, *trial.opts])
        task = _flag(extra, "--task") or task_of(cfg)
        rec = {"task": task, "arch": _flag(extra, "--arch-name") or arch_of(cfg),
               "schedule": _flag(extra, "--schedule") or schedule_of(cfg, task),
               "pretrain": {"label": trial.row.label, "kind": trial.row.kind, "method": trial.row.method or None,
                            "order": trial.row.order, "weights": trial.row.weights or None, "sha256": None},
               "trial": trial.index, "seed": trial.seed, "trials_requested": trials_requested, "status": "failed",
               "error": why, "metrics": {}, "tiny": "--tiny" in extra, "written_by": "runner",
               "demonstrates": dict(zip(("arch", "schedule"), _flag(extra, "--demonstrates").split("/", 1)))
               if "/" in _flag(extra, "--demonstrates") else None,
               "created": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())}
        write_record(trial.output, rec)
    except Exception:  # noqa: BLE001  (the runner's own log line still says why)
        pass


def _flag(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1] if flag in argv[:-1] else ""


def _raise_on_signal(signum, frame):  # SIGTERM / SIGHUP end the sweep like Ctrl-C
    raise KeyboardInterrupt


def _install_stop_signals() -> dict:
    try:
        return {s: signal.signal(s, _raise_on_signal) for s in (signal.SIGTERM, signal.SIGHUP)}
    except ValueError:  # not the main thread: the caller handles signals
        return {}


def slot_launches(parallel: int, gpus: int, cpus: int | None = None) -> list[Launch]:
    """One :class:`Launch` per parallel slot: disjoint GPU sets (``CUDA_VISIBLE_DEVICES``) on a GPU machine,
    an equal share of the CPU threads everywhere."""
    import torch

    cpus = cpus or os.cpu_count() or 1
    share = max(1, cpus // max(parallel, 1))
    limit = os.environ.get("OMP_NUM_THREADS", "")
    threads = str(min(share, int(limit)) if limit.isdigit() and int(limit) > 0 else share)  # the user's limit holds
    if not torch.cuda.is_available():
        return [Launch(gpus=gpus, env={"OMP_NUM_THREADS": threads}) for _ in range(parallel)]
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    devices = [d for d in visible.split(",") if d] if visible else [str(i) for i in range(torch.cuda.device_count())]
    if parallel * gpus > len(devices):
        raise SweepStop(f"--parallel-trials {parallel} x --gpus {gpus} needs {parallel * gpus} GPUs, "
                        f"{len(devices)} are visible")
    return [Launch(gpus=gpus, env={"CUDA_VISIBLE_DEVICES": ",".join(devices[i * gpus:(i + 1) * gpus]),
                                   "OMP_NUM_THREADS": threads}) for i in range(parallel)]


def run_all(trials: list[Trial], *, trials_requested: int, env: dict[str, str], gpus: int = 1,
            extra: list[str] | None = None, log=print, wait: bool = True, keep_checkpoints: int = 1,
            wait_poll: float = WAIT_POLL_S, parallel: int = 1, launches: list[Launch] | None = None,
            stall_s: float = STALL_LIMIT_S) -> dict[str, int]:
    """Run trials (``parallel`` at a time, each in its slot); trials another runner holds are waited for at
    the end (``wait``). Raises :class:`SweepStop` when the sweep must end early; finished trials are never
    touched.
    """
    counts = {"skipped": 0, "finished": 0, "failed": 0, "elsewhere": 0}
    launches = launches or (slot_launches(parallel, gpus) if parallel > 1 else [Launch(gpus=gpus)])
    kw = dict(trials_requested=trials_requested, env=env, extra=extra or [], keep_checkpoints=keep_checkpoints,
              stall_s=stall_s)
    previous = _install_stop_signals()
    try:
        held = _run_slots(trials, launches, kw, counts, log)
        if held and not wait:
            log(f"[runner] {len(held)} trial(s) held by other runners; not waiting (--no-wait)")
        announced = False
        while held and wait:
            if not announced:
                log(f"[runner] waiting for {len(held)} trial(s) another runner is training ...")
                announced = True
            time.sleep(wait_poll)
            for trial in list(held):
                if is_finished(trial.output):
                    held.remove(trial)
                    counts["elsewhere"] += 1
                elif not is_locked(trial.output):  # its runner stopped before finishing it: take it over
                    result = run_trial(trial, launch=launches[0], log=log, **kw)
                    if result != "busy":
                        held.remove(trial)
                        counts["elsewhere" if result == "skipped" else result] += 1
        counts["held"] = len(held)
    except KeyboardInterrupt:
        stop_all()
        raise SweepStop("interrupted; rerun the same command to continue (finished trials are skipped, "
                        "running ones resume from the iteration they saved)", exit_code=EXIT_INTERRUPTED) from None
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    return counts


def _run_slots(trials: list[Trial], launches: list[Launch], kw: dict, counts: dict[str, int], log) -> list[Trial]:
    """Run ``trials`` over the slots of ``launches``; return the ones another runner holds."""
    held: list[Trial] = []
    if len(launches) == 1:
        for trial in trials:
            result = run_trial(trial, launch=launches[0], log=log, **kw)
            if result == "busy":
                held.append(trial)
            else:
                counts[result] += 1
        return held
    free: queue.Queue[int] = queue.Queue()
    for slot in range(len(launches)):
        free.put(slot)
    lock = threading.Lock()

    def one(trial: Trial) -> str:
        slot = free.get()
        try:
            return run_trial(trial, launch=launches[slot], log=lambda line: log(f"[slot {slot}] {line}"), **kw)
        finally:
            free.put(slot)

    with ThreadPoolExecutor(max_workers=len(launches), thread_name_prefix="trial") as pool:
        futures = {pool.submit(one, t): t for t in trials}
        pending = set(futures)
        try:
            while pending:
                done, pending = wait(pending, timeout=0.5, return_when=FIRST_EXCEPTION)
                for fut in done:
                    exc = fut.exception()
                    if isinstance(exc, SweepStop):
                        for other in pending:
                            other.cancel()
                        stop_all()
                        raise exc
                    if exc is not None:
                        raise exc
                    with lock:
                        if fut.result() == "busy":
                            held.append(futures[fut])
                        else:
                            counts[fut.result()] += 1
        except KeyboardInterrupt:
            for fut in pending:
                fut.cancel()
            stop_all()
            raise
    return held


def print_table(output: Path, with_paper: bool = False, extra: list[str] | None = None) -> int:
    """Render the comparison table of every record under ``output``: the next stage, ``python -m results``, in its
    own process (the records on disk are the interface between the two stages)."""
    argv = ["--runs", str(output)] + (["--paper-rows"] if with_paper else []) + list(extra or [])
    proc = subprocess.run([sys.executable, "-m", "results", *argv], cwd=REPO, env=child_env(None), capture_output=True,
                          text=True)
    sys.stdout.write(proc.stdout)  # through this process's streams, in order with the runner's own lines
    sys.stderr.write(proc.stderr)
    return proc.returncode


def child_env(datasets_root: Path | None) -> dict[str, str]:
    env = dict(os.environ)
    if datasets_root is not None:
        env["DETECTRON2_DATASETS"] = str(datasets_root)
    env.setdefault("PYTHONWARNINGS", "ignore")
    return env
