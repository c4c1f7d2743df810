"""The tidy results file: every evaluated number, one row per run x seed x set x metric x K.

`rftctl report` writes it as data/report/results.csv and data/report/results.parquet (same
rows), for analysis outside rftctl (pandas, R, a spreadsheet) without parsing the per-cell JSON
files. Columns, in order:

    run             run name (a key of `methods`, or `base` for the untrained policy)
    display         the method's display name (GRPO, GRPO+ClipB, ...)
    method          registered method name (`base` for the base policy)
    seed            the cell's seed (training, rollouts, evaluation sampling)
    set             eval set name (prepare.eval)
    n               samples per problem
    temperature     sampling temperature
    top_p           nucleus sampling top_p
    max_new_tokens  response budget
    sampling_seed   the seed the evaluation sampled with (evaluate.sampling.seed + seed)
    num_problems    problems evaluated in the set
    metric          avg | pass
    k               K of the metric: avg@K = accuracy of the first K samples of each problem,
                    pass@K = the unbiased Pass@K estimator from all n samples
    value_pct       the metric in percent, 0 to 100 (as the table prints it)
    baseline        the run this run is compared with in the table (the baseline run sharing
                    its per-run training overrides); empty for a baseline run
    p_value         two-sided p-value of the table's paired test of run minus baseline for this
                    set, setting, metric and K (the same on every seed's row: the test uses all
                    seeds); empty where the table has no such column
    p_test          the test that gave p_value (report/significance.py): "paired t over seeds"
                    (the mark's question: does the method differ over training seeds) or, with
                    one seed a side, "sign-flip exact" / "sign-flip Monte Carlo" over problems
                    (do these two checkpoints differ on these problems)
    p_bound         True when p_value is a Monte Carlo upper bound (p < p_value)
    p_holm          p_value Holm-adjusted within p_family
    p_family        the comparisons the adjustment counts (report/tables.py FAMILY_*)
    marked          True when the table marks the cell (†)

Every K the evaluate stage wrote is included (not only the table's columns). Rows are sorted by
run (in the report's order), seed, set, metric, K.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

from rftctl.report.inputs import RunArtifacts, Setting
from rftctl.report.tables import Table
from rftctl.util import atomic_write_bytes, atomic_write_text

COLUMNS = (
    "run",
    "display",
    "method",
    "seed",
    "set",
    "n",
    "temperature",
    "top_p",
    "max_new_tokens",
    "sampling_seed",
    "num_problems",
    "metric",
    "k",
    "value_pct",
    "baseline",
    "p_value",
    "p_test",
    "p_bound",
    "p_holm",
    "p_family",
    "marked",
)

Key = tuple[str, str, Setting, str, int]  # run, set, setting, metric kind, K
_NO_TEST = {
    "p_value": None,
    "p_test": "",
    "p_bound": None,
    "p_holm": None,
    "p_family": "",
    "marked": None,
}


def comparisons(table: Table) -> tuple[dict[str, str], dict[Key, dict]]:
    """(run -> its baseline run, (run, set, setting, kind, K) -> the p columns) from a built
    table."""
    baselines = {r.run: r.baseline_run for r in table.rows if r.baseline_run}
    tests = {
        (r.run, c.dataset, c.setting, c.kind, c.k): {
            "p_value": cell.test.p,
            "p_test": cell.test.kind,
            "p_bound": cell.test.bound,
            "p_holm": cell.p_adjusted,
            "p_family": cell.family,
            "marked": cell.marked,
        }
        for r in table.rows
        for c, cell in zip(table.columns, r.cells)
        if cell.test is not None
    }
    return baselines, tests


def rows(runs: Sequence[RunArtifacts], table: Table) -> list[dict]:
    """The tidy rows of every run's eval results, in the report's run order, with the p-values of
    ``table`` (the comparison table built from the same runs)."""
    baselines, tests = comparisons(table)
    out = []
    for a in runs:
        for seed, ev in sorted(a.evals.items()):
            for s in ev.sets:
                metrics = sorted(
                    (kind, int(k), v)
                    for key, v in s.values.items()
                    for kind, k in [key.split("@", 1)]
                    if k.isdigit()
                )
                for kind, k, v in metrics:
                    ps = tests.get((a.run, s.name, s.setting, kind, k), _NO_TEST)
                    out.append(
                        {
                            "run": a.run,
                            "display": ev.display,
                            "method": ev.method,
                            "seed": seed,
                            "set": s.name,
                            "n": s.setting.n,
                            "temperature": s.setting.temperature,
                            "top_p": s.setting.top_p,
                            "max_new_tokens": s.setting.max_new_tokens,
                            "sampling_seed": s.effective_seed
                            if s.effective_seed is not None
                            else s.setting.seed,
                            "num_problems": s.num_problems,
                            "metric": kind,
                            "k": k,
                            "value_pct": 100.0 * v,
                            "baseline": baselines.get(a.run, ""),
                            **ps,
                        }
                    )
    return out


def write(records: list[dict], csv_path: Path, parquet_path: Path) -> None:
    """Write the rows as CSV and parquet (atomically; an empty frame still has the columns)."""

    import pandas as pd

    df = pd.DataFrame(records, columns=list(COLUMNS))
    # nullable integers: num_problems may be absent in old files, and must not turn into floats
    for col in ("seed", "n", "max_new_tokens", "sampling_seed", "num_problems", "k"):
        df[col] = df[col].astype("Int64")
    atomic_write_text(csv_path, df.to_csv(index=False, lineterminator="\n"))
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    atomic_write_bytes(parquet_path, buf.getvalue())
