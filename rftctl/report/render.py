"""Render a comparison Table (report/tables.py): markdown with its footnote, CSV, JSON records.

Markdown cell: ``**29.15** ± 1.98 (+1.19†)``: the mean over seeds (bold when best in its column),
the half-width of its 95 % interval, the difference from the baseline and, when the 95 %
paired-bootstrap interval of that difference excludes 0, a dagger. A second table lists each
difference with its interval, ``+1.19 [-0.40, +2.80]``. The footnote says which interval each
+- is and how the dagger is decided.
"""

from __future__ import annotations

import csv
import io

from rftctl.report.tables import BOOTSTRAP, T_INTERVAL, Cell, Table

ABSENT = "—"
DAGGER = "†"


def format_cell(cell: Cell) -> str:
    if cell.value is None:
        return ABSENT
    text = f"**{cell.value:.2f}**" if cell.best else f"{cell.value:.2f}"
    if cell.interval is not None:
        text += f" ± {cell.interval.half_width:.2f}"
    if cell.delta is not None:
        text += f" ({cell.delta:+.2f}{DAGGER if cell.significant else ''})"
    return text


def format_delta(cell: Cell) -> str:
    """'+1.19 [-0.40, +2.80]†' (the interval only where there is one)."""
    if cell.delta is None:
        return ABSENT
    text = f"{cell.delta:+.2f}"
    if cell.delta_interval is not None:
        iv = cell.delta_interval
        text += f" [{iv.low:+.2f}, {iv.high:+.2f}]{DAGGER if cell.significant else ''}"
    return text


def _baseline_label(table: Table) -> str:
    label = next((r.label.split(" / ", 1)[-1] for r in table.rows if r.is_baseline), table.baseline)
    return f"{label} (run `{table.baseline}`)" if label != table.baseline else f"run `{table.baseline}`"


def footnote(table: Table) -> str:
    """What the numbers, the +- and the dagger mean, for the kinds of interval the table holds."""
    kinds = {c.interval_kind for r in table.rows for c in r.cells if c.value is not None}
    boot = table.bootstrap
    how = (f"{boot.resamples} resamples of the problems with replacement, seed {boot.seed}, "
           "2.5th-97.5th percentile") if boot else ""
    parts = ["Values in percent, the mean over each run's seeds; best mean per column in **bold**"]
    if T_INTERVAL in kinds:
        parts.append("± = half-width of the 95 % t-interval of the mean over seeds (runs with >= 2 seeds: "
                     "t quantile with seeds - 1 degrees of freedom, sample standard deviation)")
    if BOOTSTRAP in kinds:
        parts.append(f"± with one seed = half-width of the 95 % bootstrap interval of the metric over problems ({how})")
    if "" in kinds:
        parts.append("no ± = no interval available (one seed and no per-problem results)")
    parts.append(f"(+x.xx) = difference from {_baseline_label(table)}")
    if any(c.delta_interval is not None for r in table.rows for c in r.cells):
        parts.append(f"{DAGGER} = its 95 % paired-bootstrap interval excludes 0 ({how}; each resample draws "
                     "the same problems for the run and the baseline, with each run's per-problem values "
                     "averaged over its seeds); the intervals are in the difference table below")
    return "; ".join(parts) + "."


def to_markdown(table: Table, *, missing: str = "") -> str:
    """A GitHub markdown table, its footnote, the difference table and the notes."""
    blocks = []
    if table.columns:
        head = "| Method | " + " | ".join(c.header for c in table.columns) + " |"
        rule = "|---|" + "---:|" * len(table.columns)
        lines = [head, rule] + [
            f"| {r.label} | " + " | ".join(format_cell(c) for c in r.cells) + " |" for r in table.rows
        ]
        blocks += ["\n".join(lines), footnote(table)]
        diff_rows = [r for r in table.rows if any(c.delta_interval is not None for c in r.cells)]
        if diff_rows:
            lines = [f"Difference from {_baseline_label(table)} with its 95 % paired-bootstrap interval:", "",
                     head, rule]
            lines += [f"| {r.label} | " + " | ".join(format_delta(c) for c in r.cells) + " |" for r in diff_rows]
            blocks.append("\n".join(lines))
    else:
        blocks.append("No evaluation results found.")
    if table.notes:
        blocks.append("\n".join(f"- {n}" for n in table.notes))
    if missing:
        blocks.append(missing)
    return "\n\n".join(blocks) + "\n"


def _fmt(x: float | None, sign: bool = False) -> str:
    return "" if x is None else (f"{x:+.2f}" if sign else f"{x:.2f}")


def to_csv(table: Table) -> str:
    """One row per run: run, group, label, seeds; then per column (header H):
    H (mean, percent), "H low" / "H high" (its 95 % interval), "H interval" (t | bootstrap),
    "H delta", "H delta low" / "H delta high" (paired bootstrap), "H significant" (0/1), and
    "H seed<k>" for every seed any row has."""
    seeds = sorted({s for r in table.rows for s in r.seeds})
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    header = ["run", "group", "label", "seeds"]
    for c in table.columns:
        h = c.header
        header += [h, f"{h} low", f"{h} high", f"{h} interval", f"{h} delta", f"{h} delta low",
                   f"{h} delta high", f"{h} significant"] + [f"{h} seed{s}" for s in seeds]
    w.writerow(header)
    for r in table.rows:
        vals = [r.run, r.group, r.label, " ".join(map(str, r.seeds))]
        for c in r.cells:
            iv, div = c.interval, c.delta_interval
            vals += [_fmt(c.value), _fmt(iv and iv.low), _fmt(iv and iv.high), c.interval_kind,
                     _fmt(c.delta, True), _fmt(div and div.low, True), _fmt(div and div.high, True),
                     "" if div is None else str(int(c.significant))]
            vals += [_fmt(c.per_seed.get(s)) for s in seeds]
        w.writerow(vals)
    return buf.getvalue()


def to_records(table: Table) -> list[dict]:
    """JSON-friendly rows for summary.json: {run, group, label, seeds, values (percent), intervals
    ([low, high]), deltas, delta_intervals, significant, per_seed, best}."""
    out = []
    for r in table.rows:
        pairs = list(zip(table.columns, r.cells))
        out.append({
            "run": r.run,
            "group": r.group,
            "label": r.label,
            "seeds": list(r.seeds),
            "values": {c.header: x.value for c, x in pairs},
            "intervals": {c.header: [round(x.interval.low, 4), round(x.interval.high, 4)]
                          for c, x in pairs if x.interval is not None},
            "deltas": {c.header: x.delta for c, x in pairs if x.delta is not None},
            "delta_intervals": {c.header: [round(x.delta_interval.low, 4), round(x.delta_interval.high, 4)]
                                for c, x in pairs if x.delta_interval is not None},
            "significant": [c.header for c, x in pairs if x.significant],
            "per_seed": {c.header: {str(s): v for s, v in x.per_seed.items()} for c, x in pairs if x.per_seed},
            "best": [c.header for c, x in pairs if x.best],
        })
    return out
