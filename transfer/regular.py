"""Read input files only when they are regular files of a sane size.

Opening a FIFO blocks until something writes to it, and ``/dev/zero`` or ``/dev/urandom`` never end: an
annotation, image or weights path that names one hangs a check or fills memory. :func:`read_bytes` opens
without blocking, refuses anything that is not a regular file, and reads at most ``max_bytes``;
:func:`irregular` says what is wrong with a path before another library opens it.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

MAX_ANNOTATION_BYTES = 4 << 30  # the COCO train2017 instances json is about 450 MB


class IrregularFileError(OSError):
    """A path that is not a regular file, or larger than allowed; ``strerror`` says which."""


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def irregular(path: str | os.PathLike) -> str | None:
    """Why ``path`` cannot be read as a file (``"is a FIFO (named pipe), not a regular file"``), or None."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None  # missing or unreadable: the caller's own open() says so
    return None if stat.S_ISREG(mode) else f"is {_kind(mode)}, not a regular file"


def read_bytes(path: str | os.PathLike, max_bytes: int = MAX_ANNOTATION_BYTES) -> bytes:
    """The bytes of the regular file ``path`` (raises ``OSError``; :class:`IrregularFileError` for a FIFO,
    device, directory or a file over ``max_bytes``)."""
    fd = os.open(Path(path), os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise IrregularFileError(0, f"is {_kind(st.st_mode)}, not a regular file", str(path))
        if st.st_size > max_bytes:
            raise IrregularFileError(0, f"is {st.st_size / 2**20:.0f} MiB, more than the {max_bytes / 2**20:.0f} MiB "
                                        "allowed", str(path))
        if hasattr(os, "O_NONBLOCK"):
            os.set_blocking(fd, True)
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read(max_bytes + 1)[:max_bytes]
    finally:
        os.close(fd)
