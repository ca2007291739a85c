"""Names a user gives the suite (row labels, class names) as text that prints as what it is.

Two strings that print identically must be the same name: :func:`clean_name` puts a name in Unicode NFC
(``"é"`` typed as e + combining accent is the same label as the precomposed one) and refuses characters that
do not print as themselves: control characters (a terminal escape, a NUL that ``Popen`` and file names
reject, a newline that splits a log line) and format characters (zero-width space and joiners, bidi
overrides, the byte-order mark), as well as names longer than ``max_len`` (a label becomes a folder name).
"""

from __future__ import annotations

import unicodedata

# Unicode categories that never print as themselves: control, format (zero-width, bidi), line/paragraph separator,
# surrogates, private use, unassigned.
_HIDDEN = {"Cc": "a control character", "Cf": "an invisible formatting character", "Zl": "a line separator",
           "Zp": "a paragraph separator", "Cs": "a surrogate", "Co": "a private-use character",
           "Cn": "an unassigned code point"}


def name_problem(name: str, what: str = "name", max_len: int = 128) -> str | None:
    """Why ``name`` cannot be used (one short phrase, never echoing the whole name), or None."""
    if not isinstance(name, str):
        return f"the {what} must be text, not {type(name).__name__} (quote it in YAML: 'no', '1.0')"
    if not name.strip():
        return f"the {what} is empty"
    if len(name) > max_len:
        return f"the {what} has {len(name):,} characters, more than the {max_len} allowed"
    for i, ch in enumerate(name):
        kind = _HIDDEN.get(unicodedata.category(ch))
        if kind:
            return (f"the {what} {name[:40]!r}{'…' if len(name) > 40 else ''} holds {kind} (U+{ord(ch):04X}) at "
                    f"position {i + 1}; type it again without it")
    return None


def clean_name(name: str, what: str = "name", max_len: int = 128) -> str:
    """``name`` stripped and in NFC; raises ``ValueError`` with one line (see :func:`name_problem`)."""
    problem = name_problem(name, what, max_len)
    if problem:
        raise ValueError(problem)
    return unicodedata.normalize("NFC", name.strip())
