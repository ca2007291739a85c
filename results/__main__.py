"""Entry point of ``python -m results`` (see :mod:`results.cli`)."""

from __future__ import annotations

from results.cli import main

raise SystemExit(main())
