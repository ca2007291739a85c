"""Keep training processes from outliving the runner that started them (Linux).

A benchmark runner starts each trial as a child process; if the runner is killed (``SIGKILL``, an OOM
kill, a closed terminal), the child would keep training as an orphan, holding GPUs and writing into the
trial folder. With ``PR_SET_PDEATHSIG`` the kernel sends the child ``SIGKILL`` when its parent dies.
The runner asks for it through the environment (``DIE_WITH_PARENT_ENV`` set to the runner's pid), so a
user's own ``nohup python transfer/train_net.py ...`` is unaffected.

The signal can only be armed by the child itself, so there is a window between its start and the arming.
``train_net.py`` arms it before any other import, and then compares its parent with the pid the runner
wrote: if they differ, the runner died in the window and the child was re-parented (to init, or to a
child subreaper such as ``tini -s`` or ``systemd --user``), and it exits at once instead of training as an
orphan. Processes Detectron2 spawns per GPU inherit the variable, rewritten to their parent's pid, and arm
it against that parent in turn.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

DIE_WITH_PARENT_ENV = "MOCO_BENCH_DIE_WITH_PARENT"
_PR_SET_PDEATHSIG = 1


def die_with_parent(force: bool = False) -> bool:
    """Arm ``SIGKILL`` on parent death for this process when asked to (env) or ``force``; True if armed.

    The variable holds the pid of the parent that must be alive (``"1"``, the older form, only asks to arm);
    when the parent is already another process, this process exits with status 1.
    """
    asked = os.environ.get(DIE_WITH_PARENT_ENV, "")
    if not (force or asked) or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            return False
    except (OSError, AttributeError):
        return False
    expected = int(asked) if asked.isdigit() and asked != "1" else None
    if expected == os.getpid():  # armed before in this very process (its variable names itself)
        return True
    parent = os.getppid()
    died = parent != expected if expected is not None else parent == 1
    if died:  # the parent died before the signal was armed: this process is an orphan already
        os._exit(1)
    if asked:
        os.environ[DIE_WITH_PARENT_ENV] = str(os.getpid())  # for the processes this one starts
    return True
