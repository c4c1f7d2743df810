"""PNG plots from the per-step training logs and the per-problem pass rates.

Uses matplotlib's object API (Figure + Agg canvas) so no global pyplot state or GUI backend is
touched. One line per method; with ``ema`` > 0 the raw curve is drawn faint and an exponential
moving average on top. Every function writes its PNG atomically, even with no data (the figure
then says so), so the report stage always produces the same files.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from rftctl.util import atomic_write_bytes as write_bytes_atomic

# file names under data/report/
ENTROPY, CLIP_FRAC, S_VS_DEVIATION, PASS_RATE_HIST, REWARD_LENGTH = (
    "entropy.png",
    "clip_frac.png",
    "s_vs_deviation.png",
    "pass_rate_hist.png",
    "reward_length.png",
)
PLOT_FILES = (ENTROPY, CLIP_FRAC, S_VS_DEVIATION, PASS_RATE_HIST, REWARD_LENGTH)


def _figure(n_panels: int, title: str, *, width: float = 6.4, height: float = 3.6):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * n_panels, height), layout="constrained")
    axes = [fig.add_subplot(1, n_panels, i + 1) for i in range(n_panels)]
    fig.suptitle(title)
    return fig, axes


def _save(fig, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    write_bytes_atomic(path, buf.getvalue())


def _ema(values, weight: float):
    out, acc = [], None
    for v in values:
        if math.isnan(v):  # a step without the metric: carry the average forward
            out.append(acc if acc is not None else v)
            continue
        acc = v if acc is None else weight * acc + (1 - weight) * v
        out.append(acc)
    return out


def _no_data(ax, what: str) -> None:
    ax.text(0.5, 0.5, f"no data: {what}", ha="center", va="center", transform=ax.transAxes)


def _curves(
    ax,
    logs: Mapping[str, object],
    column: str,
    ema: float,
    *,
    style: str = "-",
    suffix: str = "",
    colors=None,
) -> int:
    """Draw ``column`` of each log on ``ax``; returns how many methods had it."""
    drawn = 0
    for i, (label, df) in enumerate(logs.items()):
        if column not in df.columns:
            continue
        d = df[["step", column]].dropna()
        if d.empty:
            continue
        x, y = d["step"].tolist(), d[column].tolist()
        color = colors[label] if colors else f"C{i}"
        if ema > 0 and len(y) > 2:
            ax.plot(x, y, style, color=color, alpha=0.25, linewidth=0.8)
            ax.plot(x, _ema(y, ema), style, color=color, label=f"{label}{suffix}")
        else:
            ax.plot(x, y, style, color=color, label=f"{label}{suffix}")
        drawn += 1
    return drawn


def _panels(
    logs: Mapping[str, object],
    panels: Sequence[tuple[str, str]],
    title: str,
    path: Path,
    ema: float,
) -> None:
    """One panel per (column, y label), one line per method, x = training step."""
    fig, axes = _figure(len(panels), title)
    for ax, (column, ylabel) in zip(axes, panels):
        if _curves(ax, logs, column, ema):
            ax.legend(fontsize="small")
        else:
            _no_data(ax, column)
        ax.set_xlabel("training step")
        ax.set_ylabel(ylabel)
        ax.set_title(column)
        ax.grid(alpha=0.3)
    _save(fig, path)


def plot_entropy(logs: Mapping[str, object], path: Path, *, ema: float) -> None:
    """logs: method label -> DataFrame with columns step, train/entropy."""
    _panels(
        logs, [("train/entropy", "mean token entropy (nats)")], "Policy entropy per step", path, ema
    )


def plot_reward_length(logs: Mapping[str, object], path: Path, *, ema: float) -> None:
    _panels(
        logs,
        [
            ("train/reward_mean", "mean reward"),
            ("train/response_length", "mean response length (tokens)"),
        ],
        "Reward and response length per step",
        path,
        ema,
    )


def plot_s_vs_deviation(logs: Mapping[str, object], path: Path, *, ema: float) -> None:
    """Mean S and mean S - N per step (entropy-dynamics.md sec. 1 corollary: E[S - N] = 0)."""
    _panels(
        logs,
        [("entropy/s_mean", "mean S"), ("entropy/s_minus_n_mean", "mean S - N")],
        "Entropy discriminator S and its deviation S - N per step",
        path,
        ema,
    )


def plot_clip_frac(logs: Mapping[str, object], path: Path, *, ema: float) -> None:
    """clip/frac solid; clip/frac_pos dotted and clip/frac_neg dashed in the same colour."""
    fig, (ax,) = _figure(1, "Fraction of tokens clipped per step")
    colors = {label: f"C{i}" for i, label in enumerate(logs)}
    drawn = _curves(ax, logs, "clip/frac", ema, colors=colors)
    if drawn:
        _curves(ax, logs, "clip/frac_neg", ema, style="--", suffix=" (A<0)", colors=colors)
        _curves(ax, logs, "clip/frac_pos", ema, style=":", suffix=" (A>0)", colors=colors)
        ax.legend(fontsize="small")
    else:
        _no_data(ax, "clip/frac")
    ax.set_xlabel("training step")
    ax.set_ylabel("fraction of valid tokens clipped")
    ax.grid(alpha=0.3)
    _save(fig, path)


def plot_pass_rate_hist(
    per_problem: Mapping[str, Mapping[str, Mapping[str, tuple[int, int]]]],
    path: Path,
    *,
    set_order: Sequence[str],
) -> None:
    """Per-problem pass rate c/n, one panel per data set, one step histogram per method.

    per_problem: method label -> set -> problem id -> (n, c). Bars are fractions of problems so
    methods with different problem counts compare; with one n per panel each bin holds one c.
    """
    import numpy as np

    sets = {s for d in per_problem.values() for s in d}
    names = [s for s in set_order if s in sets] + sorted(s for s in sets if s not in set_order)
    fig, axes = _figure(max(len(names), 1), "Per-problem pass rate c/n", width=5.0)
    if not names:
        _no_data(axes[0], "per_problem.json")
        axes[0].set_xlabel("pass rate c/n")
        axes[0].set_ylabel("fraction of problems")
    for ax, name in zip(axes, names):
        ns = {nc[0] for d in per_problem.values() for nc in d.get(name, {}).values()}
        if len(ns) == 1 and next(iter(ns)) <= 64:
            n = next(iter(ns))
            edges = (np.arange(n + 2) - 0.5) / n  # one bin per possible c
        else:
            edges = np.linspace(0.0, 1.0, 11)
        for i, (label, d) in enumerate(per_problem.items()):
            rates = [c / n_ for n_, c in d.get(name, {}).values()]
            if rates:
                w = np.full(len(rates), 1.0 / len(rates))
                ax.hist(
                    rates,
                    bins=edges,
                    weights=w,
                    histtype="step",
                    linewidth=1.5,
                    color=f"C{i}",
                    label=f"{label} ({len(rates)})",
                )
        ax.set_xlim(-0.05, 1.05)
        ax.set_xlabel("pass rate c/n")
        ax.set_ylabel("fraction of problems")
        ax.set_title(name)
        ax.legend(fontsize="small")
        ax.grid(alpha=0.3)
    _save(fig, path)


def write_all(
    logs: Mapping[str, object],
    per_problem: Mapping[str, Mapping],
    out_dir: Path,
    *,
    ema: float,
    set_order: Sequence[str],
) -> list[Path]:
    """Write the five PNGs into out_dir; returns their paths in PLOT_FILES order."""
    plot_entropy(logs, out_dir / ENTROPY, ema=ema)
    plot_clip_frac(logs, out_dir / CLIP_FRAC, ema=ema)
    plot_s_vs_deviation(logs, out_dir / S_VS_DEVIATION, ema=ema)
    plot_pass_rate_hist(per_problem, out_dir / PASS_RATE_HIST, set_order=set_order)
    plot_reward_length(logs, out_dir / REWARD_LENGTH, ema=ema)
    return [out_dir / f for f in PLOT_FILES]
