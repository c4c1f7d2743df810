r"""What each entropy control buys: final entropy against accuracy, as a figure and as numbers.

- ``entropy_accuracy.png`` (+ .pdf): one panel per eval set, one point per run at (final entropy,
  Avg@n), error bars from the lowest to the highest seed on both axes. A control that keeps
  entropy up without losing accuracy sits to the right of GRPO at the same height or above.
- ``headline.json``: the handful of numbers `dvc exp show` should show (dvc.yaml's top-level
  ``metrics:``): per run its Avg@n in % on each eval set and its final entropy ``H``, keyed by run
  name first so the columns stay short and one regex keeps them ("clipv.arith_eval",
  "clipv.H"; README: ``dvc exp show --drop '.*' --keep
  '^Experiment$|^(none|clipb|clipv)\.(arith_eval|H)$'``).

Final entropy is the mean of ``train/entropy`` over the last tenth of the logged steps (at least
one): the last step alone is one noisy batch.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from rftctl import metric_names as names
from rftctl.util import atomic_write_text

ENTROPY_ACCURACY, HEADLINE = "entropy_accuracy.png", "headline.json"
TAIL = 0.1  # fraction of the last steps averaged into "final entropy"


def final_entropy(df) -> float | None:
    """Mean train/entropy over the last ceil(10 %) of the logged steps; None when not logged."""
    if df is None or names.ENTROPY not in df.columns:
        return None
    col = df.sort_values("step")[names.ENTROPY].dropna()
    if col.empty:
        return None
    tail = max(1, -(-len(col) // int(1 / TAIL)))
    return float(col.iloc[-tail:].mean())


def avg_at_n(per_set: Mapping[str, tuple[int, int]]) -> float | None:
    """Avg@n in % from one set's {problem id: (n, c)}: the mean over problems of c / n."""
    if not per_set:
        return None
    return 100.0 * sum(c / n for n, c in per_set.values()) / len(per_set)


def points(logs, per_problem, set_name: str) -> dict[str, list[tuple[float, float]]]:
    """label -> [(final entropy, Avg@n %)] over the seeds that have both."""
    out: dict[str, list[tuple[float, float]]] = {}
    for label, by_seed in per_problem.items():
        for seed, sets in sorted(by_seed.items()):
            h = final_entropy(logs.get(label, {}).get(seed))
            a = avg_at_n(sets.get(set_name, {}))
            if h is not None and a is not None:
                out.setdefault(label, []).append((h, a))
    return out


def _draw(ax, pts: Mapping[str, list[tuple[float, float]]], colors: Mapping[str, str]) -> None:
    """One marker per run at the mean over seeds, bars from the lowest to the highest seed, and
    each seed as a small hollow point. A bar's arms are clamped at 0: the mean of equal values
    can round a last bit above them, and matplotlib refuses a negative arm."""
    for label, xy in pts.items():
        xs, ys = [p[0] for p in xy], [p[1] for p in xy]
        mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
        err = (None, None)
        if len(xy) > 1:
            err = (
                [[max(0.0, mx - min(xs))], [max(0.0, max(xs) - mx)]],
                [[max(0.0, my - min(ys))], [max(0.0, max(ys) - my)]],
            )
            ax.scatter(
                xs, ys, s=14, facecolors="none", edgecolors=colors[label], linewidths=0.8, zorder=3
            )
        seeds = f" ({len(xy)} seeds)" if len(xy) > 1 else ""
        ax.errorbar(
            [mx],
            [my],
            xerr=err[0],
            yerr=err[1],
            fmt="o",
            markersize=7,
            capsize=4,
            color=colors[label],
            label=f"{label}{seeds}",
        )
        ax.annotate(
            label,
            (mx, my),
            xytext=(6, 6),
            textcoords="offset points",
            fontsize="small",
            color=colors[label],
        )


def plot(logs, per_problem, path: Path, *, set_order: Sequence[str], figure, save, no_data) -> None:
    """The figure (report.plots passes its figure / save / no-data helpers, so every figure of
    the report shares one style)."""
    names = [s for s in set_order if any(s in d for b in per_problem.values() for d in b.values())]
    names += sorted({s for b in per_problem.values() for d in b.values() for s in d} - set(names))
    several = any(len(b) > 1 for b in per_problem.values())
    fig, axes = figure(
        max(len(names), 1),
        "Final entropy against accuracy"
        + (" (bars: lowest to highest seed; hollow: each seed)" if several else ""),
        width=5.0,
    )
    colors = {label: f"C{i}" for i, label in enumerate(per_problem)}
    if not names:
        no_data(axes[0], "per_problem.json and train_log.tsv")
    for ax, name in zip(axes, names):
        pts = points(logs, per_problem, name)
        if pts:
            _draw(ax, pts, colors)
        else:
            no_data(ax, f"{name}: a run with both a train log and an evaluation")
        ax.set_xlabel("final entropy (nats, mean of the last 10 % of steps)")
        ax.set_ylabel(f"{name} Avg@n (%)")  # names the set: no panel title beside the figure's
        ax.margins(x=0.15, y=0.15)  # room for the run names written beside the points
        ax.grid(alpha=0.3)
    save(fig, path, legend_axes=axes)


def headline(runs: Sequence) -> dict:
    """{run: {set: Avg@n %, "H": final entropy}} from the report's RunArtifacts (means over the
    seeds that have the value); values a run lacks are left out."""
    out: dict[str, dict[str, list[float]]] = {}
    for a in runs:
        got = out.setdefault(a.run, {})
        for ev in a.evals.values():
            for s in ev.sets:
                if f"avg@{s.setting.n}" in s.values:
                    got.setdefault(s.name, []).append(100.0 * s.values[f"avg@{s.setting.n}"])
        hs = [h for df in a.train_logs.values() if (h := final_entropy(df)) is not None]
        if hs:
            got["H"] = hs
    return {
        run: {k: round(sum(v) / len(v), 4) for k, v in d.items()} for run, d in out.items() if d
    }


def write_headline(runs: Sequence, path: Path) -> Path:
    atomic_write_text(path, json.dumps(headline(runs), indent=2) + "\n")
    return path
