"""Checks of a planned sweep against what its output folder already holds, before anything trains.

* **Labels**: a row's folder is its label's slug, so no two rows (two backbones with one label, or
  ``--weights "Random init=x.pkl"`` and the random init row) may share one; a pretrained row whose folder is another
  row's, or a baseline row's, is refused in one line naming where it was given.
* **Trial identity** (``transfer/identity.py``): each planned trial gets the identity of what it would run;
  a trial folder that holds a finished or interrupted trial of another identity (other weights, overrides,
  seed or data) is refused in one line naming what changed. A finished trial of the same identity is
  skipped, an interrupted one resumed, as before.
"""

from __future__ import annotations

from typing import Any

from benchmarks.plan import Row, Trial, slug

# Labels of the rows the runners make themselves; a row given on the command line may not take their folders.
BASELINE_LABELS = ("random init", "supervised IN-1M", "supervised IN-1M (BN frozen)", "supervised (tiny labels)",
                   "MoCo v2 (tiny pretraining)")


def _where(row: Row) -> str:
    return f" ({row.origin})" if row.origin else ""


def label_problems(rows: list[Row], own_label: str | None = None) -> list[str]:
    """One line per row whose folder (its label's slug) is another row's, or, for a row given on the command line
    (``Row.origin``; ``own_label``: a label given some other way), a baseline row's."""
    out, seen = [], {}
    for row in rows:
        folder = slug(row.label)
        if folder in seen:
            first = seen[folder]
            out.append(f"rows {first.label!r}{_where(first)} and {row.label!r}{_where(row)} would share the folder "
                       f"{folder}/; give each its own label (--weights LABEL=PATH, or label: in --weights-list)")
        seen.setdefault(folder, row)
    given = [(r.label, f"row {r.label!r}{_where(r)}") for r in rows if r.origin]
    if own_label:
        given.append((own_label, f"--label {own_label!r}"))
    for label, what in given:
        for base in BASELINE_LABELS:
            if slug(label) == slug(base):
                out.append(f"{what} names the folder of the {base!r} row ({slug(base)}/); its trials would be taken "
                           "for that row's: choose another label")
                break
    return out


def _spec_of(extra: list[str]) -> str | None:
    return extra[extra.index("--datasets-spec") + 1] if "--datasets-spec" in extra[:-1] else None


def assign_identities(plan: list[Trial], extra: list[str]) -> None:
    """Give every planned trial the identity of what it would run (``Trial.identity``)."""
    from transfer.identity import trial_identity, weights_id

    spec = _spec_of(extra)
    for trial in plan:
        trial.identity = trial_identity(trial.row.config, [*trial.row.opts, *trial.opts], weights_id(trial.row.weights),
                                        trial.seed, spec)


def identity_problem(trial: Trial) -> str | None:
    """One line when ``trial.output`` holds a finished or interrupted trial of another identity."""
    if not trial.identity:
        return None
    from core.records import RECORD_NAME, RecordError, read_record
    from transfer import identity

    out = trial.output
    old: dict[str, Any] | None = None
    state = ""
    if (out / RECORD_NAME).is_file():
        try:
            rec = read_record(out / RECORD_NAME)
        except RecordError:
            rec = None
        if rec is not None and rec.get("status") == "finished":
            state, old = "a finished trial", rec.get("identity")
            if not isinstance(old, dict):  # a record from before identities: its weights' hash still tells
                sha = (rec.get("pretrain") or {}).get("sha256") if isinstance(rec.get("pretrain"), dict) else None
                old = {"weights": sha} if sha and trial.identity.get("weights") else {}
    if not state and (out / "last_checkpoint").exists():
        state, old = "an interrupted trial", identity.read(out) or {}
    if not state or not old:
        return None
    changed = identity.changes(old, trial.identity)
    if not changed:
        return None
    return (f"{out} holds {state} made with {'; '.join(changed)}; its numbers are not this run's: use another "
            "--output (or --label), or remove that folder to run it anew")


def identity_problems(plan: list[Trial], cap: int = 5) -> list[str]:
    """:func:`identity_problem` of every planned trial (the first ``cap``, then a count)."""
    lines = [p for p in map(identity_problem, plan) if p]
    return lines[:cap] + ([f"... and {len(lines) - cap} more trial folder(s) like these"] if len(lines) > cap else [])

