"""Stage `report`: every metrics file -> data/report/{table.md, table.csv, results.csv,
results.parquet, *.png, summary.json}.

Reads whatever exists for the runs in cfg.methods (plus any other run found under data/, such
as `base`) and the seeds in cfg.seeds: data/metrics/eval/<run>/seed<k>.json,
data/eval/<run>/seed<k>/per_problem.json, data/runs/<run>/seed<k>/train_log.tsv,
data/metrics/train/<run>/seed<k>.json. Absent files never fail the stage: the run's row shows "—"
(or the mean of the seeds it has) and the "missing: ..." line names what is absent.

The DVC-tracked report (data/report) also writes the git-tracked metrics.json at the project root
(the stage's DVC metrics: what a `dvc exp run` commit carries). A report with a selection
(``runs`` / ``exclude``) or an experiment comparison goes wherever ``out_dir`` says (the CLI:
data/report_adhoc) and leaves both alone. With ``exp`` it compares the workspace with DVC
experiments (experiments.{md,csv}, read from `dvc exp show` before anything is written).
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
from pathlib import Path
from typing import Any

from rftctl import __version__
from rftctl.config import Config
from rftctl.errors import ConfigError, DataError
from rftctl.paths import Paths
from rftctl.report import entropy_effect, plots, results, significance, tradeoff
from rftctl.report import experiments as experiments_mod
from rftctl.report.bootstrap import Resampling
from rftctl.report.inputs import (
    ReportInputs,
    ignored_line,
    load_inputs,
    missing_line,
    stale_files,
    training_line,
)
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


def terminal_text(table, quoted, missing: str, exp_md: str = "", where: str = "data/report") -> str:
    """What `rftctl report` prints: the table once (markdown lines, unwrapped), one line on its
    marks, where the rest is; the footnote, the difference and entropy tables live in table.md."""
    lines = []
    if table.columns:
        lines += to_markdown(table, quoted=quoted).split("\n\n", 1)[0].splitlines()
        lines += ["", mark_line(table)]
    else:
        lines.append("No evaluation results found.")
    lines.append(
        f"footnote, intervals, difference and entropy tables: {where}/table.md; "
        f"plots: {where}/*.png"
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


def _experiments(paths: Paths, exp: list[str], run_order: list[str]):
    """The comparison of the workspace with the chosen experiments, read before anything is
    written (a refusal leaves no partial report). Refused when no chosen experiment has
    results."""
    metrics_file = os.path.relpath(paths.tracked_metrics, paths.root).replace(os.sep, "/")
    found = experiments_mod.parse_exp_show(
        experiments_mod.run_exp_show(paths.root), metrics_file=metrics_file
    )
    chosen = experiments_mod.select(found, exp)
    workspace = next((e for e in found if e.name == experiments_mod.WORKSPACE), None)
    comparison = experiments_mod.compare(workspace, chosen, run_order)
    if not chosen:
        raise DataError(
            "--exp: no DVC experiments to compare; run one first, e.g. "
            "`dvc exp run -S methods.clipb.mu=3.0` (see `dvc exp show`)"
        )
    if all(e.error for e in chosen):
        raise DataError(experiments_mod.unreadable_line(comparison, metrics_file))
    return comparison, metrics_file


def _select(inputs: ReportInputs, keep: list[str] | None, drop: list[str] | None) -> ReportInputs:
    """The runs --runs names (in that order), less those --exclude names; a name that is no
    run of the configuration nor a row found under data/ is refused with the known ones."""
    if not keep and not drop:
        return inputs
    known = list(dict.fromkeys([*inputs.expected, *(a.run for a in inputs.runs)]))
    for flag, names in (("--runs", keep or []), ("--exclude", drop or [])):
        for n in names:
            if n not in known:
                close = difflib.get_close_matches(n, known, n=1)
                hint = f" did you mean {close[0]!r}?" if close else ""
                raise ConfigError(f"{flag} {n!r}: no such run;{hint} known: {', '.join(known)}")
    order = list(dict.fromkeys(keep)) if keep else known
    order = [r for r in order if r not in set(drop or [])]
    by_run = {a.run: a for a in inputs.runs}
    return dataclasses.replace(
        inputs,
        runs=tuple(by_run[r] for r in order if r in by_run),
        expected=tuple(r for r in inputs.expected if r in order),
    )


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
    cfg: Config,
    paths: Paths,
    exp: list[str] | None = None,
    *,
    quiet: bool = False,
    runs: list[str] | None = None,
    exclude: list[str] | None = None,
    out_dir: Path | None = None,
) -> dict[str, Any]:
    """Write the report; returns the content of summary.json (its "output_dir" says where).

    exp: None = no experiment comparison; [] = every experiment `dvc exp show` lists;
    names = those experiments, in that order (unknown names raise ConfigError).
    runs / exclude: report only these runs / all but these (unknown names raise ConfigError).
    out_dir: where to write (default data/report, the DVC-tracked report); only a report written
    there also writes the git-tracked headline file (paths.tracked_metrics).
    """
    cfg = guarded(cfg, "report")
    set_order = [s.name for s in cfg.prepare.eval]
    resampling = Resampling(cfg.report.bootstrap_resamples, cfg.report.bootstrap_seed)
    inputs = _select(load_inputs(paths, list(cfg.methods), list(cfg.seeds)), runs, exclude)
    comparison = None
    if exp is not None:  # before anything is written
        comparison, metrics_file = _experiments(paths, exp, list(cfg.methods))
    missing = inputs.missing()
    stale = [os.path.relpath(p, paths.root) for p in stale_files(paths)]
    notes = (
        training_line(inputs.runs),
        missing_line(missing),
        _stale_line(stale),
        ignored_line(inputs.ignored),
    )
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
    out = paths.report if out_dir is None else Path(out_dir)
    tracked = out.resolve() == paths.report.resolve()
    # plots are keyed by label: runs sharing a display name must not overwrite each other
    labels = dict(
        zip(
            (a.run for a in inputs.runs),
            unique_labels([(a.run, a.display, "") for a in inputs.runs]),
        )
    )
    logs = {labels[a.run]: a.train_logs for a in inputs.runs if a.train_logs}
    per_problem = {labels[a.run]: a.per_problems for a in inputs.runs if a.per_problems}
    captions: dict[str, str] = {}
    plots.write_all(
        logs,
        per_problem,
        out,
        ema=cfg.report.smoothing,
        set_order=set_order,
        resampling=resampling,
        width=cfg.report.figure_width,
        titles=cfg.report.figure_titles,
        captions=captions,
    )
    tradeoff.write_headline(inputs.runs, out / tradeoff.HEADLINE)
    if tracked:  # the report stage's DVC metrics, tracked by git: what an experiment carries
        tradeoff.write_headline(inputs.runs, paths.tracked_metrics)
    write_text_atomic(
        out / TABLE_MD, to_markdown(table, missing=missing_text, quoted=quoted, extra=entropy_md)
    )
    write_text_atomic(out / TABLE_CSV, to_csv(table))
    write_text_atomic(out / entropy_effect.ENTROPY_CSV, entropy_effect.to_csv(entropy_rows))
    results.write(results.rows(inputs.runs, table), out / RESULTS_CSV, out / RESULTS_PARQUET)

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
        "figures": captions,  # each figure's title: its caption when report.figure_titles is off
        "output_dir": str(out),
        "tracked": tracked,
    }
    exp_md = ""
    if comparison is not None:
        exp_md = experiments_mod.to_markdown(comparison, metrics_file)
        write_text_atomic(out / EXPERIMENTS_MD, exp_md)
        write_text_atomic(out / EXPERIMENTS_CSV, experiments_mod.to_csv(comparison))
        summary["experiments"] = experiments_mod.to_records(comparison)

    write_text_atomic(out / SUMMARY, json.dumps(summary, indent=2, sort_keys=False) + "\n")  # last
    if not quiet:
        where = os.path.relpath(out, paths.root) if out.is_relative_to(paths.root) else str(out)
        _print(terminal_text(table, quoted, missing_text, exp_md, where))
    return summary
