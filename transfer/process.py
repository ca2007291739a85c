"""Keep training processes from outliving the runner that started them (Linux).

A benchmark runner starts each trial as a child process; if the runner is killed (``SIGKILL``, an OOM
kill, a closed terminal), the child would keep training as an orphan, holding GPUs and writing into the
trial folder. With ``PR_SET_PDEATHSIG`` the kernel sends the child ``SIGKILL`` when its parent dies.
The runner asks for it through the environment (``DIE_WITH_PARENT_ENV``), so a user's own
``nohup python transfer/train_net.py ...`` is unaffected; processes Detectron2 spawns per GPU inherit
the variable and arm it against their own parent in turn.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

DIE_WITH_PARENT_ENV = "MOCO_BENCH_DIE_WITH_PARENT"
_PR_SET_PDEATHSIG = 1


def die_with_parent(force: bool = False) -> bool:
    """Arm ``SIGKILL`` on parent death for this process when asked to (env) or ``force``; True if armed."""
    if not (force or os.environ.get(DIE_WITH_PARENT_ENV) == "1") or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            return False
    except (OSError, AttributeError):
        return False
    if os.getppid() == 1:  # the parent died before the signal was armed
        os._exit(1)
    return True
