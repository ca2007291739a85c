"""Command lines whose errors are one line: ``PROG: error: MESSAGE (PROG --help for the options)``.

argparse prints its whole usage block above the error; with a dozen options that buries the one line that says
what is wrong. :class:`ArgumentParser` is argparse's with only :meth:`error` changed (exit status 2, as argparse);
:func:`one_line_errors` gives a parser built elsewhere (Detectron2's ``default_argument_parser``) the same.
"""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn


def _error(parser: argparse.ArgumentParser, message: str) -> NoReturn:
    text = " ".join(str(message).split())
    sys.stderr.write(f"{parser.prog}: error: {text} ({parser.prog} --help for the options)\n")
    sys.exit(2)


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser with a one-line error."""

    def error(self, message: str) -> NoReturn:
        _error(self, message)


def one_line_errors(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """``parser`` (made by another library) with :class:`ArgumentParser`'s one-line error."""
    parser.error = lambda message: _error(parser, message)  # type: ignore[method-assign]
    return parser
