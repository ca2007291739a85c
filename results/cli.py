"""``python -m results --runs DIR [DIR ...]``: collect trial and ablation records, print and write the tables.

Prints the Markdown tables on stdout, one ``skipped <path>: <reason>`` line per unusable record on
stderr, and writes the formats under ``--out`` (default ``<first run root>/tables``, or
``output/paper-tables`` without ``--runs``; when that folder cannot be written, e.g. a run on a read-only share,
``output/tables-<run name>`` under the current folder or else under ``$TMPDIR``, said on stderr). Trial records make the transfer tables (``results.tables``),
ablation records the ablation tables and plots (``results.ablation``); ``--with-paper`` adds the published
rows and the published tables the suite does not measure (``results.paper_only``), so
``python -m results --with-paper`` alone renders every published table. Exit status 0 when at least
one table rendered, 1 (with a one-line message) when no usable record was found, 2 for bad flags.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

from results.ablation import build_ablation_tables
from results.collect import collect_ablation
from results.collect import Collection, collect
from results.render import FORMATS, write_outputs
from results.render_md import render_markdown
from results.tables import build_tables, find_reference, measured_labels
from core.cli import ArgumentParser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = ArgumentParser(prog="python -m results", description=__doc__.splitlines()[0])
    p.add_argument("--runs", nargs="+", metavar="DIR", default=[],
                   help="run roots searched recursively for trial_record.json and ablation_record.json "
                        "(required, except for --with-paper alone)")
    p.add_argument("--with-paper", action="store_true", help="add the papers' published rows beside measured ones, "
                                                              "and every published table not measured")
    p.add_argument("--paper-rows", action="store_true",
                   help="the published rows beside measured ones only (what a runner's final table shows)")
    p.add_argument("--out", help="output folder (default: <first run root>/tables)")
    p.add_argument("--formats", default=",".join(FORMATS),
                   help=f"comma-separated subset of {','.join(FORMATS)} (default: all)")
    p.add_argument("--no-std", action="store_true", help="hide the ±std in Markdown/LaTeX cells")
    p.add_argument("--reference", metavar="LABEL",
                   help="the row every gap and paired difference is to (its pre-train label, as in the tables; "
                        "default: the supervised row)")
    p.add_argument("--cost", action="store_true",
                   help="a GPU-h column: the GPU-hours each row's trials spent, from their records")
    p.add_argument("--table6", action="store_true",
                   help="MoCo v1 Table 6 as one view (six tasks side by side) instead of one table per benchmark; "
                        "written as table6.md")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    bad = sorted(set(formats) - set(FORMATS))
    if bad:
        print(f"results: unknown format(s) {', '.join(bad)} (choose from {', '.join(FORMATS)})", file=sys.stderr)
        return 2
    if not args.runs and not args.with_paper:
        print("results: give --runs DIR (or --with-paper alone for the published tables)", file=sys.stderr)
        return 2
    coll = collect(args.runs) if args.runs else Collection()
    abl = collect_ablation(args.runs)
    skipped = coll.skipped + abl.skipped
    for path, reason in skipped:
        print(f"skipped {path}: {reason}", file=sys.stderr)
    if args.table6:
        return table6_main(args, coll.records)
    rows = args.with_paper or args.paper_rows
    tables = build_tables(coll.records, with_paper=rows, reference=args.reference, cost=args.cost)
    if args.reference is not None and not any(find_reference(t.rows, args.reference) for t in tables):
        labels = ", ".join(repr(x) for x in measured_labels(coll.records)) or "(none)"
        print(f"results: no row {args.reference!r} to use as --reference; the labels are: {labels}", file=sys.stderr)
        return 2
    tables += build_ablation_tables(abl.records, coll.records, with_paper=rows, unmeasured=args.with_paper)
    if args.with_paper:
        from results.paper_only import paper_only_tables

        tables += paper_only_tables()
    if not tables:
        print(f"results: no usable trial records under {' '.join(args.runs)} ({len(skipped)} skipped)",
              file=sys.stderr)
        return 1
    print(render_markdown(tables, std=not args.no_std), end="")
    out = output_folder(args)
    if out is None:
        return 1
    try:
        written = write_outputs(tables, out, formats, skipped=skipped, std=not args.no_std)
    except OSError as e:
        print(f"results: cannot write the tables in {out} ({e.strerror or type(e).__name__}); give a writable --out",
              file=sys.stderr)
        return 1
    n_files = sum(len(v) for v in written.values())
    n_records = len(coll.records) + len(abl.records)
    print(f"results: {len(tables)} table(s) from {n_records} record(s); {n_files} file(s) in {out}",
          file=sys.stderr)
    return 0


def table6_main(args: argparse.Namespace, records: list[dict]) -> int:
    """``--table6``: print the Table 6 view (and its tiny-demo view, if any) and write ``table6.md``."""
    from results.table6 import build_table6, render_table6_markdown

    views = [v for v in (build_table6(records, with_paper=args.with_paper),
                         build_table6(records, tiny=True)) if v is not None]
    if not views:
        print(f"results: no Table 6 records under {' '.join(args.runs)} (add --with-paper for the paper's rows)",
              file=sys.stderr)
        return 1
    text = "\n".join(render_table6_markdown(v, std=not args.no_std) for v in views)
    print(text, end="")
    out = output_folder(args)
    if out is None:
        return 1
    try:
        (out / "table6.md").write_text(text)
    except OSError as e:
        print(f"results: cannot write {out / 'table6.md'} ({e.strerror or type(e).__name__}); give a writable --out",
              file=sys.stderr)
        return 1
    print(f"results: Table 6 view from {len(records)} record(s) -> {out / 'table6.md'}", file=sys.stderr)
    return 0


def _unwritable(folder: Path) -> str | None:
    """Why files cannot be written in ``folder`` (made when missing), or None."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        return e.strerror or type(e).__name__
    return None


def output_folder(args: argparse.Namespace) -> Path | None:
    """Where the tables go: ``--out``, else ``<first run root>/tables`` (``output/paper-tables`` without runs); a
    default that cannot be written (a read-only run folder) gives way to ``output/tables-<run name>`` here, then
    under ``$TMPDIR``, said in one line. None (after one line on stderr) when nothing can be written."""
    if args.out:
        out = Path(args.out)
        why = _unwritable(out)
        if why:
            print(f"results: cannot write in --out {out} ({why}); give a writable folder", file=sys.stderr)
            return None
        return out
    if not args.runs:
        default, name = Path("output") / "paper-tables", "paper"
    else:
        first = Path(args.runs[0])
        root = first.parent if first.is_file() else first
        default, name = root / "tables", re.sub(r"[^A-Za-z0-9._-]+", "_", root.resolve().name)[:64] or "run"
    why = _unwritable(default)
    if why is None:
        return default
    for other in (Path("output") / f"tables-{name}", Path(tempfile.gettempdir()) / "moco-bench" / f"tables-{name}"):
        if other != default and _unwritable(other) is None:
            print(f"results: cannot write in {default} ({why}); writing the tables to {other.resolve()} instead "
                  "(give --out to choose)", file=sys.stderr)
            return other
    print(f"results: cannot write in {default} ({why}), nor here or in {tempfile.gettempdir()}; give a writable --out",
          file=sys.stderr)
    return None
