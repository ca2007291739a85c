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
    from transfer import inert, safe_pickle, safetensors_io

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
        kind = safetensors_io.file_kind(p)  # by content, not by extension
        if kind == "safetensors":
            return safetensors_io.load(p)
    except safetensors_io.SafetensorsError as e:
        raise ConvertError(str(e)) from None
    if kind == "unknown" and p.is_file():
        with open(p, "rb") as f:
            head = f.read(8)
        raise ConvertError(f"{p}: not a PyTorch checkpoint (it starts with {head!r}); the suite reads "
                           f"{safetensors_io.ACCEPTED}")
    if kind == "zip":
        refusal = program_refusal(p)
        if refusal:
            raise ConvertError(refusal)
    try:
        safe_pickle.scan_torch_file(p)  # also: a regular, non-empty file (a FIFO would block torch.load)
    except safe_pickle.UnsafePickleError as e:
        raise ConvertError(str(e)) from None
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols before failing; the error says it all
            warnings.simplefilter("ignore")
            # known harmless objects (argparse.Namespace, omegaconf configs, ...) and numpy values are read by the
            # suite's inert stand-ins and vetted builders (transfer/inert.py), in this call only
            with torch.serialization.safe_globals(safe_pickle.torch_globals()):
                obj = torch.load(p, map_location="cpu", weights_only=True)
        return safe_pickle.settle_torch(obj, str(p))
    except safe_pickle.UnsafePickleError as e:
        raise ConvertError(str(e)) from None
    except inert.Refused as e:  # a stand-in or numpy builder refused what torch handed it
        raise ConvertError(f"{p}: refused to load: {e}; it is unsafe or not a checkpoint") from None
    except pickle.UnpicklingError as e:
        found = re.search(r"(?:Unsupported global: GLOBAL|unsupported GLOBAL) ([\w.]+)", str(e))
        if found:
            raise ConvertError(f"{p}: refused to load: {safe_pickle.refusal(found.group(1))}") from None
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


def program_refusal(path: Path) -> str | None:
    """One line for a torch zip that holds a program rather than weights: TorchScript (``torch.jit.save``: ``code/``,
    ``constants.pkl``), a ``torch.export`` archive (``.pt2``: ``models/``, ``archive_format``) or a whole pickled
    ``nn.Module`` (``torch.save(model)``); None for anything else (the scan and torch's loader judge it)."""
    import pickletools
    import zipfile

    limit = 64 << 20  # a model's pickle is small; a bigger one is left to the streaming scan
    try:
        with zipfile.ZipFile(path) as z:
            names = [n.split("/", 1)[-1] for n in z.namelist()[:100_000]]
            if any(n.startswith("code/") for n in names) or "constants.pkl" in names:
                return (f"{path}: a TorchScript program (torch.jit.save), not a weights file; in your own trusted "
                        "environment run sd = torch.jit.load(path).state_dict(); torch.save(sd, 'weights.pth') and "
                        "pass weights.pth")
            if "archive_format" in names or any(n.startswith("models/") and n.endswith(".json") for n in names):
                return (f"{path}: a torch.export program (.pt2), not a weights file; in your own trusted environment "
                        "run sd = torch.export.load(path).state_dict; torch.save(dict(sd), 'weights.pth') and pass "
                        "weights.pth")
            main = [i for i in z.infolist() if i.filename.split("/", 1)[-1] == "data.pkl"]
            if len(main) != 1 or main[0].file_size > limit:
                return None
            with z.open(main[0]) as f:
                data = f.read(limit + 1)
        strings: list[str] = []
        first_global = ""
        for op, arg, _ in pickletools.genops(data):
            if isinstance(arg, str):
                if op.name == "GLOBAL" and not first_global:
                    first_global = arg.replace(" ", ".")
                strings.append(arg)
            elif op.name == "STACK_GLOBAL" and not first_global and len(strings) >= 2:
                first_global = f"{strings[-2]}.{strings[-1]}"
    except Exception:  # noqa: BLE001  (a malformed archive or pickle: the scan reports it in one line)
        return None
    if "_modules" in strings and "_parameters" in strings:
        return (f"{path}: a whole pickled model ({first_global[:80] or 'an nn.Module'}, torch.save(model)), not a "
                "weights file; loading it would run its code: load it where you trust it and save "
                "torch.save(model.state_dict(), 'weights.pth'), then pass weights.pth")
    return None
