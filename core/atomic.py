"""Atomic file writes (temp file beside the target, then rename) with the user's umask.

Shared by every writer of results that must never be half-written: trial records, converted weights,
Detectron2 and pretraining checkpoints. Standard library only (torch is imported only to save with it),
so any stage can import it.
"""

from __future__ import annotations

import os
import re
import socket
import tempfile
import time
from collections.abc import Callable
from pathlib import Path


def chmod_umask(path: str | os.PathLike, mode: int = 0o666) -> None:
    """Give ``path`` the permissions a normally created file gets (``mkstemp`` makes 0600 files, which a
    lab's shared results folder could not read)."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, mode & ~mask)


_HOST = re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname())[:16] or "host"
STALE_AFTER_S = 24 * 3600  # a temp file of another machine (or of no known owner) this old was left by a killed writer


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def remove_stale_temps(path: Path, suffix: str = "") -> list[Path]:
    """Remove the temp files that :func:`write_atomic` left beside ``path`` when its writer was killed (a
    killed ``convert.py`` leaves one of ~45 MB): only names of its own pattern, ``.<name>.<pid>@<host>.<random>
    .tmp<suffix>``, whose process is gone on this host, or that are older than :data:`STALE_AFTER_S` (other hosts,
    and the pid-less names written before); never anything else. Best effort; returns what it removed."""
    own = re.compile(rf"\.{re.escape(path.name)}\.(?:(\d+)@([A-Za-z0-9_-]+)\.)?[a-z0-9_]{{8}}\.tmp{re.escape(suffix)}")
    removed = []
    try:
        entries = [e for e in os.scandir(path.parent) if e.name.startswith(f".{path.name}.")]
    except OSError:
        return removed
    for entry in entries:
        found = own.fullmatch(entry.name)
        if found is None:
            continue
        try:
            st = entry.stat(follow_symlinks=False)
            pid, host = found.groups()
            dead = pid is not None and host == _HOST and not _alive(int(pid))
            if (dead or time.time() - st.st_mtime > STALE_AFTER_S) and entry.is_file(follow_symlinks=False):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except (OSError, ValueError):
            continue
    return removed


def write_atomic(path: str | os.PathLike, write: Callable[[Path], None], suffix: str = "") -> Path:
    """Call ``write(tmp)`` on a temp file beside ``path`` then rename it into place.

    If ``write`` raises, the temp file is removed and nothing appears at ``path``; the file gets the
    user's umask. ``suffix`` keeps the temp file's extension meaningful to loaders that dispatch on it
    (e.g. ``.pkl``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path, suffix)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}@{_HOST}.", suffix=f".tmp{suffix}",
                                    dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        chmod_umask(tmp)
        os.replace(tmp, path)
    except OSError as e:
        if e.filename is None:  # e.g. raised by a writer that only saw a file object: name the target
            raise OSError(e.errno, e.strerror, str(path)) from None
        raise
    finally:
        tmp.unlink(missing_ok=True)
    return path


def torch_save_atomic(obj: object, path: str | os.PathLike) -> Path:
    """``torch.save`` through a Python file object (a full disk then raises ``OSError(ENOSPC)`` naming
    ``path``, where ``torch.save(obj, filename)`` raises an opaque ``RuntimeError``), atomically."""
    import torch

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            torch.save(obj, f)

    return write_atomic(path, write)
