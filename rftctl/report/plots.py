"""Figures from the per-step training logs and the per-problem pass counts.

Uses matplotlib's object API (Figure + Agg canvas) so no global pyplot state or GUI backend is
touched. Each figure is a PNG at 150 dpi with a PDF of the same name beside it (vector, for a
paper), one title (the figure's; panels carry a title only when they are per eval set), and one
legend outside the axes, below them, so no curve is hidden. One line per method; with ``ema`` > 0
the raw curve is drawn faint and an exponential moving average on top, and the title says so. A
method trained with several seeds is drawn as the mean over its seeds
with a shaded band from the lowest to the highest seed (each seed's curve smoothed first). The
Pass@K plot draws Pass@K against K (log2 axis) with its 95 % bootstrap band over problems
(report/bootstrap.py). Every function writes its files atomically, even with no data (the figure
then says so), so the report stage always produces the same files.

Inputs are keyed by method label, then by seed: ``logs[label][seed]`` is a DataFrame with a
"step" column, ``per_problem[label][seed][set][problem id]`` is (n, c).
"""

from __future__ import annotations

import io
import math
import textwrap
import warnings
from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path

from rftctl import metric_names as names
from rftctl.evaluation.metrics import default_ks
from rftctl.report import bootstrap, curves, tradeoff
from rftctl.report.bootstrap import Resampling
from rftctl.util import atomic_write_bytes as write_bytes_atomic

# file names under data/report/ (each PNG has a PDF of the same stem beside it)
ENTROPY, CLIP_FRAC, S_VS_DEVIATION, PASS_RATE_HIST, REWARD_LENGTH, PASS_AT_K = (
    "entropy.png",
    "clip_frac.png",
    "s_vs_deviation.png",
    "pass_rate_hist.png",
    "reward_length.png",
    "pass_at_k.png",
)
ENTROPY_ACCURACY = tradeoff.ENTROPY_ACCURACY
PLOT_FILES = (
    ENTROPY,
    CLIP_FRAC,
    S_VS_DEVIATION,
    PASS_RATE_HIST,
    REWARD_LENGTH,
    PASS_AT_K,
    ENTROPY_ACCURACY,
)
CURVES = curves.CURVES  # data/report/curves.tsv: what dvc.yaml's top-level plots draw
DPI = 150


# report.figure_width: the figure's printed width in inches; None = the screen size (at least 8
# inches, panels side by side). A paper column is 3.25 in, a page (two columns) 6.75 in; the figure
# is drawn at that size so its text prints at FONT_PT points instead of shrinking with the figure.
WIDTHS = {"screen": None, "column": 3.25, "page": 6.75}
FONT_PT = {"screen": 10.0, "column": 8.0, "page": 9.0}
ASPECT = 0.62  # panel height / panel width at a paper size


@dataclass
class FigureStyle:
    """How write_all draws: report.figure_width, report.figure_titles, and each figure's title
    (its caption when titles are off) by file name."""

    width: str = "screen"
    titles: bool = True
    captions: dict[str, str] = field(default_factory=dict)


_STYLE: ContextVar[FigureStyle | None] = ContextVar("figure_style", default=None)


def _style() -> FigureStyle:
    """The style write_all set; a plot function called on its own draws at the screen size."""
    return _STYLE.get() or FigureStyle()


