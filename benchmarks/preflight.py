"""Everything a sweep can check before its first iteration, and the plan it prints (``--dry-run``).

Per row: the weights exist (a local file, Detectron2's download cache, or a server that answers), are
read without running code, need which input format (and why), and fill the whole backbone of the row's
model (the load report, on a CPU-built model). For the sweep: the dataset check (done by the caller),
an output folder that can be written, and free disk against the checkpoints the sweep will keep. A
problem found here stops the sweep before the first trial, with one line each.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from benchmarks.runner import Row, free_bytes, trial_footprint


@dataclass
class RowCheck:
    row: Row
    weights_note: str = ""
    encoder_note: str = ""  # the layout and sub-encoder a converted file was taken from
    load_note: str = ""
    problems: list[str] = field(default_factory=list)


def check_output_dir(out: Path) -> str | None:
    """One line when ``out`` cannot be created or written (read-only, permissions, full)."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=".write-test.", dir=out)
        os.write(fd, b"x" * 4096)
        os.close(fd)
        os.unlink(name)
    except OSError as e:
        from benchmarks.runner import DISK_ERRNOS

        reason = DISK_ERRNOS.get(e.errno or 0, e.strerror or str(e))
        return (f"cannot write to the output folder {e.filename or out}: {reason}; pick another --output or fix "
                "its permissions/free space")
    return None


def convert_once(weights: str, folder: Path, log: Callable[[str], None], prefix: str | None = None) -> str:
    """A ``.pth`` checkpoint converted once per sweep into ``folder`` (reused while its source and the encoder
    ``prefix`` asked for are unchanged)."""
    from transfer.checkpoint_io import sha256_of
    from transfer.convert import convert
    from transfer.weights import weights_provenance

    src = Path(weights).resolve()
    key = str(src) if prefix is None else f"{src}#prefix={prefix}"
    tag = hashlib.sha256(key.encode()).hexdigest()[:8]  # two sources (or encoders) with one file name stay apart
    out = folder / f"{src.name.split('.')[0]}-{tag}.pkl"
    prov = weights_provenance(str(out)) if out.is_file() else None
    if prov is None or prov.get("sha256") != sha256_of(src):
        convert(src, out, prefix=prefix, log=log)
    return str(out.resolve())


def weights_problem(weights: str) -> tuple[str, str | None]:
    """(where the weights are, problem or None) for one row's weights."""
    from transfer import safe_pickle
    from transfer.checkpoint_io import ConvertError, load_untrusted
    from transfer.weights import cache_path, is_remote, local_file, remote_problem

    if not weights:
        return "none (random init)", None
    if is_remote(weights):
        cached = local_file(weights)
        if cached is None:
            problem = remote_problem(weights)
            return f"{weights} (not cached; downloaded by the first trial to {cache_path(weights)})", problem
        weights = str(cached)
    path = Path(weights)
    if not path.is_file():
        return weights, f"weights not found: {weights}"
    try:
        safe_pickle.load(path) if path.suffix == ".pkl" else load_untrusted(path)
    except (safe_pickle.UnsafePickleError, ConvertError) as e:
        return weights, str(e)
    return str(path), None


def overrides_problem(configs: list[Path], opts: list[str]) -> str | None:
    """One line when the overrides ``opts`` do not apply to one of ``configs`` (an unknown key, a wrong type)."""
    from transfer.config import SetupError, load_cfg

    for config in dict.fromkeys(configs):
        try:
            load_cfg(str(config), list(opts), read_only=True)
        except SetupError as e:
            return f"{e} ({Path(config).name} with the overrides after '--')"
    return None


def load_check(row: Row, opts: list[str], weights: str | None = None) -> tuple[str, str | None, int]:
    """Build the row's model on the CPU and load its weights (``weights``: a converted copy of them): (report
    line, problem or None, checkpoint bytes)."""
    from transfer.checkpointer import SuiteCheckpointer, WeightsError
    from transfer.trainer import Trainer, load_cfg
    from transfer.weights import local_file

    cfg = load_cfg(str(row.config), [*row.opts, *opts, "MODEL.DEVICE", "cpu"])  # as the trial: its row values first
    model = Trainer.build_model(cfg)
    n_params = sum(p.numel() for p in model.parameters())
    ckpt_bytes = int(n_params * 4 * 2.05)  # fp32 weights + SGD momentum (+ a few buffers)
    weights = weights or (str(local_file(row.weights) or "") if row.weights else "")
    if not weights:
        return ("" if not row.weights else "checked when the first trial has downloaded it"), None, ckpt_bytes
    problem = depth_problem(weights, int(cfg.MODEL.RESNETS.DEPTH), str(row.config))
    if problem:
        return "", problem, ckpt_bytes
    checker = SuiteCheckpointer(model)
    checker.report_source = Path(weights).name
    try:
        checker.load(weights, checkpointables=[])
    except WeightsError as e:
        return "", str(e), ckpt_bytes
    report = checker.last_load_report
    assert report is not None
    notes = "".join(f"; note: {n.split(': ', 1)[-1]}" for n in checker.value_notes)
    return report.summary() + notes, (report.refusal() or None), ckpt_bytes


