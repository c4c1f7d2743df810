"""Render a comparison Table (report/tables.py): markdown with its footnote, CSV, JSON records.

Markdown cell: ``**29.15** ± 1.98 (+1.19†)``: the mean over seeds (bold when best in its column),
the half-width of its 95 % interval, the difference from the baseline and, when the paired test
of that difference gives p <= 0.05 (report/significance.py), a dagger. A second table lists each
difference with its 95 % paired-bootstrap interval (the size of the effect) and its p-value,
``+1.19 [-0.40, +2.80] p=0.031†``. The footnote says which interval each +- is, which test
decides the dagger and which question that test answers.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from typing import NamedTuple

from rftctl.report import significance as sig
from rftctl.report.tables import BOOTSTRAP, T_INTERVAL, Cell, Table

ABSENT = "—"
DAGGER = "†"
QUOTED = "‡"


class Quoted(NamedTuple):
    """Published numbers shown as a table row (report.quoted): header -> percent."""

    label: str
    source: str
    values: Mapping[str, float]


def format_cell(cell: Cell) -> str:
    if cell.value is None:
        return ABSENT
    text = f"**{cell.value:.2f}**" if cell.best else f"{cell.value:.2f}"
    if cell.interval is not None:
        text += f" ± {cell.interval.half_width:.2f}"
    if cell.delta is not None:
        text += f" ({cell.delta:+.2f}{DAGGER if cell.significant else ''})"
    return text


def format_p(p: float) -> str:
    """Three decimals from 0.01 up (0.125), two significant digits below (0.0078, 4.9e-05); a
    significant p is rounded down so that it never reads as above 0.05."""
    if p >= 0.9995:
        return "1"
    if p >= 0.01:
        return f"{math.floor(p * 1000) / 1000:.3f}" if p <= sig.ALPHA else f"{p:.3f}"
    return f"{p:.2g}" if p >= 1e-4 else f"{p:.1e}"


def format_delta(cell: Cell) -> str:
    """'+1.19 [-0.40, +2.80] p=0.031†' (the interval and the p-value only where there are)."""
    if cell.delta is None:
        return ABSENT
    text = f"{cell.delta:+.2f}"
    if cell.delta_interval is not None:
        iv = cell.delta_interval
        text += f" [{iv.low:+.2f}, {iv.high:+.2f}]"
    if cell.test is not None:
        text += f" p={format_p(cell.test.p)}{DAGGER if cell.significant else ''}"
    return text


def _baseline_label(table: Table) -> str:
    groups = {r.group: r.run for r in table.rows if r.is_baseline}
    if len(set(groups.values())) > 1:  # per-run train values: one baseline run per group
        pairs = ", ".join(f"`{run}` for {group or 'the rest'}" for group, run in groups.items())
        return f"the baseline run of the same group ({pairs})"
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
    tests = {c.test.kind for r in table.rows for c in r.cells if c.test is not None}
    if tests:
        parts.append(f"{DAGGER} = two-sided p <= {sig.ALPHA} in a paired test (p-values in the difference "
                     "table below, table.csv and results.csv)")
    seed = boot.seed if boot else 0
    if tests & {sig.SIGN_FLIP_EXACT, sig.SIGN_FLIP_MC}:
        parts.append("where a side has one seed, the test is the sign-flip test of the per-problem differences "
                     f"(all 2^m sign patterns of the m problems that differ when m <= {sig.EXACT_MAX}, else "
                     f"{sig.MC_FLIPS} random patterns, seed {seed}); it asks whether these two checkpoints "
                     "differ on these problems, not whether the method beats the baseline over training seeds")
    if tests & {sig.PAIRED_T, sig.WELCH_T}:
        parts.append("where both sides have >= 2 seeds, the test is a paired t-test over the per-seed "
                     "differences (Welch's t-test when the seed sets differ); it asks whether the method "
                     "beats the baseline over training seeds on these problems (the problem set held fixed)")
    if any(c.delta_interval is not None for r in table.rows for c in r.cells):
        parts.append(f"[low, high] = 95 % paired-bootstrap interval of the difference, the size of the effect, "
                     f"not the mark ({how}; each resample draws the same problems for the run and the baseline, "
                     "with each run's per-problem values averaged over its seeds)")
    return "; ".join(parts) + "."


def _quoted_lines(table: Table, quoted: Sequence[Quoted]) -> tuple[list[str], list[str]]:
    """(table lines of the quoted rows, footnote parts: their sources and unplaced values)."""
    headers = [c.header for c in table.columns]
    lines = [f"| {q.label} {QUOTED} | " + " | ".join(
        f"{q.values[h]:.2f}" if h in q.values else ABSENT for h in headers) + " |" for q in quoted]
    sources = list(dict.fromkeys(q.source for q in quoted))
    what = (f"{QUOTED} = quoted from {'; '.join(sources)}: published numbers, not measured here (no interval, "
            "never bold, never compared)")
    notes = [what] if quoted else []
    unplaced = [f"{q.label}: {h}" for q in quoted for h in q.values if h not in headers]
    if unplaced:
        notes.append("quoted values without a column in this table: " + ", ".join(unplaced))
    return lines, notes


def to_markdown(table: Table, *, missing: str = "", quoted: Sequence[Quoted] = ()) -> str:
    """A GitHub markdown table (with any quoted rows last), its footnote, the difference table
    and the notes."""
    blocks = []
    if table.columns:
        head = "| Method | " + " | ".join(c.header for c in table.columns) + " |"
        rule = "|---|" + "---:|" * len(table.columns)
        q_lines, q_notes = _quoted_lines(table, quoted)
        lines = [head, rule] + [
            f"| {r.label} | " + " | ".join(format_cell(c) for c in r.cells) + " |" for r in table.rows
        ] + q_lines
        note = footnote(table)
        blocks += ["\n".join(lines), note[:-1] + "".join(f"; {n}" for n in q_notes) + "."]
        diff_rows = [r for r in table.rows if any(c.delta_interval is not None or c.test is not None
                                                  for c in r.cells)]
        if diff_rows:
            title = (f"Difference from {_baseline_label(table)} with its 95 % paired-bootstrap interval "
                     "and the p-value of its paired test:")
            lines = [title, "",
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
    "H delta", "H delta low" / "H delta high" (paired bootstrap), "H p" (two-sided p-value of the
    paired test, 6 significant digits), "H test" (which test: report/significance.py),
    "H significant" (0/1: p <= 0.05), and "H seed<k>" for every seed any row has."""
    seeds = sorted({s for r in table.rows for s in r.seeds})
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    header = ["run", "group", "label", "seeds"]
    for c in table.columns:
        h = c.header
        header += [h, f"{h} low", f"{h} high", f"{h} interval", f"{h} delta", f"{h} delta low",
                   f"{h} delta high", f"{h} p", f"{h} test", f"{h} significant"] + [f"{h} seed{s}" for s in seeds]
    w.writerow(header)
    for r in table.rows:
        vals = [r.run, r.group, r.label, " ".join(map(str, r.seeds))]
        for c in r.cells:
            iv, div, t = c.interval, c.delta_interval, c.test
            vals += [_fmt(c.value), _fmt(iv and iv.low), _fmt(iv and iv.high), c.interval_kind,
                     _fmt(c.delta, True), _fmt(div and div.low, True), _fmt(div and div.high, True),
                     "" if t is None else f"{t.p:.6g}", "" if t is None else t.kind,
                     "" if t is None else str(int(c.significant))]
            vals += [_fmt(c.per_seed.get(s)) for s in seeds]
        w.writerow(vals)
    return buf.getvalue()


