"""data/report/curves.tsv: every run's training curves in one long table, for `dvc plots`.

dvc.yaml's top-level ``plots:`` draws one plot per headline metric from this file with the
template ``.dvc/plots/rftctl_runs.json``, which colours lines by the ``run`` column and draws each
seed as its own line. One file for all runs is what makes the overlay general: DVC's y-mapping
names files one by one and cannot loop over the runs in params.yaml, while this table grows
with them. Rows: one per (run, seed, step); a metric a run does not log (GRPO has no clip/frac)
is an empty cell, which Vega-Lite leaves out of the line.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

from rftctl import metric_names as names
from rftctl.util import atomic_write_text

CURVES = "curves.tsv"
# The headline curves (docs/metrics.md): what a reader of an entropy-control run looks at first.
METRICS = (names.ENTROPY, names.REWARD, names.CLIP_FRAC, names.RESPONSE_LENGTH)
HEADER = ("step", "run", "seed", *METRICS)


def _cell(value) -> str:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return ""
    return "" if math.isnan(v) or math.isinf(v) else repr(v)


def rows(logs: Mapping[str, Mapping[int, object]]) -> list[tuple[str, ...]]:
    """(step, run, seed, metric...) per logged step; ``logs[label][seed]`` is a DataFrame with a
    "step" column (report.plots' input)."""
    out = []
    for label, per_seed in logs.items():
        for seed, df in sorted(per_seed.items()):
            cols = {m: (df[m].tolist() if m in df.columns else None) for m in METRICS}
            for i, step in enumerate(df["step"].tolist()):
                vals = [_cell(cols[m][i]) if cols[m] is not None else "" for m in METRICS]
                out.append((str(int(step)), label, str(seed), *vals))
    return out


def write(logs: Mapping[str, Mapping[int, object]], path: Path) -> Path:
    """Write the table atomically (also with no runs: the header alone, so the plot exists)."""
    lines = ["\t".join(HEADER)] + ["\t".join(r) for r in rows(logs)]
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path