def depth_problem(weights: str, want: int, config: str) -> str | None:
    """One line when a converted file's ResNet depth is not the one the row's config builds (e.g. a ResNet-18)."""
    from transfer.weights import weights_provenance

    if not weights.endswith(".pkl"):
        return None
    resnet = (weights_provenance(weights) or {}).get("resnet")
    depth = resnet.get("depth") if isinstance(resnet, dict) else None
    if not isinstance(depth, int) or depth == want:
        return None
    if want == 50 and depth in (18, 34):
        hint = "this benchmark needs a ResNet-50 backbone; --tiny (the small-scale demonstration) takes a ResNet-18"
    else:
        hint = f"give a ResNet-{want} checkpoint" + (" or drop --tiny" if want == 18 else "")
    return f"{Path(weights).name} holds a ResNet-{depth}, but {Path(config).name} builds a ResNet-{want}: {hint}"


def converted_for_check(weights: str, folder: str, prefix: str | None = None) -> tuple[str | None, str | None]:
    """(a ``.pkl`` converted from the ``.pth`` ``weights`` into ``folder``, or None; problem or None). A dry run
    checks what the trials would load; a full Detectron2 checkpoint given as weights is loaded as it is."""
    from transfer.checkpoint_io import ConvertError
    from transfer.convert import convert
    from transfer.trainer import is_detectron2_checkpoint
    from transfer.weights import CONVERTIBLE

    if not weights.endswith(CONVERTIBLE) or not Path(weights).is_file():
        return None, None
    try:
        if is_detectron2_checkpoint(weights):
            return None, None
        out = Path(folder) / (Path(weights).name.split(".")[0] + ".pkl")
        convert(weights, out, prefix=prefix, verify=False, log=lambda line: None)
    except ConvertError as e:
        return None, str(e)
    return str(out), None


def encoder_note(weights: str) -> str:
    """The layout and sub-encoder ``transfer/convert.py`` took, read from a converted file's provenance."""
    from transfer.weights import weights_provenance

    try:
        prov = weights_provenance(weights) if weights else None
    except Exception:  # noqa: BLE001  (an unreadable file is reported by the weights check)
        return ""
    layout = (prov or {}).get("layout")
    return layout[:200] if isinstance(layout, str) else ""


def check_rows(rows: list[Row], opts: list[str], allow_partial: bool) -> list[RowCheck]:
    """Weights and load checks of every row (fills ``row.checkpoint_bytes``). A ``.pth`` not converted yet (a dry
    run) is converted to a temporary copy first, and a ViT row takes its size from that copy before its model is
    built (``transfer/vitdet.py: rows_sized``), as the trial will."""
    from transfer.vitdet import rows_sized

    checks = [RowCheck(row) for row in rows]
    with contextlib.ExitStack() as stack:
        converted: dict[int, str] = {}
        for rc in checks:
            row = rc.row
            if row.pending and not Path(row.weights).exists():
                rc.weights_note = f"{row.weights} ({row.pending})"
                continue
            rc.weights_note, problem = weights_problem(row.weights)
            if not problem:
                tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="preflight-"))
                path, problem = converted_for_check(row.weights, tmp, row.prefix)  # a .pth in a dry run
                rc.encoder_note = encoder_note(path or row.weights)
                if path:
                    converted[id(row)] = path
            if problem:
                rc.problems.append(problem)
        rows_sized(rows, converted)
        for rc in checks:
            if rc.problems or (rc.row.pending and not Path(rc.row.weights).exists()):
                continue
            rc.load_note, problem, rc.row.checkpoint_bytes = load_check(rc.row, opts, converted.get(id(rc.row)))
            if problem and not allow_partial:
                rc.problems.append(problem + " (--allow-partial-weights trains anyway)")
    return checks


def disk_problem(rows: list[Row], trials: int, out: Path, keep: int = 1) -> tuple[str, str | None]:
    """(estimate line, problem or None): finished trials keep ``model_final.pth``; the running one peaks at
    ``keep + 2`` checkpoints."""
    per_final = sum(r.checkpoint_bytes for r in rows) * trials
    peak = max((trial_footprint(r, keep) for r in rows), default=0)
    need, free = per_final + peak, free_bytes(out)
    line = f"about {need / 1e9:.1f} GB for checkpoints ({free / 1e9:.1f} GB free under {out})"
    if need and free < need:
        return line, (f"not enough free disk under {out}: the sweep needs {line}; free space or pick another "
                      "--output")
    return line, None


def describe_rows(checks: list[RowCheck], trials: int, seed: int) -> list[str]:
    """The plan, one block per row."""
    lines = []
    for rc in checks:
        r = rc.row
        lines.append(f"{r.label} ({r.kind}{', ' + r.origin if r.origin else ''}): {trials} trial(s), "
                     f"seeds {seed}..{seed + trials - 1}")
        if r.method:
            from transfer.methods import shown

            lines.append(f"    method   {shown(r.method)}" + (f": {r.method_reason}" if r.method_reason else ""))
        lines.append(f"    config   {r.config}")
        if r.input_format:
            lines.append(f"    input    {r.input_format}: {r.input_reason}")
        lines.append(f"    weights  {rc.weights_note}")
        if rc.encoder_note:
            lines.append(f"    encoder  {rc.encoder_note}")
        sha = _sha(r.weights)
        if sha:
            lines.append(f"    sha256   {sha}")
        if rc.load_note:
            lines.append(f"    loading  {rc.load_note}")
        lines += [f"    PROBLEM  {p}" for p in rc.problems]
    return lines


def _sha(weights: str) -> str:
    from transfer.weights import local_file, weights_sha256

    path = local_file(weights) if weights else None
    if path is None:
        return ""
    return weights_sha256(path)
