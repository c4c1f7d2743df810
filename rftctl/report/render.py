"""Render a comparison Table (report/tables.py): markdown with its footnote, CSV, JSON records.

Markdown cell: ``**29.15** ± 1.98 (+1.19†)``: the mean over seeds (bold when best in its column),
the half-width of its 95 % interval, the difference from the baseline and, when the seed-level
test of that difference passes after the family's Holm adjustment (report/tables.py), a dagger.
A second table lists each difference with the bracket and the p of the test that goes with it:
over seeds ``+1.19 [-0.40, +2.80] p=0.031, Holm 0.062; sign-flip p=0.250 (min 0.250)``, or, with
one seed a side, the checkpoint test ``+1.19 [+0.20, +2.10] checkpoints p=0.004``. The footnote
says which interval each bracket is, which test sets the dagger, which question it answers and
the family it is adjusted in.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from typing import NamedTuple

from rftctl.report import significance as sig
from rftctl.report.tables import (
    BOOTSTRAP,
    FAMILY_ALL,
    FAMILY_CHECKPOINT,
    FAMILY_PRIMARY,
    FAMILY_SECONDARY,
    T_INTERVAL,
    Cell,
    Table,
    family_size,
)

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
        text += f" ({cell.delta:+.2f}{DAGGER if cell.marked else ''})"
    return text


def format_p(p: float, *, bound: bool = False) -> str:
    """Three decimals from 0.01 up (0.125), two significant digits below (0.0078, 4.9e-05,
    1.2e-10); a p at or below 0.05 is rounded down so that it never reads as above 0.05. A
    Monte Carlo bound (no random pattern as extreme) reads ``<5.0e-05``: p is below it, not it."""
    if bound:
        return f"<{p:.1e}" if p < 1e-4 else f"<{p:.2g}"
    if p >= 0.9995:
        return "1"
    if p >= 0.01:
        return f"{math.floor(p * 1000) / 1000:.3f}" if p <= sig.ALPHA else f"{p:.3f}"
    return f"{p:.2g}" if p >= 1e-4 else f"{p:.1e}"


def _p_text(t: sig.TestResult) -> str:
    text = (
        "p"
        + ("" if format_p(t.p, bound=t.bound).startswith("<") else "=")
        + format_p(t.p, bound=t.bound)
    )
    if t.se is not None and not t.bound:
        text += f" (Monte Carlo, se {t.se:.1g})"
    return text


def format_delta(cell: Cell) -> str:
    """'+1.19 [-0.40, +2.80] p=0.031, Holm 0.062; sign-flip p=0.250 (min 0.250)†' over seeds,
    '+1.19 [+0.20, +2.10] checkpoints p=0.004' with one seed a side (parts only where they are)."""
    if cell.delta is None:
        return ABSENT
    text = f"{cell.delta:+.2f}"
    if cell.delta_interval is not None:
        iv = cell.delta_interval
        text += f" [{iv.low:+.2f}, {iv.high:+.2f}]"
    t = cell.test
    if t is None:
        return text
    if t.kind == sig.PAIRED_T:
        text += f" {_p_text(t)}"
        if cell.p_adjusted is not None and cell.family != FAMILY_SECONDARY:
            text += f", Holm {format_p(cell.p_adjusted)}"
        if cell.seed_flip is not None:
            f = cell.seed_flip
            text += f"; sign-flip {_p_text(f)} (min {format_p(f.min_p)})"
        return text + (DAGGER if cell.marked else "")
    return text + f" checkpoints {_p_text(t)}"


def baseline_label(table: Table) -> str:
    groups = {r.group: r.run for r in table.rows if r.is_baseline}
    if len(set(groups.values())) > 1:  # per-run train values: one baseline run per group
        pairs = ", ".join(f"`{run}` for {group or 'the rest'}" for group, run in groups.items())
        return f"the baseline run of the same group ({pairs})"
    label = next((r.label.split(" / ", 1)[-1] for r in table.rows if r.is_baseline), table.baseline)
    return (
        f"{label} (run `{table.baseline}`)"
        if label != table.baseline
        else f"run `{table.baseline}`"
    )


def _family_text(table: Table, family: str) -> str:
    n, methods, sets, metrics = family_size(table, family)
    return (
        f"{n} comparison{'s' if n != 1 else ''}: {methods} method{'s' if methods != 1 else ''} x "
        f"{sets} set{'s' if sets != 1 else ''} x {metrics} metric{'s' if metrics != 1 else ''}"
    )


def footnote(table: Table) -> str:
    """What the numbers, the +-, the brackets and the dagger mean, which test sets the dagger,
    which question it answers and in which family it is adjusted."""
    cells = [c for r in table.rows for c in r.cells]
    kinds = {c.interval_kind for c in cells if c.value is not None}
    families = {c.family for c in cells if c.family}
    boot = table.bootstrap
    how = (
        (
            f"{boot.resamples} resamples of the problems with replacement, seed {boot.seed}, "
            "2.5th-97.5th percentile"
        )
        if boot
        else ""
    )
    parts = ["Values in percent, the mean over each run's seeds; best mean per column in **bold**"]
    if T_INTERVAL in kinds:
        parts.append(
            "± = half-width of the 95 % t-interval of the mean over seeds (runs with >= 2 seeds: "
            "t quantile with seeds - 1 degrees of freedom, sample standard deviation)"
        )
    if BOOTSTRAP in kinds:
        parts.append(
            f"± with one seed = half-width of the 95 % bootstrap interval of the metric over "
            f"problems ({how})"
        )
    if "" in kinds:
        parts.append("no ± = no interval available (one seed and no per-problem results)")
    parts.append(f"(+x.xx) = difference from {baseline_label(table)}")
    marked_family = (
        FAMILY_PRIMARY
        if FAMILY_PRIMARY in families
        else FAMILY_ALL
        if FAMILY_ALL in families
        else ""
    )
    if marked_family:
        what = (
            f"the declared primary endpoints ({', '.join(f'{s} {m}' for s, m in table.primary)}), "
            if marked_family == FAMILY_PRIMARY
            else "every cell with a seed-level test, "
        )
        parts.append(
            f"{DAGGER} = the method differs from the baseline over training seeds: two-sided "
            f"paired t-test of the "
            f"per-seed differences (the same >= 2 seeds on both sides, paired by seed; seeds - 1 "
            f"degrees of "
            f"freedom), Holm-adjusted p <= {sig.ALPHA} within its family, "
            f"{what}{_family_text(table, marked_family)}; "
            "the problem set is held fixed"
        )
        parts.append(
            "in the difference table, [low, high] = 95 % t-interval of the mean per-seed "
            "difference (the "
            "question the p answers), Holm = the adjusted p; sign-flip = the exact sign-flip test "
            "over the "
            "same per-seed differences, which assumes no distribution but cannot give less than "
            "its min, "
            "2 / 2^seeds (0.250 with 3 seeds)"
        )
    if FAMILY_SECONDARY in families:
        parts.append(
            f"cells outside the primary endpoints show their unadjusted p and no {DAGGER} (Holm "
            f"within "
            f"those {_family_text(table, FAMILY_SECONDARY)} in table.csv)"
        )
    if FAMILY_CHECKPOINT in families:
        seed = boot.seed if boot else 0
        parts.append(
            f"no {DAGGER} where a side has one seed: one checkpoint per method cannot separate "
            f"the method from "
            "its training seed; the difference table shows instead the checkpoint test, which "
            "asks whether "
            "these two checkpoints differ on these problems: the paired sign-flip test over the "
            "problems that "
            "differ, exact (the distribution of the integer per-problem differences by "
            "convolution, or every "
            f"sign pattern enumerated) or, where marked Monte Carlo, {sig.MC_FLIPS} random "
            f"patterns with seed "
            f"{seed} and the standard error; unadjusted p (Holm within the "
            f"{_family_text(table, FAMILY_CHECKPOINT)} in table.csv); [low, high] = 95 % "
            f"paired-bootstrap "
            f"interval of the difference over problems ({how}; each resample draws the same "
            f"problems for the "
            "run and the baseline)"
        )
    return "; ".join(parts) + "."


def _quoted_lines(table: Table, quoted: Sequence[Quoted]) -> tuple[list[str], list[str]]:
    """(table lines of the quoted rows, footnote parts: their sources and unplaced values)."""
    headers = [c.header for c in table.columns]
    lines = [
        f"| {q.label} {QUOTED} | "
        + " | ".join(f"{q.values[h]:.2f}" if h in q.values else ABSENT for h in headers)
        + " |"
        for q in quoted
    ]
    sources = list(dict.fromkeys(q.source for q in quoted))
    what = (
        f"{QUOTED} = quoted from {'; '.join(sources)}: published numbers, not measured here (no "
        f"interval, "
        "never bold, never compared)"
    )
    notes = [what] if quoted else []
    unplaced = [f"{q.label}: {h}" for q in quoted for h in q.values if h not in headers]
    if unplaced:
        notes.append("quoted values without a column in this table: " + ", ".join(unplaced))
    return lines, notes


def to_markdown(
    table: Table, *, missing: str = "", quoted: Sequence[Quoted] = (), extra: str = ""
) -> str:
    """A GitHub markdown table (with any quoted rows last), its footnote, the difference table
    and the notes."""
    blocks = []
    if table.columns:
        head = "| Method | " + " | ".join(c.header for c in table.columns) + " |"
        rule = "|---|" + "---:|" * len(table.columns)
        q_lines, q_notes = _quoted_lines(table, quoted)
        lines = (
            [head, rule]
            + [
                f"| {r.label} | " + " | ".join(format_cell(c) for c in r.cells) + " |"
                for r in table.rows
            ]
            + q_lines
        )
        note = footnote(table)
        blocks += ["\n".join(lines), note[:-1] + "".join(f"; {n}" for n in q_notes) + "."]
        diff_rows = [
            r
            for r in table.rows
            if any(c.delta_interval is not None or c.test is not None for c in r.cells)
        ]
        if diff_rows:
            title = (
                f"Difference from {baseline_label(table)}, with the 95 % interval and the p-value "
                f"of "
                "its test (over seeds, or of the two checkpoints with one seed a side):"
            )
            lines = [title, "", head, rule]
            lines += [
                f"| {r.label} | " + " | ".join(format_delta(c) for c in r.cells) + " |"
                for r in diff_rows
            ]
            blocks.append("\n".join(lines))
    else:
        blocks.append("No evaluation results found.")
    if extra:  # e.g. the entropy table (report/entropy_effect.py)
        blocks.append(extra)
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
    "H delta", "H delta low" / "H delta high" (the delta's bracket), "H delta interval" (t: the
    t-interval of the per-seed differences | bootstrap: paired over problems), "H p" (the p of the
    delta's test, 6 significant digits), "H p bound" (1: p is a Monte Carlo upper bound), "H p se"
    (its Monte Carlo standard error), "H p holm" (Holm-adjusted within "H family"), "H test"
    (report/significance.py), "H family", "H marked" (0/1: the dagger), "H sign-flip p" and
    "H sign-flip min p" (the exact sign-flip test over seeds), and "H seed<k>" for every seed any
    row has."""
    seeds = sorted({s for r in table.rows for s in r.seeds})
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    header = ["run", "group", "label", "seeds"]
    for c in table.columns:
        h = c.header
        header += [
            h,
            f"{h} low",
            f"{h} high",
            f"{h} interval",
            f"{h} delta",
            f"{h} delta low",
            f"{h} delta high",
            f"{h} delta interval",
            f"{h} p",
            f"{h} p bound",
            f"{h} p se",
            f"{h} p holm",
            f"{h} test",
            f"{h} family",
            f"{h} marked",
            f"{h} sign-flip p",
            f"{h} sign-flip min p",
        ] + [f"{h} seed{s}" for s in seeds]
    w.writerow(header)
    for r in table.rows:
        vals = [r.run, r.group, r.label, " ".join(map(str, r.seeds))]
        for c in r.cells:
            iv, div, t, f = c.interval, c.delta_interval, c.test, c.seed_flip
            vals += [
                _fmt(c.value),
                _fmt(iv and iv.low),
                _fmt(iv and iv.high),
                c.interval_kind,
                _fmt(c.delta, True),
                _fmt(div and div.low, True),
                _fmt(div and div.high, True),
                c.delta_interval_kind,
                _g(t and t.p),
                "" if t is None else str(int(t.bound)),
                _g(t and t.se),
                _g(c.p_adjusted),
                "" if t is None else t.kind,
                c.family,
                "" if t is None else str(int(c.marked)),
                _g(f and f.p),
                _g(f and f.min_p),
            ]
            vals += [_fmt(c.per_seed.get(s)) for s in seeds]
        w.writerow(vals)
    return buf.getvalue()


