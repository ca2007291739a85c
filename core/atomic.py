"""Atomic file writes (temp file beside the target, then rename) with the user's umask.

Shared by every writer of results that must never be half-written: trial records, converted weights,
Detectron2 and pretraining checkpoints. Standard library only (torch is imported only to save with it),
so any stage can import it.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def chmod_umask(path: str | os.PathLike, mode: int = 0o666) -> None:
    """Give ``path`` the permissions a normally created file gets (``mkstemp`` makes 0600 files, which a
    lab's shared results folder could not read)."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, mode & ~mask)


def write_atomic(path: str | os.PathLike, write: Callable[[Path], None], suffix: str = "") -> Path:
    """Call ``write(tmp)`` on a temp file beside ``path`` then rename it into place.

    If ``write`` raises, the temp file is removed and nothing appears at ``path``; the file gets the
    user's umask. ``suffix`` keeps the temp file's extension meaningful to loaders that dispatch on it
    (e.g. ``.pkl``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{suffix}", dir=path.parent)
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
