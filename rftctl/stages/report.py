"""Stage `report`: every metrics file -> data/report/{table.md, table.csv, results.csv,
results.parquet, *.png, summary.json}.

Reads whatever exists for the runs in cfg.methods (plus any other run found under data/, such
as `base`) and the seeds in cfg.seeds: data/metrics/eval/<run>/seed<k>.json,
data/eval/<run>/seed<k>/per_problem.json, data/runs/<run>/seed<k>/train_log.tsv,
data/metrics/train/<run>/seed<k>.json. Absent files never fail the stage: the run's row shows "—"
(or the mean of the seeds it has) and the "missing: ..." line names what is absent. With ``exp``
it also compares DVC experiments (data/report/experiments.{md,csv}; not a DVC output, since it
reads the experiment store).
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

from rftctl import __version__
from rftctl.config import Config
from rftctl.paths import Paths
from rftctl.report import entropy_effect, plots, results, significance, tradeoff
from rftctl.report import experiments as experiments_mod
from rftctl.report.bootstrap import Resampling
from rftctl.report.inputs import ignored_line, load_inputs, missing_line, stale_files
from rftctl.report.pairing import pairing
from rftctl.report.render import (
    DAGGER,
    Quoted,
    baseline_label,
    to_csv,
    to_markdown,
    to_records,
)
from rftctl.report.tables import (
    FAMILY_ALL,
    FAMILY_CHECKPOINT,
    FAMILY_PRIMARY,
    Entry,
    build_table,
    unique_labels,
)
from rftctl.stages import guarded
from rftctl.ui import out as console
from rftctl.util import atomic_write_text as write_text_atomic

TABLE_MD, TABLE_CSV, SUMMARY = "table.md", "table.csv", "summary.json"
RESULTS_CSV, RESULTS_PARQUET = "results.csv", "results.parquet"
EXPERIMENTS_MD, EXPERIMENTS_CSV = "experiments.md", "experiments.csv"
OUTPUTS = (
    TABLE_MD,
    TABLE_CSV,
    entropy_effect.ENTROPY_CSV,
    RESULTS_CSV,
    RESULTS_PARQUET,
    *plots.PLOT_FILES,
    SUMMARY,
)


def mark_line(table) -> str:
    """One line on what the table's marks mean (the footnote itself is in table.md)."""
    families = {c.family for r in table.rows for c in r.cells if c.family}
    base = baseline_label(table)
    if families & {FAMILY_PRIMARY, FAMILY_ALL}:
        mark = (
            f"{DAGGER} = differs from it over training seeds (paired t-test, Holm p <= "
            f"{significance.ALPHA})"
        )
    elif FAMILY_CHECKPOINT in families:
        mark = f"no {DAGGER} with one seed a side (one checkpoint per method)"
    else:
        mark = ""
    return f"(+x.xx) = difference from {base}" + (f"; {mark}" if mark else "") + "."


def terminal_text(table, quoted, missing: str, exp_md: str = "") -> str:
    """What `rftctl report` prints: the table once (markdown lines, unwrapped), one line on its
    marks, where the rest is; the footnote, the difference and entropy tables live in table.md."""
    lines = []
    if table.columns:
        lines += to_markdown(table, quoted=quoted).split("\n\n", 1)[0].splitlines()
        lines += ["", mark_line(table)]
    else:
        lines.append("No evaluation results found.")
    lines.append(
        "footnote, intervals, difference and entropy tables: data/report/table.md; "
        "plots: data/report/*.png"
    )
    if exp_md:
        lines += ["", "DVC experiments:", exp_md.split("\n\n", 1)[0]]
    if missing:
        lines += ["", missing]
    return "\n".join(lines)


def _print(text: str) -> None:
    console.print(text, markup=False, highlight=False, soft_wrap=True)


def _stale_line(stale: list[str]) -> str:
    if not stale:
        return ""
    return (
        f"not read (files of the layout before seeds): {', '.join(stale)}; "
        "rerun `dvc repro` (and `rftctl evaluate --base`) to write "
        "data/metrics/*/<run>/seed<k>.json, "
        "then delete them"
    )


def _experiments(cfg, paths: Paths, exp: list[str], resampling: Resampling) -> tuple[dict, str]:
    """Write experiments.{md,csv}; returns (summary entry, markdown)."""
    eval_dir = os.path.relpath(paths.eval_metrics_dir, paths.root)
    found = experiments_mod.parse_exp_show(
        experiments_mod.run_exp_show(paths.root), eval_dir=eval_dir
    )
    chosen = experiments_mod.select(found, exp)
    groups, baselines = _pairing(cfg)
    rows = [
        dataclasses.replace(e, group=" / ".join(x for x in (e.group, groups.get(e.run, "")) if x))
        for e in experiments_mod.entries(chosen, list(cfg.methods))
    ]
    table = build_table(
        rows,
        set_order=[s.name for s in cfg.prepare.eval],
        ks=cfg.report.ks,
        baseline=baselines,
        bootstrap=resampling,
        primary=[(ep.set, ep.metric) for ep in cfg.report.primary],
    )
    md = to_markdown(table)
    write_text_atomic(paths.report / EXPERIMENTS_MD, md)
    write_text_atomic(paths.report / EXPERIMENTS_CSV, to_csv(table))
    return {"names": [e.name for e in chosen], "rows": to_records(table)}, md