def _g(x: float | None) -> str:
    return "" if x is None else f"{x:.6g}"


def to_records(table: Table) -> list[dict]:
    """JSON-friendly rows for summary.json: {run, group, baseline (the run its deltas are against),
    label, seeds, values (percent), intervals ([low, high]), deltas, delta_intervals, p_values,
    p_bounds (headers whose p is a Monte Carlo bound), p_holm, tests, families,
    sign_flip_over_seeds, marked (headers with the dagger), per_seed, best}."""
    out = []
    for r in table.rows:
        pairs = list(zip(table.columns, r.cells))
        out.append(
            {
                "run": r.run,
                "group": r.group,
                "baseline": r.baseline_run,
                "label": r.label,
                "seeds": list(r.seeds),
                "values": {c.header: x.value for c, x in pairs},
                "intervals": {
                    c.header: [round(x.interval.low, 4), round(x.interval.high, 4)]
                    for c, x in pairs
                    if x.interval is not None
                },
                "deltas": {c.header: x.delta for c, x in pairs if x.delta is not None},
                "delta_intervals": {
                    c.header: [round(x.delta_interval.low, 4), round(x.delta_interval.high, 4)]
                    for c, x in pairs
                    if x.delta_interval is not None
                },
                "p_values": {c.header: x.test.p for c, x in pairs if x.test is not None},
                "p_bounds": [c.header for c, x in pairs if x.test is not None and x.test.bound],
                "p_holm": {c.header: x.p_adjusted for c, x in pairs if x.p_adjusted is not None},
                "tests": {c.header: x.test.kind for c, x in pairs if x.test is not None},
                "families": {c.header: x.family for c, x in pairs if x.family},
                "sign_flip_over_seeds": {
                    c.header: {"p": x.seed_flip.p, "min_p": x.seed_flip.min_p}
                    for c, x in pairs
                    if x.seed_flip is not None
                },
                "marked": [c.header for c, x in pairs if x.marked],
                "per_seed": {
                    c.header: {str(s): v for s, v in x.per_seed.items()}
                    for c, x in pairs
                    if x.per_seed
                },
                "best": [c.header for c, x in pairs if x.best],
            }
        )
    return out
