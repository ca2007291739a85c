"""Metadata read from files (a weights file's provenance, a checkpoint's ``suite`` block), made plain and
bounded before it reaches a record, a log line or a JSON file.

A file from a stranger can hold any structure: strings of a gigabyte, dicts nested hundreds deep, or a
small graph whose shared references expand exponentially when written out as JSON. :func:`plain` returns
a copy made only of JSON types (dict with string keys, list, str, int, float, bool, None), at most
:data:`MAX_DEPTH` deep, :data:`MAX_ITEMS` items per container, :data:`MAX_STR` characters per string and
:data:`MAX_NODES` values in all; what does not fit is replaced by a short description (``"<dict of 900
entries>"``), so the result is always small and always serialisable.
"""

from __future__ import annotations

import math
from typing import Any

MAX_DEPTH = 6
MAX_ITEMS = 64
MAX_STR = 400
MAX_NODES = 2000


def _describe(value: Any) -> str:
    size = f" of {len(value)} entries" if isinstance(value, (dict, list, tuple, set, frozenset)) else ""
    return f"<{type(value).__name__}{size}>"


def plain(value: Any, *, max_depth: int = MAX_DEPTH, max_nodes: int = MAX_NODES) -> Any:
    """A bounded, JSON-serialisable copy of ``value`` (module doc)."""
    budget = [max_nodes]

    def go(x: Any, depth: int) -> Any:
        budget[0] -= 1
        if budget[0] < 0:
            return "<more not kept>"
        if x is None or isinstance(x, bool):
            return x
        if isinstance(x, int):
            return x if abs(x) < 2**63 else float(x)
        if isinstance(x, float):
            return x
        if isinstance(x, str):
            return x if len(x) <= MAX_STR else x[:MAX_STR] + f"... (+{len(x) - MAX_STR} characters)"
        if isinstance(x, (bytes, bytearray)):
            return f"<{len(x)} bytes>"
        if hasattr(x, "dtype") and hasattr(x, "shape"):  # numpy array or scalar, torch tensor
            size = int(math.prod(x.shape)) if len(x.shape) else 1
            if size <= 16 and str(x.dtype).startswith(("float", "int", "uint", "bool", "torch.float", "torch.int")):
                return go(x.tolist(), depth)
            return f"<array {x.dtype} {tuple(x.shape)}>"
        if depth >= max_depth:
            return _describe(x)
        if isinstance(x, dict):
            out: dict[str, Any] = {}
            for k, v in list(x.items())[:MAX_ITEMS]:
                key = k if isinstance(k, str) else (repr(k) if isinstance(k, (int, float, bool, type(None)))
                                                    else _describe(k))
                out[key[:MAX_STR]] = go(v, depth + 1)
            if len(x) > MAX_ITEMS:
                out["..."] = f"+{len(x) - MAX_ITEMS} more entries not kept"
            return out
        if isinstance(x, (list, tuple)):
            items = [go(v, depth + 1) for v in list(x)[:MAX_ITEMS]]
            return items + ([f"... (+{len(x) - MAX_ITEMS} more)"] if len(x) > MAX_ITEMS else [])
        return _describe(x)

    return go(value, 0)


def finite_numbers(value: Any, n: int) -> list[float] | None:
    """``value`` as a list of ``n`` finite floats, or None (e.g. a provenance's ``pixel_mean``)."""
    if not isinstance(value, (list, tuple)) or len(value) != n:
        return None
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value):
        return None
    return [float(v) for v in value]


def hex_digest(value: Any) -> str | None:
    """``value`` if it is a SHA-256 hex digest (64 hex digits), else None."""
    if isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value.lower()):
        return value.lower()
    return None
