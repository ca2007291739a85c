"""One owner per trial: an advisory lock in the trial folder, held while a runner trains the trial.

Two runners started on the same sweep (a re-submitted job, a second terminal) must not both train a
trial: they would interleave logs, write checkpoints twice and keep whichever record came last. Before
a trial starts its runner takes ``<trial>/.lock`` with ``fcntl.flock`` (non-blocking); the kernel drops
the lock when the holder dies, however it dies, so a crashed runner never leaves a stale lock. The
holder's host, pid and a heartbeat (refreshed every ``HEARTBEAT_S`` seconds) go to ``<trial>/.owner.json``
for the status view and for the second rule below.

**Shared filesystems.** ``flock`` works across machines on NFSv4 and Lustre/GPFS mounted with locking,
but some NFS setups (``nolock``, old NFSv3 without lockd) grant every ``flock`` locally. So a lock is also
refused while ``.owner.json`` names *another* host whose heartbeat is younger than ``STALE_S``: a runner on
another node that holds the trial keeps it, and a node that died stops refreshing and is taken over after
``STALE_S`` seconds. A heartbeat dated more than ``SKEW_S`` seconds in the future (a wrong clock, a
hand-edited file) proves nothing about a live holder and counts as stale, so a runner never waits for it
for ever.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any

from cluster.jobs import current_job_id
from core.atomic import write_atomic

LOCK_NAME, OWNER_NAME = ".lock", ".owner.json"
_RUNNER_SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2}
HEARTBEAT_S = 30.0
STALE_S = 300.0
PROBE_RETRIES = 10  # a runner's tries (50 ms apart) before it takes the trial for held: outlasts a status probe
SKEW_S = 60.0  # clocks of two nodes may differ by this much


def heartbeat_age(owner: dict[str, Any] | None, now: float | None = None) -> float | None:
    """Seconds since the owner's last heartbeat; None when it has none that can be believed (missing, not a
    number, or more than ``SKEW_S`` in the future)."""
    beat = (owner or {}).get("heartbeat")
    if isinstance(beat, bool) or not isinstance(beat, (int, float)) or beat != beat:
        return None
    age = (time.time() if now is None else now) - float(beat)
    return None if age < -SKEW_S else max(age, 0.0)


def read_owner(trial_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The last holder's ``{"host", "pid", "started", "heartbeat"}`` (it may have finished since)."""
    try:
        with open(Path(trial_dir) / OWNER_NAME, "rb") as f:
            owner = json.loads(f.read(1 << 16))
    except (OSError, ValueError, RecursionError):
        return None
    return owner if isinstance(owner, dict) else None


def describe(owner: dict[str, Any] | None) -> str:
    if not owner:
        return "another runner"
    age = heartbeat_age(owner)
    job = f", SLURM job {str(owner['job'])[:40]}" if owner.get("job") else ""
    alive = f"alive {age:.0f}s ago" if age is not None else "no believable heartbeat"
    return f"{str(owner.get('host', '?'))[:80]}:{str(owner.get('pid', '?'))[:20]}{job} ({alive})"


def is_locked(trial_dir: str | os.PathLike) -> bool:
    """True while some process holds the trial (probes the lock without keeping it)."""
    lock = TrialLock(trial_dir)
    if lock.acquire(write_owner=False):
        lock.release()
        return False
    return True


class TrialLock:
    """``with TrialLock(dir) as lock: if lock.held: ...`` or ``acquire()``/``release()``."""

    def __init__(self, trial_dir: str | os.PathLike) -> None:
        self.dir = Path(trial_dir)
        self.held = False
        self._fd: int | None = None
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None
        self.owner: dict[str, Any] | None = None  # the other holder when acquire() failed

    def acquire(self, write_owner: bool = True) -> bool:
        """Take the lock without waiting for a holder; False (and :attr:`owner` set) when someone else holds it.

        A runner (``write_owner``) retries for a moment: :func:`is_locked` probes (``benchmarks.status``,
        ``--wait``) hold the lock for a fraction of a millisecond, a runner for the whole trial."""
        self.dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o666)
        for attempt in range(PROBE_RETRIES if write_owner else 1):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if attempt + 1 < (PROBE_RETRIES if write_owner else 1):
                    time.sleep(0.05)
        else:
            os.close(fd)
            self.owner = read_owner(self.dir)
            return False
        owner = read_owner(self.dir)
        age = heartbeat_age(owner)
        if owner and owner.get("host") != socket.gethostname() and age is not None and age < STALE_S \
                and owner.get("active", True) is not False:
            os.close(fd)  # flock granted locally but a live runner on another node holds it (see module doc)
            self.owner = owner
            return False
        self._fd, self.held = fd, True
        if write_owner:
            self._write_owner(active=True)
            self._beat = threading.Thread(target=self._heartbeat, daemon=True, name=f"heartbeat {self.dir.name}")
            self._beat.start()
        return True

    def _write_owner(self, active: bool) -> None:
        now = time.time()
        prev = read_owner(self.dir) or {}
        started = prev.get("started", now) if prev.get("pid") == os.getpid() else now
        info = {"host": socket.gethostname(), "pid": os.getpid(), "started": started, "heartbeat": now,
                "active": active, "job": current_job_id()}
        try:
            write_atomic(self.dir / OWNER_NAME, lambda tmp: tmp.write_text(json.dumps(info)))
        except OSError:
            pass  # a full disk must not break the lock itself; the flock still holds

    def _heartbeat(self) -> None:
        # Signals for the runner (Ctrl-C, SIGTERM, SLURM's SIGUSR2) must reach its main thread: a signal the
        # kernel hands to this thread would wait there until the main thread next runs Python code.
        signal.pthread_sigmask(signal.SIG_BLOCK, _RUNNER_SIGNALS)
        while not self._stop.wait(HEARTBEAT_S):
            self._write_owner(active=True)

    def release(self) -> None:
        if not self.held:
            return
        self._stop.set()
        if self._beat is not None:
            self._beat.join(timeout=5)
            self._write_owner(active=False)
        assert self._fd is not None
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd, self.held = None, False

    def __enter__(self) -> "TrialLock":
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()