def _figure(n_panels: int, title: str, *, width: float = 6.4, height: float = 3.6):
    from matplotlib.figure import Figure

    style = _style()
    inches = WIDTHS[style.width]
    if inches is None:
        # at least 8 inches wide: the two-line title and the legend below must fit one panel too
        size, grid = (max(width * n_panels, 8.0), height + 0.9), (1, n_panels)
    else:
        # a column stacks the panels; a page puts up to three side by side
        cols = 1 if style.width == "column" else min(n_panels, 3)
        rows = -(-n_panels // cols)
        panel = inches / cols
        extra = 0.45 + (0.35 if style.titles else 0.0)  # the legend below, the title above
        size, grid = (inches, rows * panel * ASPECT + extra), (rows, cols)
    fig = Figure(figsize=size, layout="constrained")
    axes = [fig.add_subplot(*grid, i + 1) for i in range(n_panels)]
    fig.set_label(title)  # the caption a figure without its title needs (FigureStyle.captions)
    if style.titles:
        shown = title
        if inches is not None:  # wrapped to the printed width (about 0.55 em per character)
            chars = max(20, int(inches * 72 / (0.55 * FONT_PT[style.width])))
            shown = "\n".join(textwrap.fill(line, chars) for line in title.split("\n"))
            fig.set_figheight(fig.get_figheight() + 0.15 * (shown.count("\n") - 1))
        fig.suptitle(shown, fontsize="medium")
    return fig, axes


def _legend(fig, axes, extra=()) -> None:
    """One legend for the figure, outside the axes below them: labels deduplicated across panels
    (the same runs appear in each), ``extra`` (handle, label) pairs appended (line-style keys)."""
    from matplotlib import rcParams

    seen: dict[str, object] = {}
    for ax in axes:
        for h, label in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(label, h)
    for h, label in extra:
        seen.setdefault(label, h)
    if seen:
        # about 2.1 inches per entry at 10 pt: as many columns as the figure is wide for
        per_entry = 2.1 * float(rcParams["font.size"]) / 10.0
        fig.legend(
            list(seen.values()),
            list(seen),
            loc="outside lower center",
            frameon=False,
            fontsize="small",
            ncols=max(1, min(len(seen), int(fig.get_figwidth() / per_entry))),
        )


def _save(fig, path: Path, legend_axes=(), extra=()) -> None:
    """PNG at DPI and a PDF beside it, both atomically; the figure legend first (see _legend)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    _legend(fig, legend_axes, extra)
    _style().captions[path.name] = fig.get_label()
    FigureCanvasAgg(fig)
    for target, fmt in ((path, "png"), (path.with_suffix(".pdf"), "pdf")):
        buf = io.BytesIO()
        fig.savefig(
            buf, format=fmt, dpi=DPI, metadata={"CreationDate": None} if fmt == "pdf" else None
        )
        write_bytes_atomic(target, buf.getvalue())


def _smoothing(ema: float) -> str:
    """The title's second line: how the curves are smoothed (a reader must not have to guess)."""
    return (
        f"\nlines: EMA-smoothed (weight {ema:g}), raw curve faint"
        if ema > 0
        else "\nlines: raw, unsmoothed"
    )


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


def _seed_curves(per_seed: Mapping[int, object], column: str, ema: float):
    """(steps, raw mean, smoothed mean, smoothed min, smoothed max) over the seeds that logged
    ``column``, aligned on "step"; None when none did."""
    import numpy as np
    import pandas as pd

    series = {}
    for seed, df in sorted(per_seed.items()):
        if column in df.columns:
            d = df[["step", column]].dropna()
            if not d.empty:
                series[seed] = d.set_index("step")[column]
    if not series:
        return None
    table = pd.DataFrame(series).sort_index()  # [steps, seeds], NaN where a seed lacks a step
    raw = table.to_numpy(dtype=float)
    smooth = (
        np.column_stack([_ema(raw[:, j].tolist(), ema) for j in range(raw.shape[1])])
        if ema > 0
        else raw
    )
    with warnings.catch_warnings():  # a step no seed logged stays NaN (a gap), not a warning
        warnings.simplefilter("ignore", RuntimeWarning)
        return (
            table.index.to_numpy(),
            np.nanmean(raw, axis=1),
            np.nanmean(smooth, axis=1),
            np.nanmin(smooth, axis=1),
            np.nanmax(smooth, axis=1),
        )


def _curves(
    ax,
    logs: Mapping[str, Mapping[int, object]],
    column: str,
    ema: float,
    *,
    style: str = "-",
    suffix: str = "",
    colors=None,
    band: bool = True,
    legend: bool = True,
) -> int:
    """Draw ``column`` of each method on ``ax`` (mean over seeds, min-max band when several);
    returns how many methods had it."""
    drawn = 0
    for i, (label, per_seed) in enumerate(logs.items()):
        got = _seed_curves(per_seed, column, ema)
        if got is None:
            continue
        x, raw, mean, lo, hi = got
        color = colors[label] if colors else f"C{i}"
        seeds = sum(column in df.columns for df in per_seed.values())
        name = f"{label}{suffix}" + (f" ({seeds} seeds)" if seeds > 1 else "")
        if ema > 0 and len(x) > 2:
            ax.plot(x, raw, style, color=color, alpha=0.25, linewidth=0.8)
        ax.plot(x, mean, style, color=color, label=name if legend else None)
        if band and seeds > 1:
            ax.fill_between(x, lo, hi, color=color, alpha=0.2, linewidth=0)
        drawn += 1
    return drawn


def _several_seeds(logs: Mapping[str, Mapping[int, object]]) -> bool:
    return any(len(v) > 1 for v in logs.values())


def _band(logs: Mapping[str, Mapping[int, object]]) -> str:
    return "; band: lowest to highest seed" if _several_seeds(logs) else ""


def _panels(
    logs: Mapping[str, Mapping[int, object]],
    panels: Sequence[tuple[str, str]],
    title: str,
    path: Path,
    ema: float,
) -> None:
    """One panel per (column, y label), one line per method, x = training step."""
    if _several_seeds(logs):
        title += " (mean over seeds)"
    fig, axes = _figure(len(panels), title + _smoothing(ema) + _band(logs))
    for ax, (column, ylabel) in zip(axes, panels):
        if not _curves(ax, logs, column, ema):
            _no_data(ax, column)
        ax.set_xlabel("training step")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    _save(fig, path, legend_axes=axes)


Logs = Mapping[str, Mapping[int, object]]  # method label -> seed -> DataFrame
PerProblemBySeed = Mapping[str, Mapping[int, Mapping[str, Mapping[str, tuple[int, int]]]]]


def plot_entropy(logs: Logs, path: Path, *, ema: float) -> None:
    """logs: method label -> seed -> DataFrame with columns step, train/entropy."""
    _panels(
        logs, [(names.ENTROPY, "mean token entropy (nats)")], "Policy entropy per step", path, ema
    )


def plot_reward_length(logs: Logs, path: Path, *, ema: float) -> None:
    _panels(
        logs,
        [
            (names.REWARD, "mean reward"),
            (names.RESPONSE_LENGTH, "mean response length (tokens)"),
        ],
        "Reward and response length per step",
        path,
        ema,
    )


def plot_s_vs_deviation(logs: Logs, path: Path, *, ema: float) -> None:
    """Mean S and mean S - N per step (arXiv 2602.03392's corollary: E[S - N] = 0)."""
    _panels(
        logs,
        [(names.S_MEAN, "mean S"), (names.S_MINUS_N, "mean S - N")],
        "Entropy discriminator S and its deviation S - N per step",
        path,
        ema,
    )


def _visible(logs: Logs, column: str, total: str) -> Logs:
    """The runs whose ``column`` is non-zero somewhere and differs from ``total`` somewhere: a
    curve lying on zero, or exactly under the total's (side: neg clips only A < 0 tokens, so
    frac_neg == frac), adds a legend entry nobody can see."""

    def shows(df) -> bool:
        if column not in df.columns or not df[column].fillna(0).abs().max() > 0:
            return False
        return total not in df.columns or bool(
            (df[column].fillna(0) - df[total].fillna(0)).abs().max() > 0
        )

    return {
        label: per_seed
        for label, per_seed in logs.items()
        if any(shows(df) for df in per_seed.values())
    }


def plot_clip_frac(logs: Logs, path: Path, *, ema: float) -> None:
    """clip/frac solid (with the seed band); clip/frac_neg dashed and clip/frac_pos dotted in the
    same colour, each only for runs where it can be seen (see _visible; means only, to stay
    readable). The legend names each run once (by colour) plus one key per line style drawn."""
    from matplotlib.lines import Line2D

    title = "Fraction of tokens clipped per step"
    if _several_seeds(logs):
        title += " (mean over seeds)"
    fig, (ax,) = _figure(1, title + _smoothing(ema) + _band(logs))
    colors = {label: f"C{i}" for i, label in enumerate(logs)}
    drawn = _curves(ax, logs, names.CLIP_FRAC, ema, colors=colors)
    keys = []
    if drawn:
        keys.append((Line2D([], [], color="grey", linestyle="-"), "clipped / valid tokens"))
        for column, style, what in (
            (names.CLIP_FRAC_NEG, "--", "A < 0"),
            (names.CLIP_FRAC_POS, ":", "A > 0"),
        ):
            shown = _visible(logs, column, names.CLIP_FRAC)
            if shown:
                # no label: the run is already in the legend by colour; the style key says which
                _curves(
                    ax, shown, column, ema, style=style, colors=colors, band=False, legend=False
                )
                # each style's own denominator (docs/metrics.md: clip/frac_neg, clip/frac_pos)
                keys.append(
                    (
                        Line2D([], [], color="grey", linestyle=style),
                        f"clipped {what} / valid {what} tokens",
                    )
                )
    else:
        _no_data(ax, names.CLIP_FRAC)
    ax.set_xlabel("training step")
    ax.set_ylabel("fraction clipped" if len(keys) > 1 else "fraction of valid tokens")
    ax.grid(alpha=0.3)
    _save(fig, path, legend_axes=[ax], extra=keys)


def _set_names(per_problem: PerProblemBySeed, set_order: Sequence[str]) -> list[str]:
    sets = {s for by_seed in per_problem.values() for d in by_seed.values() for s in d}
    return [s for s in set_order if s in sets] + sorted(s for s in sets if s not in set_order)


def plot_pass_rate_hist(
    per_problem: PerProblemBySeed, path: Path, *, set_order: Sequence[str]
) -> None:
    """Per-problem pass rate c/n, one panel per data set, one step histogram per method.

    Bars are fractions of (problem, seed) pairs, so methods with different problem or seed
    counts compare (with several seeds: the histogram averaged over seeds); with one n per panel
    each bin holds one c.
    """
    import numpy as np

    names = _set_names(per_problem, set_order)
    fig, axes = _figure(max(len(names), 1), "Per-problem pass rate c/n", width=5.0)
    if not names:
        _no_data(axes[0], "per_problem.json")
        axes[0].set_xlabel("pass rate c/n")
        axes[0].set_ylabel("fraction of problems")
    for ax, name in zip(axes, names):
        ns = {
            nc[0]
            for by_seed in per_problem.values()
            for d in by_seed.values()
            for nc in d.get(name, {}).values()
        }
        if len(ns) == 1 and next(iter(ns)) <= 64:
            n = next(iter(ns))
            edges = (np.arange(n + 2) - 0.5) / n  # one bin per possible c
        else:
            edges = np.linspace(0.0, 1.0, 11)
        for i, (label, by_seed) in enumerate(per_problem.items()):
            rates = [c / n_ for d in by_seed.values() for n_, c in d.get(name, {}).values()]
            if rates:
                problems = len({pid for d in by_seed.values() for pid in d.get(name, {})})
                w = np.full(len(rates), 1.0 / len(rates))
                ax.hist(
                    rates,
                    bins=edges,
                    weights=w,
                    histtype="step",
                    linewidth=1.5,
                    color=f"C{i}",
                    label=f"{label} ({problems})",
                )
        ax.set_xlim(-0.05, 1.05)
        ax.set_xlabel("pass rate c/n")
        ax.set_ylabel("fraction of problems")
        ax.set_title(name)
        ax.grid(alpha=0.3)
    _save(fig, path, legend_axes=axes)


def plot_pass_at_k(
    per_problem: PerProblemBySeed, path: Path, *, set_order: Sequence[str], resampling: Resampling
) -> None:
    """Pass@K against K (log2 axis), one panel per data set, one line per method with its 95 %
    bootstrap band over problems (seeds averaged inside each resample). K = 1, 2, 4, ..., n."""

    names = _set_names(per_problem, set_order)
    fig, axes = _figure(
        max(len(names), 1), "Pass@K (band: 95 % bootstrap interval over problems)", width=5.0
    )
    if not names:
        _no_data(axes[0], "per_problem.json")
    for ax, name in zip(axes, names):
        ks_all: set[int] = set()
        for i, (label, by_seed) in enumerate(per_problem.items()):
            counts = [d[name] for _, d in sorted(by_seed.items()) if d.get(name)]
            if not counts:
                continue
            ks = default_ks(min(n for c in counts for n, _ in c.values()))
            got = bootstrap.pass_curve(
                counts, ks, resamples=resampling.resamples, seed=resampling.seed
            )
            if got is None:
                continue
            mean, lo, hi = (100.0 * v for v in got)
            seeds = f", {len(counts)} seeds" if len(counts) > 1 else ""
            ax.plot(ks, mean, "-o", color=f"C{i}", markersize=3, label=f"{label}{seeds}")
            ax.fill_between(ks, lo, hi, color=f"C{i}", alpha=0.2, linewidth=0)
            ks_all |= set(ks)
        if ks_all:
            ax.set_xscale("log", base=2)
            ax.set_xticks(sorted(ks_all), [str(k) for k in sorted(ks_all)])
        else:
            _no_data(ax, name)
        ax.set_xlabel("K (samples per problem)")
        ax.set_ylabel("Pass@K (%)")
        ax.set_title(name)
        ax.grid(alpha=0.3)
    _save(fig, path, legend_axes=axes)


def write_all(
    logs: Logs,
    per_problem: PerProblemBySeed,
    out_dir: Path,
    *,
    ema: float,
    set_order: Sequence[str],
    resampling: Resampling,
    width: str = "screen",
    titles: bool = True,
    captions: dict[str, str] | None = None,
) -> list[Path]:
    """Write every figure (PNG + PDF) and curves.tsv into out_dir; returns the PNG paths in
    PLOT_FILES order. width: report.figure_width (screen | column | page); titles: draw each
    figure's title (off: a paper's caption says it); ``captions``, when given, receives each
    figure's title by file name."""
    from matplotlib import rc_context

    if width not in WIDTHS:
        raise ValueError(f"figure width {width!r}: use one of {', '.join(WIDTHS)}")
    style = FigureStyle(width, titles)
    token = _STYLE.set(style)
    try:
        with rc_context({"font.size": FONT_PT[width]}):
            plot_entropy(logs, out_dir / ENTROPY, ema=ema)
            plot_clip_frac(logs, out_dir / CLIP_FRAC, ema=ema)
            plot_s_vs_deviation(logs, out_dir / S_VS_DEVIATION, ema=ema)
            plot_pass_rate_hist(per_problem, out_dir / PASS_RATE_HIST, set_order=set_order)
            plot_reward_length(logs, out_dir / REWARD_LENGTH, ema=ema)
            plot_pass_at_k(
                per_problem, out_dir / PASS_AT_K, set_order=set_order, resampling=resampling
            )
            tradeoff.plot(
                logs,
                per_problem,
                out_dir / ENTROPY_ACCURACY,
                set_order=set_order,
                figure=_figure,
                save=_save,
                no_data=_no_data,
                resampling=resampling,
            )
    finally:
        _STYLE.reset(token)
    if captions is not None:
        captions.update(style.captions)
    curves.write(logs, out_dir / CURVES)
    return [out_dir / f for f in PLOT_FILES]
