r"""What each entropy control buys: final entropy against accuracy, as a figure and as numbers.

- ``entropy_accuracy.png`` (+ .pdf): one panel per eval set, one point per run at (final entropy,
  Avg@n) with its 95 % interval: over >= 2 seeds the t-interval over seeds on both axes, with one
  seed the bootstrap interval of Avg@n over problems (one final entropy has no x interval); the
  y label names the n. A control that keeps
  entropy up without losing accuracy sits to the right of GRPO at the same height or above.
- ``headline.json`` (and, for the DVC-tracked report, the git-tracked ``metrics.json`` at the
  project root, the report stage's DVC metrics): the handful of numbers `dvc exp show` should
  show: per run its Avg@n and Pass@n in % on each eval set, the key naming n ("avg@16"), and its
  final entropy ``H``, keyed by run name first so one regex keeps them ("clipv.arith_eval.avg@16",
  "clipv.H"; README: ``dvc exp show --drop '.*' --keep
  '^Experiment$|^(none|clipb|clipv)\.(arith_eval\.avg@16|H)$'``).

Final entropy is the mean of ``train/entropy`` over the last tenth of the logged steps (at least
one): the last step alone is one noisy batch.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from rftctl import metric_names as names
from rftctl.report.bootstrap import Resampling, resampled_means
from rftctl.report.intervals import percentile_interval, t_interval
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
    cells = _cells(logs, per_problem, set_name)
    return {label: [(h, a) for h, a, _ in cs] for label, cs in cells.items()}


def _cells(logs, per_problem, set_name: str) -> dict[str, list[tuple[float, float, Mapping]]]:
    """label -> [(final entropy, Avg@n %, the seed's {problem: (n, c)})] over the seeds that have
    both a train log and an evaluation of ``set_name``."""
    out: dict[str, list[tuple[float, float, Mapping]]] = {}
    for label, by_seed in per_problem.items():
        for seed, sets in sorted(by_seed.items()):
            h = final_entropy(logs.get(label, {}).get(seed))
            a = avg_at_n(sets.get(set_name, {}))
            if h is not None and a is not None:
                out.setdefault(label, []).append((h, a, sets[set_name]))
    return out


Bar = tuple[float, float, float] | None  # (mean, low, high)


def intervals(cells, resampling: Resampling) -> tuple[Bar, Bar]:
    """(x bar, y bar) of one run's point: with >= 2 seeds the 95 % t-interval over seeds on both
    axes; with one seed the 95 % bootstrap interval over problems of Avg@n (the problems
    resampled, report/bootstrap.py) and no x bar (one final entropy, nothing to resample)."""
    xs, ys = [c[0] for c in cells], [c[1] for c in cells]
    if len(cells) >= 2:
        tx, ty = t_interval(xs), t_interval(ys)
        return (sum(xs) / len(xs), tx.low, tx.high), (sum(ys) / len(ys), ty.low, ty.high)
    counts = cells[0][2]
    values = np.array([100.0 * c / n for n, c in counts.values()], dtype=np.float64)
    reps = resampled_means(values[None, :], resamples=resampling.resamples, seed=resampling.seed)
    iv = percentile_interval(reps[0])
    return None, (ys[0], iv.low, iv.high)


def _arms(bar: Bar):
    """matplotlib's [[below], [above]] of a bar, clamped at 0: a mean can round a last bit past
    an end of its interval, and matplotlib refuses a negative arm."""
    if bar is None:
        return None
    m, lo, hi = bar
    return [[max(0.0, m - lo)], [max(0.0, hi - m)]]


def _draw(ax, cells, colors: Mapping[str, str], resampling: Resampling) -> None:
    """One marker per run at the mean over seeds with its 95 % interval (see intervals), each
    seed as a small hollow point when there are several."""
    for label, cs in cells.items():
        xbar, ybar = intervals(cs, resampling)
        xs, ys = [c[0] for c in cs], [c[1] for c in cs]
        mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
        if len(cs) > 1:
            ax.scatter(
                xs, ys, s=14, facecolors="none", edgecolors=colors[label], linewidths=0.8, zorder=3
            )
        seeds = f" ({len(cs)} seeds)" if len(cs) > 1 else ""
        ax.errorbar(
            [mx],
            [my],
            xerr=_arms(xbar),
            yerr=_arms(ybar),
            fmt="o",
            markersize=6,
            capsize=3,
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


def avg_label(per_problem, set_name: str) -> str:
    """The y label: "<set> Avg@16 (%)" with the n the set was evaluated with, every n when runs
    differ."""
    ns = sorted(
        {
            n
            for by_seed in per_problem.values()
            for sets in by_seed.values()
            for n, _ in sets.get(set_name, {}).values()
        }
    )
    if len(ns) == 1:
        return f"{set_name} Avg@{ns[0]} (%)"
    return f"{set_name} Avg@n (%), n = {', '.join(map(str, ns))}"


def plot(
    logs,
    per_problem,
    path: Path,
    *,
    set_order: Sequence[str],
    figure,
    save,
    no_data,
    resampling: Resampling = Resampling(2000, 0),
) -> None:
    """The figure (report.plots passes its figure / save / no-data helpers, so every figure of
    the report shares one style)."""
    names = [s for s in set_order if any(s in d for b in per_problem.values() for d in b.values())]
    names += sorted({s for b in per_problem.values() for d in b.values() for s in d} - set(names))
    several = any(len(b) > 1 for b in per_problem.values())
    one = any(len(b) == 1 for b in per_problem.values())
    how = [
        *(["several seeds: 95 % t-interval over seeds, hollow: each seed"] if several else []),
        *(["one seed: 95 % bootstrap interval of Avg@n over problems"] if one else []),
    ]
    fig, axes = figure(
        max(len(names), 1),
        "Final entropy against accuracy" + (f"\nbars: {'; '.join(how)}" if how else ""),
        width=5.0,
    )
    colors = {label: f"C{i}" for i, label in enumerate(per_problem)}
    if not names:
        no_data(axes[0], "per_problem.json and train_log.tsv")
    for ax, name in zip(axes, names):
        cells = _cells(logs, per_problem, name)
        if cells:
            _draw(ax, cells, colors, resampling)
        else:
            no_data(ax, f"{name}: a run with both a train log and an evaluation")
        ax.set_xlabel("final entropy (nats, last 10 % of steps)")
        ax.set_ylabel(avg_label(per_problem, name))  # names the set and its n
        ax.margins(x=0.15, y=0.15)  # room for the run names written beside the points
        ax.grid(alpha=0.3)
    save(fig, path, legend_axes=axes)


def headline(runs: Sequence) -> dict:
    """{run: {set: {"avg@<n>": %, "pass@<n>": %}, "H": final entropy}} from the report's
    RunArtifacts: means over the seeds that have the value. The key names its n, so a run
    evaluated with n = 2 never shares a key with one evaluated with n = 16 (each n its own key,
    each the mean over the seeds evaluated with that n); values a run lacks are left out."""
    out: dict[str, dict] = {}
    for a in runs:
        sets: dict[str, dict[str, list[float]]] = {}
        for ev in a.evals.values():
            for s in ev.sets:
                for kind in ("avg", "pass"):
                    key = f"{kind}@{s.setting.n}"
                    if key in s.values:
                        sets.setdefault(s.name, {}).setdefault(key, []).append(
                            100.0 * s.values[key]
                        )
        got: dict = {
            name: {k: round(sum(v) / len(v), 4) for k, v in d.items()} for name, d in sets.items()
        }
        hs = [h for df in a.train_logs.values() if (h := final_entropy(df)) is not None]
        if hs:
            got["H"] = round(sum(hs) / len(hs), 4)
        if got:
            out[a.run] = got
    return out


def write_headline(runs: Sequence, path: Path) -> Path:
    atomic_write_text(path, json.dumps(headline(runs), indent=2) + "\n")
    return path
