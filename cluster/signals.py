"""One signal rule for every training process.

A training process (a fine-tuning trial, a MoCo run) saves a checkpoint of its current iteration and stops on
any of :func:`stop_signals`: ``SIGINT`` (Ctrl-C), ``SIGTERM`` (a runner stopping it, SLURM preempting or
requeueing the job), ``SIGUSR1`` (the runner asking for a checkpoint) and the signal the launcher asks SLURM
to send before a time limit (submitit's ``--signal=USR2@90``; ``SUBMITIT_PREEMPT_SIGNAL`` changes it). SLURM
sends that signal to *every* process of the job, so each must handle it.

Processes the training process forks (Detectron2's evaluation pools, data-loader workers) start with the
default dispositions (:func:`default_dispositions_in_forks`): a worker that inherited the trainer's Python
handler would swallow the ``SIGTERM`` of ``Pool.terminate()`` and its ``join()`` would wait forever.
"""

from __future__ import annotations

import os
import signal

REQUEUE_SIGNAL_ENV = "SUBMITIT_PREEMPT_SIGNAL"  # submitit's variable: the signal in ``--signal=SIG@90``
_BASE = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)
_registered = False


def requeue_signal() -> signal.Signals:
    """The signal SLURM sends before a time limit, as the launcher asks for it (default ``SIGUSR2``)."""
    name = os.environ.get(REQUEUE_SIGNAL_ENV, "USR2").upper().removeprefix("SIG")
    return getattr(signal, f"SIG{name}", signal.SIGUSR2)


def stop_signals() -> tuple[signal.Signals, ...]:
    """Every signal on which a training process saves its current iteration and stops."""
    extra = requeue_signal()
    return _BASE + ((extra,) if extra not in _BASE else ())


def default_disposition(sig: int):
    """Python's own start-up disposition: ``KeyboardInterrupt`` for ``SIGINT``, the OS default otherwise."""
    return signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL


def restore_defaults(signals=None) -> None:
    """Put ``signals`` (default: :func:`stop_signals`) back to their start-up dispositions, except ignored ones."""
    for sig in signals or stop_signals():
        try:
            if signal.getsignal(sig) is not signal.SIG_IGN:
                signal.signal(sig, default_disposition(sig))
        except ValueError:  # not the main thread of the interpreter: nothing of ours to undo there
            return


def default_dispositions_in_forks() -> None:
    """Every process this one forks from now on starts with the default dispositions of the stop signals
    (idempotent; spawned and exec'd processes start with them anyway)."""
    global _registered
    if not _registered:
        os.register_at_fork(after_in_child=restore_defaults)
        _registered = True
