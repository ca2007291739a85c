"""Safe loading of untrusted checkpoints (atomic writing lives in ``core/atomic.py``).

Checkpoints from others are never executed: ``torch.load(..., weights_only=True)`` only rebuilds
tensors and plain containers. Every failure becomes a :class:`ConvertError` with one actionable line.
"""

from __future__ import annotations

import errno
import hashlib
import os
import pickle
import re
import warnings
from pathlib import Path
from typing import Any

import torch

from core.atomic import write_atomic  # noqa: F401  (re-exported: convert.py, checkpointer.py)


class ConvertError(Exception):
    """A conversion problem the user can act on; its message is one line."""


def sha256_of(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def load_untrusted(path: str | os.PathLike) -> Any:
    """Load a checkpoint with ``weights_only=True`` after :func:`transfer.safe_pickle.scan_torch_file` has
    checked its pickled structure (depth, size, cycles: what torch's loader does not bound); raise
    :class:`ConvertError` (one line) on any problem."""
    from transfer import safe_pickle

    p = Path(path)
    try:
        os.stat(p)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise ConvertError(f"{p}: a symbolic link loop") from None
    if not p.exists():
        raise ConvertError(f"{p}: no such file")
    if p.is_dir():
        raise ConvertError(f"{p}: is a directory, expected a checkpoint file (.pth/.pth.tar)")
    try:
        safe_pickle.scan_torch_file(p)  # also: a regular, non-empty file (a FIFO would block torch.load)
    except safe_pickle.UnsafePickleError as e:
        raise ConvertError(str(e)) from None
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols before failing; the error says it all
            warnings.simplefilter("ignore")
            return torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"(?:Unsupported global: GLOBAL|unsupported GLOBAL) ([\w.]+)", str(e))
        if found:
            raise ConvertError(
                f"{p}: refused to load: it stores a Python object ({found.group(1)}) whose unpickling can run "
                "arbitrary code; re-save only the weights, e.g. torch.save({'state_dict': model.state_dict()}, path)"
            ) from None
        detail = re.search(r"WeightsUnpickler error:\s*([^\n]+)", str(e))
        # never repeat torch's advice to retry with weights_only=False: that would run the file's code
        reason = detail.group(1).strip() if detail else "it holds objects a weights file does not need"
        raise ConvertError(f"{p}: not a PyTorch checkpoint (unreadable pickle: {reason})") from None
    except RuntimeError as e:
        if "zip archive" in str(e) or "central directory" in str(e):
            raise ConvertError(f"{p}: truncated or corrupt checkpoint (broken zip archive); fetch or save it again") from None
        raise ConvertError(f"{p}: cannot be loaded as a checkpoint ({_first_line(e)})") from None
    except OSError as e:  # e.g. a zip cut inside a storage record: [Errno 22] Invalid argument
        raise ConvertError(f"{p}: truncated or corrupt checkpoint ({e.strerror or _first_line(e)}); fetch or save "
                           "it again") from None
    except (EOFError, KeyError, ValueError, TypeError, UnicodeDecodeError, AttributeError, IndexError,
            MemoryError, RecursionError, AssertionError) as e:  # AssertionError: torch's checks of persistent ids
        raise ConvertError(f"{p}: not a PyTorch checkpoint ({type(e).__name__}: {_first_line(e)})") from None


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:200] if text else type(e).__name__
