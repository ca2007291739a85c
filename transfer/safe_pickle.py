"""Read ``.pkl`` weight files without running any code from them.

A plain ``pickle.load`` calls whatever global a file names (``os.system`` in a ``__reduce__``, say).
Weight files need very little: dicts, lists, tuples, strings, numbers and numpy arrays. The
:class:`WeightsUnpickler` admits exactly the globals that rebuild those (an allow-list) and refuses
every other one with a one-line :class:`UnsafePickleError` naming it. ``transfer/checkpointer.py``
routes Detectron2's checkpointer through it, so no ``.pkl`` the suite or Detectron2 opens can run code.
"""

from __future__ import annotations

import codecs
import io
import os
import pickle
from pathlib import Path
from typing import Any

# module -> names admitted from it. numpy moved ``numpy.core`` to ``numpy._core`` in 2.0; both spellings
# occur in files in the wild (``_reconstruct``/``_frombuffer`` rebuild arrays, ``scalar`` numpy scalars).
_NUMPY_CORE = {"_reconstruct", "scalar", "_frombuffer"}
ALLOWED: dict[str, set[str]] = {
    "numpy": {"ndarray", "dtype"},
    "numpy.core.multiarray": _NUMPY_CORE,
    "numpy._core.multiarray": _NUMPY_CORE,
    "numpy.core.numeric": {"_frombuffer"},
    "numpy._core.numeric": {"_frombuffer"},
    "collections": {"OrderedDict"},
}
_LATIN1 = {"latin1", "latin-1", "iso-8859-1", "iso8859-1"}


class UnsafePickleError(pickle.UnpicklingError):
    """A weights file that names a global outside the allow-list, or is not a pickle at all."""


def _latin1_encode(text: str, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """``_codecs.encode`` as protocol-2 pickles use it for bytes (latin-1 only; no other codec is looked up)."""
    if str(encoding).lower() not in _LATIN1:
        raise UnsafePickleError(f"refused _codecs.encode with codec {encoding!r} (only latin-1 rebuilds bytes)")
    return codecs.encode(text, "latin1", errors)


class WeightsUnpickler(pickle.Unpickler):
    """An unpickler that only rebuilds the plain containers, numbers and numpy arrays of a weights file."""

    def find_class(self, module: str, name: str) -> Any:
        if module == "_codecs" and name == "encode":
            return _latin1_encode
        if name in ALLOWED.get(module, ()):
            return super().find_class(module, name)
        raise UnsafePickleError(f"it names the global {module}.{name}, which a weights file never needs; "
                                "unpickling it could run arbitrary code")


def loads(data: bytes, where: str = "weights") -> Any:
    """Unpickle ``data`` with :class:`WeightsUnpickler` (latin-1 for Python 2 pickles, as Detectron2 does)."""
    try:
        return WeightsUnpickler(io.BytesIO(data), encoding="latin1").load()
    except UnsafePickleError as e:
        raise UnsafePickleError(f"{where}: refused to load: {e}; it is unsafe or not a weights file") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, KeyError, AttributeError,
            UnicodeDecodeError, MemoryError) as e:
        detail = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise UnsafePickleError(f"{where}: not a readable weights pickle ({detail}); "
                                "it is truncated, corrupt or not a .pkl weights file") from None


def load(path: str | os.PathLike) -> Any:
    """Read one ``.pkl`` weights file safely; raise :class:`UnsafePickleError` (one line) on any problem."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except IsADirectoryError:
        raise UnsafePickleError(f"{p}: is a directory, expected a .pkl weights file") from None
    except OSError as e:
        raise UnsafePickleError(f"{p}: cannot be read ({e.strerror or e})") from None
    if not data:
        raise UnsafePickleError(f"{p}: file is empty (0 bytes); the save or download was interrupted")
    return loads(data, str(p))
