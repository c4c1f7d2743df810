"""The entropy effect, tested: each run's final entropy against its baseline's, over seeds.

The paper's mechanism is that ClipB and ClipV keep the policy's entropy from falling as GRPO's
does. Counting seeds ("3 of 3") says nothing about how sure that is, so the report tests it the
way it tests accuracy (report/significance.py): per run, the final entropy H of each seed
(report/tradeoff.py: the mean of ``train/entropy`` over the last tenth of the logged steps) and,
against the baseline run of its group with the same >= 2 seeds, the per-seed differences
D_k = H_run,k - H_base,k with their 95 % t-interval, the paired t-test and the exact sign-flip
test over seeds (with its smallest possible p). The runs' comparisons form one family, Holm-
adjusted. The entropy table carries no mark: it is a secondary endpoint, reported with its p.
With one seed, or different seed sets, the values are shown without a test.

Written into table.md (after the accuracy tables), ``entropy.csv`` and summary.json.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from rftctl import metric_names as names
from rftctl.report import significance as sig
from rftctl.report.intervals import Interval, t_interval
from rftctl.report.render import format_p
from rftctl.report.tradeoff import final_entropy

ENTROPY_CSV = "entropy.csv"


@dataclass(frozen=True)
class EntropyRow:
    run: str
    label: str
    baseline_run: str  # "" for a baseline, or without one
    start: dict[int, float]  # seed -> entropy at the first logged step
    final: dict[int, float]  # seed -> final entropy
    comparison: sig.SeedComparison | None = None
    p_adjusted: float | None = None

    @property
    def mean(self) -> float | None:
        return math.fsum(self.final.values()) / len(self.final) if self.final else None

    @property
    def mean_start(self) -> float | None:
        return math.fsum(self.start.values()) / len(self.start) if self.start else None

    @property
    def interval(self) -> Interval | None:
        return t_interval(list(self.final.values())) if len(self.final) >= 2 else None


def _start(df) -> float | None:
    if df is None or names.ENTROPY not in df.columns:
        return None
    col = df.sort_values("step")[names.ENTROPY].dropna()
    return None if col.empty else float(col.iloc[0])


def build(
    logs: Mapping[str, Mapping[int, object]],
    labels: Mapping[str, str],
    baselines: Mapping[str, str],
) -> list[EntropyRow]:
    """Rows in the order of ``logs`` (run -> seed -> train log frame).

    labels: run -> display label; baselines: run -> the run it is compared with (absent or ""
    for a baseline run)."""
    rows = []
    for run, by_seed in logs.items():
        final = {s: h for s, df in sorted(by_seed.items()) if (h := final_entropy(df)) is not None}
        start = {s: h for s, df in sorted(by_seed.items()) if (h := _start(df)) is not None}
        if final:
            rows.append(EntropyRow(run, labels.get(run, run), baselines.get(run, ""), start, final))
    by_run = {r.run: r for r in rows}
    rows = [
        replace(r, comparison=sig.seed_comparison(r.final, by_run[r.baseline_run].final))
        if r.baseline_run in by_run
        else r
        for r in rows
    ]
    tested = [i for i, r in enumerate(rows) if r.comparison is not None]
    adjusted = sig.holm([rows[i].comparison.t.p for i in tested])
    for i, p in zip(tested, adjusted):
        rows[i] = replace(rows[i], p_adjusted=p)
    return rows


def to_markdown(rows: Sequence[EntropyRow], baseline_label: str) -> str:
    """The entropy table with its footnote; "" without rows."""
    if not rows:
        return ""
    several = any(len(r.final) >= 2 for r in rows)
    lines = [
        f"Final entropy of the rollouts (nats) and its difference from {baseline_label} over "
        f"seeds:",
        "",
        (
            "| Method | seeds | first step | final | difference [95 % t-interval] | p (paired t) "
            "| Holm | "
            "sign-flip p (min) |"
        ),
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        iv = r.interval
        final = f"{r.mean:.4f}" + (f" ± {iv.half_width:.4f}" if iv is not None else "")
        start = "—" if r.mean_start is None else f"{r.mean_start:.4f}"
        c = r.comparison
        if c is None:
            base_mean = None
            diff = "—"
            if r.baseline_run:
                base_mean = next((b.mean for b in rows if b.run == r.baseline_run), None)
            if base_mean is not None:
                diff = f"{r.mean - base_mean:+.4f}"
            cols = [diff, "—", "—", "—"]
        else:
            d = math.fsum(c.differences) / len(c.differences)
            cols = [
                f"{d:+.4f} [{c.interval.low:+.4f}, {c.interval.high:+.4f}]",
                format_p(c.t.p),
                format_p(r.p_adjusted),
                f"{format_p(c.sign_flip.p)} ({format_p(c.sign_flip.min_p)})",
            ]
        lines.append(
            f"| {r.label} | {len(r.final)} | {start} | {final} | " + " | ".join(cols) + " |"
        )
    n = sum(r.comparison is not None for r in rows)
    note = (
        "Final = mean of train/entropy over the last 10 % of the logged steps; first step = the "
        "entropy of "
        "the first step's rollouts; ± = half-width of the 95 % t-interval over seeds. "
    )
    if n:
        note += (
            f"The difference is tested over the same >= 2 seeds on both sides, paired by seed: "
            f"[low, high] = "
            f"95 % t-interval of the mean per-seed difference, p = two-sided paired t-test, Holm "
            f"= adjusted "
            f"within these {n} entropy comparison{'s' if n != 1 else ''}, sign-flip = the exact "
            f"sign-flip "
            "test over seeds with its smallest possible p (2 / 2^seeds). No mark: a secondary "
            "endpoint."
        )
    elif several:
        note += "No test: a run and its baseline do not have the same >= 2 seeds."
    else:
        note += (
            "One seed per run: no test (the entropy effect needs the same >= 2 seeds on both "
            "sides)."
        )
    return "\n".join(lines) + "\n\n" + note


def to_csv(rows: Sequence[EntropyRow]) -> str:
    """run, label, baseline, seeds, first step, final (mean), final low / high (t-interval),
    delta, delta low / high, p, p holm, sign-flip p, sign-flip min p, then final entropy per
    seed."""
    seeds = sorted({s for r in rows for s in r.final})
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(
        [
            "run",
            "label",
            "baseline",
            "seeds",
            "first step",
            "final",
            "final low",
            "final high",
            "delta",
            "delta low",
            "delta high",
            "p",
            "p holm",
            "sign-flip p",
            "sign-flip min p",
        ]
        + [f"final seed{s}" for s in seeds]
    )
    g = "{:.6g}".format
    for r in rows:
        iv, c = r.interval, r.comparison
        vals = [
            r.run,
            r.label,
            r.baseline_run,
            " ".join(map(str, r.final)),
            "" if r.mean_start is None else g(r.mean_start),
            g(r.mean),
            "" if iv is None else g(iv.low),
            "" if iv is None else g(iv.high),
        ]
        if c is None:
            vals += [""] * 7
        else:
            vals += [
                g(math.fsum(c.differences) / len(c.differences)),
                g(c.interval.low),
                g(c.interval.high),
                g(c.t.p),
                g(r.p_adjusted),
                g(c.sign_flip.p),
                g(c.sign_flip.min_p),
            ]
        vals += ["" if s not in r.final else g(r.final[s]) for s in seeds]
        w.writerow(vals)
    return buf.getvalue()


def to_records(rows: Sequence[EntropyRow]) -> list[dict]:
    out = []
    for r in rows:
        c, iv = r.comparison, r.interval
        rec = {
            "run": r.run,
            "label": r.label,
            "baseline": r.baseline_run,
            "first_step": {str(k): v for k, v in r.start.items()},
            "final": {str(k): v for k, v in r.final.items()},
            "mean": r.mean,
            "interval": None if iv is None else [iv.low, iv.high],
        }
        if c is not None:
            rec.update(
                delta=math.fsum(c.differences) / len(c.differences),
                delta_interval=[c.interval.low, c.interval.high],
                p=c.t.p,
                p_holm=r.p_adjusted,
                sign_flip_p=c.sign_flip.p,
                sign_flip_min_p=c.sign_flip.min_p,
            )
        out.append(rec)
    return out
