"""Published tables that the suite does not measure, rendered from ``data/paper_tables.csv`` with
``--with-paper``: MoCo v1 Table 1 (ImageNet linear classification vs. previous methods) and Table 4
(previous self-supervised methods on VOC07), MoCo v2 Table 2 (vs. SimCLR) and Table 3 (cost)."""

from __future__ import annotations

from results import paper as paper_mod
from results.ablation import AblationTable, _fill, _paper_row
from results.tables import Row


def _table(key: str, heading: str, caption: str, source_prefix: str, table: str, metrics: dict[str, str],
           display, paper_csv: str | None) -> AblationTable | None:
    df = paper_mod.load_paper_table(paper_csv)
    df = df[(df.table == table) & df.source.str.startswith(source_prefix)]
    if df.empty:
        return None
    rows: list[Row] = []
    for (label, backbone, schedule), grp in df.groupby(["pretrain", "backbone", "schedule"], sort=False,
                                                        dropna=False):
        values = {metrics[m]: float(v) for m, v in zip(grp.metric, grp.value) if m in metrics}
        row = _paper_row(str(label), values, str(grp.source.iloc[0]), table)
        row.display = display(str(label), "" if backbone != backbone else str(backbone),
                              "" if schedule != schedule else str(schedule))  # NaN != NaN: empty cell
        rows.append(row)
    cols = list(dict.fromkeys(metrics.values()))
    _fill(rows, cols)
    return AblationTable(task=key, arch="", schedule="", tiny=False, metrics=cols, rows=rows, key=key,
                         heading=heading + " (published)", caption=caption,
                         notes=[f"Published numbers: {df.source.iloc[0]}, {table}."])


def paper_only_tables(paper_csv: str | None = None) -> list[AblationTable]:
    """MoCo v1 Tables 1 and 4, MoCo v2 Tables 2 and 3 (those present in the CSV)."""
    made = [
        _table("paper_v1_table1", "ImageNet linear classification, MoCo vs previous methods (MoCo v1 Table 1)",
               "Linear top-1 (%) on frozen features and the encoder's parameters (millions).", "MoCo v1", "Table 1",
               {"top1": "top-1", "params_M": "params (M)"}, lambda lab, bb, sch: f"{lab} — {bb}", paper_csv),
        _table("paper_v1_table4", "Previous self-supervised methods on PASCAL VOC07 detection (MoCo v1 Table 4)",
               "Faster R-CNN fine-tuned on trainval2007, evaluated on test2007; each method beside the supervised "
               "row of its own setting.", "MoCo v1", "Table 4", {"AP50": "AP50", "AP": "AP", "AP75": "AP75"},
               lambda lab, bb, sch: f"{lab} — {bb}" + (f", {sch}" if sch else ""), paper_csv),
        _table("paper_v2_table2", "MoCo vs SimCLR (MoCo v2 Table 2)", "ImageNet linear top-1 (%), ResNet-50.",
               "MoCo v2", "v2 Table 2", {"top1": "top-1"}, lambda lab, bb, sch: f"{lab}, {sch}", paper_csv),
        _table("paper_v2_table3", "Memory and time cost (MoCo v2 Table 3)",
               "ResNet-50, 200 epochs, 8 V100 GPUs.", "MoCo v2", "v2 Table 3",
               {"memory_GB_per_GPU": "memory (GB/GPU)", "hours_8xV100": "time (hours)"},
               lambda lab, bb, sch: lab, paper_csv),
    ]
    return [t for t in made if t is not None]
