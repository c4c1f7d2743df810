"""Stage `report`: every metrics file -> data/report/{table.md, table.csv, *.png, summary.json}.

Reads whatever exists for the runs in cfg.methods (plus any other run found under data/):
data/metrics/eval/<run>.json, data/eval/<run>/per_problem.json, data/runs/<run>/train_log.tsv,
data/metrics/train/<run>.json. Absent files never fail the stage: the run's row shows "—" and
the "missing: ..." line names what is absent. With ``exp`` it also compares DVC experiments
(data/report/experiments.{md,csv}; not a DVC output, since it reads the experiment store).
"""

from __future__ import annotations

import json
import os
from typing import Any

from rftctl.config import Config
from rftctl.paths import Paths
from rftctl.report import experiments as experiments_mod
from rftctl.report import plots
from rftctl.report.inputs import load_inputs, missing_line
from rftctl.report.tables import Entry, build_table, to_csv, to_markdown, to_records, unique_labels
from rftctl.stages import guarded
from rftctl.util import atomic_write_text as write_text_atomic

TABLE_MD, TABLE_CSV, SUMMARY = "table.md", "table.csv", "summary.json"
EXPERIMENTS_MD, EXPERIMENTS_CSV = "experiments.md", "experiments.csv"
OUTPUTS = (TABLE_MD, TABLE_CSV, *plots.PLOT_FILES, SUMMARY)


def _print(markdown: str, missing: str) -> None:
    from rich.markdown import Markdown

    from rftctl.ui import out as console

    console.print(Markdown(markdown))
    if missing:
        console.print(f"[yellow]{missing}[/yellow]")


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
    ks = cfg.report.ks
    inputs = load_inputs(paths, runs)
    missing = inputs.missing()
    missing_text = missing_line(missing)

    table = build_table(
        [Entry(a.run, a.display, a.eval) for a in inputs.runs],
        set_order=set_order,
        ks=ks,
        baseline=cfg.report.baseline,
    )
    markdown = to_markdown(table)  # printed; the file also carries the missing line

    out = paths.report
    # plots are keyed by label: runs sharing a display name must not overwrite each other
    labels = dict(zip((a.run for a in inputs.runs), unique_labels([(a.run, a.display, "") for a in inputs.runs])))
    logs = {labels[a.run]: a.train_log for a in inputs.runs if a.train_log is not None}
    per_problem = {labels[a.run]: a.per_problem for a in inputs.runs if a.per_problem is not None}
    plots.write_all(logs, per_problem, out, ema=cfg.report.smoothing, set_order=set_order)
    write_text_atomic(out / TABLE_MD, to_markdown(table, missing=missing_text))
    write_text_atomic(out / TABLE_CSV, to_csv(table))

    summary: dict[str, Any] = {
        "baseline": cfg.report.baseline,
        "columns": [c.header for c in table.columns],
        "rows": to_records(table),
        "notes": list(table.notes),
        "missing": missing,
        "train": {a.run: dict(a.train_summary) for a in inputs.runs if a.train_summary is not None},
        "plots": list(plots.PLOT_FILES),
    }

    if exp is not None:
        eval_dir = os.path.relpath(paths.eval_metrics("_").parent, paths.root)
        found = experiments_mod.parse_exp_show(
            experiments_mod.run_exp_show(paths.root), eval_dir=eval_dir
        )
        chosen = experiments_mod.select(found, exp)
        exp_table = build_table(
            experiments_mod.entries(chosen, runs),
            set_order=set_order,
            ks=ks,
            baseline=cfg.report.baseline,
        )
        exp_md = to_markdown(exp_table)
        write_text_atomic(out / EXPERIMENTS_MD, exp_md)
        write_text_atomic(out / EXPERIMENTS_CSV, to_csv(exp_table))
        summary["experiments"] = {"names": [e.name for e in chosen], "rows": to_records(exp_table)}
        markdown += "\n## DVC experiments\n\n" + exp_md

    write_text_atomic(out / SUMMARY, json.dumps(summary, indent=2, sort_keys=False) + "\n")  # last
    if not quiet:
        _print(markdown, missing_text)
    return summary