def to_records(table: Table) -> list[dict]:
    """JSON-friendly rows for summary.json: {run, group, baseline (the run its deltas are against),
    label, seeds, values (percent), intervals
    ([low, high]), deltas, delta_intervals, p_values, tests, significant, per_seed, best}."""
    out = []
    for r in table.rows:
        pairs = list(zip(table.columns, r.cells))
        out.append({
            "run": r.run,
            "group": r.group,
            "baseline": r.baseline_run,
            "label": r.label,
            "seeds": list(r.seeds),
            "values": {c.header: x.value for c, x in pairs},
            "intervals": {c.header: [round(x.interval.low, 4), round(x.interval.high, 4)]
                          for c, x in pairs if x.interval is not None},
            "deltas": {c.header: x.delta for c, x in pairs if x.delta is not None},
            "delta_intervals": {c.header: [round(x.delta_interval.low, 4), round(x.delta_interval.high, 4)]
                                for c, x in pairs if x.delta_interval is not None},
            "p_values": {c.header: x.test.p for c, x in pairs if x.test is not None},
            "tests": {c.header: x.test.kind for c, x in pairs if x.test is not None},
            "significant": [c.header for c, x in pairs if x.significant],
            "per_seed": {c.header: {str(s): v for s, v in x.per_seed.items()} for c, x in pairs if x.per_seed},
            "best": [c.header for c, x in pairs if x.best],
        })
    return out
