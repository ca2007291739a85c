"""Read input files only when they are regular files of a sane size: the one bounded reader for what a user hands
the suite (annotations, configs through :mod:`core.safe_yaml`, weights lists, images' headers).

Opening a FIFO blocks until something writes to it, and ``/dev/zero`` or ``/dev/urandom`` never end: an
annotation, image or weights path that names one hangs a check or fills memory. :func:`read_bytes` opens
without blocking, refuses anything that is not a regular file, and reads at most ``max_bytes``;
:func:`read_text` adds UTF-8 decoding and one-line errors; :func:`irregular` says what is wrong with a path
before another library opens it; :func:`brief` and :func:`size_text` keep messages short whatever a file holds.
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


def size_text(n: int) -> str:
    """``n`` bytes for a message: ``"900 bytes"``, ``"12 KiB"``, ``"3.5 GiB"``."""
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift:
            value = n / (1 << shift)
            return f"{value:.1f} {unit}" if value < 10 else f"{value:.0f} {unit}"
    return f"{n} bytes"


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
            raise IrregularFileError(0, f"is {size_text(st.st_size)}, more than the {size_text(max_bytes)} allowed",
                                     str(path))
        if hasattr(os, "O_NONBLOCK"):
            os.set_blocking(fd, True)
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read(max_bytes + 1)[:max_bytes]
    finally:
        os.close(fd)


def read_text(path: str | os.PathLike, max_bytes: int, what: str = "file") -> str:
    """The UTF-8 text of the regular file ``path`` (a leading byte-order mark dropped); raises
    :class:`ValueError` with one line naming ``path`` (missing, irregular, over ``max_bytes``, not UTF-8)."""
    try:
        data = read_bytes(path, max_bytes)
    except IrregularFileError as e:
        raise ValueError(f"{path}: {e.strerror}; expected a {what}") from None
    except OSError as e:
        raise ValueError(f"{path}: cannot read the {what} ({e.strerror or type(e).__name__})") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: the {what} is not UTF-8 text (byte {e.start + 1})") from None


def brief(value: object, limit: int = 60) -> str:
    """``repr(value)`` cut to about ``limit`` characters, for messages that must stay one short line whatever a
    file holds (a repr of a shared-reference structure is never built in full)."""
    if isinstance(value, (str, bytes)):
        text = repr(value[: limit + 1])
    elif isinstance(value, (dict, list, tuple, set)):
        text = f"a {type(value).__name__} of {len(value)} item{'s' if len(value) != 1 else ''}"
    else:
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