def _pairing(cfg) -> tuple[dict[str, str], list[str]]:
    """run -> comparison group (its own train values, e.g. "G=8") and the baseline runs."""
    return pairing(
        {run: spec.model_dump() for run, spec in cfg.methods.items()}, cfg.report.baseline
    )


def _table(cfg, runs, set_order: list[str], resampling: Resampling):
    """The comparison table of the runs found, each paired with its group's baseline run."""
    groups, baselines = _pairing(cfg)
    return build_table(
        [
            Entry(
                a.run,
                a.display,
                a.evals,
                a.per_problems,
                groups.get(a.run, ""),
                # the engine that trained each seed (summaries from before train.engine: rftctl's)
                {k: str(v.get("engine", "rftctl")) for k, v in a.train_summaries.items()},
            )
            for a in runs
        ],
        set_order=set_order,
        ks=cfg.report.ks,
        baseline=baselines,
        bootstrap=resampling,
        primary=[(ep.set, ep.metric) for ep in cfg.report.primary],
    )


def _log_baselines(cfg, runs, table) -> dict[str, str]:
    """Baselines of runs that have train logs but no row with a baseline in the table (trained,
    not yet evaluated): the baseline run of their group."""
    groups, baselines = _pairing(cfg)
    have = {r.run for r in table.rows if r.baseline_run}
    out = {}
    for a in runs:
        if a.run in have or a.run in baselines:
            continue
        base = next((b for b in baselines if groups.get(b, "") == groups.get(a.run, "")), "")
        if base:
            out[a.run] = base
    return out


def run(
    cfg: Config, paths: Paths, exp: list[str] | None = None, *, quiet: bool = False
) -> dict[str, Any]:
    """Write the report; returns the content of summary.json.

    exp: None = no experiment comparison; [] = every experiment `dvc exp show` lists;
    names = those experiments, in that order (unknown names raise ConfigError).
    """
    cfg = guarded(cfg, "report")
    runs = list(cfg.methods)
    set_order = [s.name for s in cfg.prepare.eval]
    resampling = Resampling(cfg.report.bootstrap_resamples, cfg.report.bootstrap_seed)
    inputs = load_inputs(paths, runs, list(cfg.seeds))
    missing = inputs.missing()
    stale = [os.path.relpath(p, paths.root) for p in stale_files(paths)]
    notes = (missing_line(missing), _stale_line(stale), ignored_line(inputs.ignored))
    missing_text = "\n\n".join(x for x in notes if x)

    table = _table(cfg, inputs.runs, set_order, resampling)
    quoted = [Quoted(q.label, q.source, q.values) for q in cfg.report.quoted]
    entropy_rows = entropy_effect.build(
        {a.run: a.train_logs for a in inputs.runs if a.train_logs},
        {r.run: r.label for r in table.rows}
        | {a.run: a.display for a in inputs.runs if a.run not in {r.run for r in table.rows}},
        {r.run: r.baseline_run for r in table.rows} | _log_baselines(cfg, inputs.runs, table),
    )
    entropy_md = entropy_effect.to_markdown(entropy_rows, baseline_label(table))
    out = paths.report
    # plots are keyed by label: runs sharing a display name must not overwrite each other
    labels = dict(
        zip(
            (a.run for a in inputs.runs),
            unique_labels([(a.run, a.display, "") for a in inputs.runs]),
        )
    )
    logs = {labels[a.run]: a.train_logs for a in inputs.runs if a.train_logs}
    per_problem = {labels[a.run]: a.per_problems for a in inputs.runs if a.per_problems}
    plots.write_all(
        logs, per_problem, out, ema=cfg.report.smoothing, set_order=set_order, resampling=resampling
    )
    tradeoff.write_headline(inputs.runs, out / tradeoff.HEADLINE)  # dvc.yaml's top-level metrics
    write_text_atomic(
        out / TABLE_MD, to_markdown(table, missing=missing_text, quoted=quoted, extra=entropy_md)
    )
    write_text_atomic(out / TABLE_CSV, to_csv(table))
    write_text_atomic(out / entropy_effect.ENTROPY_CSV, entropy_effect.to_csv(entropy_rows))
    results.write(results.rows(inputs.runs, table), paths.results_csv, paths.results_parquet)

    summary: dict[str, Any] = {
        "rftctl_version": __version__,
        "baseline": cfg.report.baseline,
        "seeds": list(cfg.seeds),
        "columns": [c.header for c in table.columns],
        "rows": to_records(table),
        "notes": list(table.notes),
        "entropy": entropy_effect.to_records(entropy_rows),
        "quoted": [q.model_dump() for q in cfg.report.quoted],
        "missing": missing,
        "stale": stale,
        "ignored": list(inputs.ignored),
        "train": {
            a.run: {str(seed): dict(s) for seed, s in a.train_summaries.items()}
            for a in inputs.runs
            if a.train_summaries
        },
        "plots": list(plots.PLOT_FILES),
    }
    exp_md = ""
    if exp is not None:
        summary["experiments"], exp_md = _experiments(cfg, paths, exp, resampling)

    write_text_atomic(out / SUMMARY, json.dumps(summary, indent=2, sort_keys=False) + "\n")  # last
    if not quiet:
        _print(terminal_text(table, quoted, missing_text, exp_md))
    return summary
