"""Compare DVC experiments with the workspace: `dvc exp show --json` -> rows experiment x run.

An experiment's commit holds dvc.lock, params.yaml and the files git tracks; the eval metrics
under data/ are git-ignored and not in DVC's cache, so an experiment carries its results in the
report's git-tracked ``metrics.json`` (the report stage's DVC metrics, rftctl/report/tradeoff.py
``headline``): {run: {set: {"avg@<n>": %, "pass@<n>": %}, "H": final entropy}}. Each row is one
run in one revision; the table puts each run's workspace row first, then the same run in each
experiment with its difference from the workspace (experiment - workspace), key by key.

Shape of `dvc exp show --json` (dvc 3.x): a list of baseline entries {"rev", "name", "data":
{"params", "metrics": {path: {"data": {...}} | {"error": ...}}}, "experiments": [{"name", "revs":
[entry, ...]}] | null}; the first entry is the workspace.
"""

from __future__ import annotations

import csv
import difflib
import io
import json
import os
import re
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rftctl.errors import BackendError, ConfigError, DataError

WORKSPACE = "workspace"
H = "H"


@dataclass(frozen=True)
class Experiment:
    """One revision (the workspace, a baseline commit or a DVC experiment) and its runs."""

    name: str
    rev: str
    values: Mapping[str, Mapping[str, float]]  # run -> {"<set> avg@16": %, ..., "H": nats}
    error: str = ""  # why its metrics file could not be read ("" when it was)


def run_exp_show(root: Path) -> Any:
    """Run `dvc exp show --json` in ``root`` and return the parsed JSON."""
    env = dict(os.environ, DVC_NO_ANALYTICS="1")
    try:
        proc = subprocess.run(
            # the dvc of this interpreter's environment, even when its bin/ is not on PATH
            [sys.executable, "-m", "dvc", "exp", "show", "--json"],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
    except FileNotFoundError:
        raise BackendError(
            "dvc is not installed; pip install dvc (it is a dependency of rftctl)"
        ) from None
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise DataError(
            f"`dvc exp show --json` failed in {root}: {last}; run it by hand to see why"
        )
    try:
        return json.loads(proc.stdout or "[]")
    except json.JSONDecodeError as e:
        raise DataError(
            f"`dvc exp show --json` printed invalid JSON ({e}); run it by hand to see why"
        ) from None


def _short(rev: str) -> str:
    """A commit's short hash; other revs ("workspace") unchanged."""
    return rev[:7] if re.fullmatch(r"[0-9a-f]{40}", rev) else rev


def flatten(data: Any, source: str) -> dict[str, dict[str, float]]:
    """The tracked metrics file's content -> run -> {"<set> <metric>": value, "H": value}."""
    if not isinstance(data, Mapping):
        raise DataError(f"{source}: expected a JSON object of runs, got {type(data).__name__}")
    out: dict[str, dict[str, float]] = {}
    for run, d in data.items():
        if not isinstance(d, Mapping):
            raise DataError(f"{source}: run {run!r}: expected an object, got {d!r}")
        row: dict[str, float] = {}
        for key, v in d.items():
            if isinstance(v, Mapping):  # an eval set: {"avg@16": %, "pass@16": %}
                row |= {f"{key} {m}": float(x) for m, x in v.items() if _number(x)}
            elif _number(v):
                row[key] = float(v)
        out[str(run)] = row
    return out


def _number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def _experiment(entry: Any, name: str, metrics_file: str) -> Experiment:
    if not isinstance(entry, dict):
        raise DataError(
            f"dvc exp show: expected an object per revision, got {type(entry).__name__}"
        )
    rev = str(entry.get("rev") or "")
    metrics = ((entry.get("data") or {}).get("metrics")) or {}
    m = next((v for p, v in metrics.items() if p.replace("\\", "/") == metrics_file), None)
    if not isinstance(m, dict) or "data" not in m:
        why = "not in this revision" if m is None else "unreadable"
        return Experiment(name, rev, {}, f"{metrics_file} {why}")
    return Experiment(name, rev, flatten(m["data"], f"dvc exp show ({name}): {metrics_file}"))


def parse_exp_show(data: Any, *, metrics_file: str = "metrics.json") -> list[Experiment]:
    """Flatten `dvc exp show --json` into revisions, in dvc's order.

    metrics_file: the tracked metrics file relative to the repo root (metrics.json).
    Names: "workspace", a baseline commit's branch name (or short rev), each experiment's name.
    """
    if not isinstance(data, list):
        raise DataError(f"dvc exp show: expected a JSON list, got {type(data).__name__}")
    out = []
    for base in data:
        if not isinstance(base, dict):
            raise DataError("dvc exp show: expected an object per baseline revision")
        rev = str(base.get("rev") or "")
        out.append(_experiment(base, str(base.get("name") or _short(rev)), metrics_file))
        for exp in base.get("experiments") or []:
            for r in exp.get("revs") or []:
                r_rev = str(r.get("rev") or "")
                name = str(r.get("name") or exp.get("name") or _short(r_rev))
                out.append(_experiment(r, name, metrics_file))
    return out


def select(experiments: Sequence[Experiment], names: Sequence[str]) -> list[Experiment]:
    """The named experiments in the order given; no names means every one but the workspace.
    Unknown -> ConfigError."""
    if not names:
        return [e for e in experiments if e.name != WORKSPACE]
    by_name = {e.name: e for e in experiments}
    out = []
    for n in names:
        if n not in by_name:
            close = difflib.get_close_matches(n, list(by_name), n=1)
            hint = f" did you mean {close[0]!r}?" if close else ""
            raise ConfigError(
                f"--exp {n!r}: no such experiment;{hint} known: {', '.join(by_name) or 'none'} "
                f"(see `dvc exp show`)"
            )
        out.append(by_name[n])
    return out


@dataclass(frozen=True)
class Comparison:
    columns: tuple[str, ...]  # "<set> avg@16", ..., "H"
    rows: tuple[dict, ...]  # {"experiment", "rev", "run", "values": {col: v}, "diff": {col: d}}
    unreadable: tuple[str, ...]  # "name (why)" of revisions without a readable metrics file


def compare(
    workspace: Experiment | None, chosen: Sequence[Experiment], run_order: Sequence[str]
) -> Comparison:
    """Rows per run: the workspace's first, then each chosen experiment's, each with its
    difference from the workspace's value of the same run and key (None where either lacks it)."""
    everyone = ([workspace] if workspace else []) + [e for e in chosen if e is not workspace]
    readable = [e for e in everyone if not e.error]
    runs = [r for r in run_order if any(r in e.values for e in readable)]
    runs += sorted({r for e in readable for r in e.values} - set(runs))
    keys = {k for e in readable for d in e.values.values() for k in d}
    columns = tuple(sorted(keys - {H}) + ([H] if H in keys else []))
    base = workspace.values if workspace and not workspace.error else {}
    rows = []
    for run in runs:
        for e in readable:
            if run not in e.values:
                continue
            v = e.values[run]
            w = base.get(run, {}) if e is not workspace else {}
            diff = {c: v[c] - w[c] for c in columns if c in v and c in w}
            rows.append(
                {"experiment": e.name, "rev": e.rev, "run": run, "values": dict(v), "diff": diff}
            )
    unreadable = tuple(f"{e.name} ({e.error})" for e in everyone if e.error)
    return Comparison(columns, tuple(rows), unreadable)


def _fmt(col: str, v: float | None, signed: bool = False) -> str:
    if v is None:
        return "—"
    digits = 4 if col == H else 2
    return f"{v:+.{digits}f}" if signed else f"{v:.{digits}f}"


def _header(col: str) -> str:
    name, _, metric = col.rpartition(" ")
    if not name:
        return "final entropy H" if col == H else col
    kind, _, n = metric.partition("@")
    return f"{name} {kind.capitalize()}@{n} (%)"


def unreadable_line(c: Comparison, metrics_file: str) -> str:
    if not c.unreadable:
        return ""
    return (
        f"no results for: {', '.join(c.unreadable)}. An experiment carries its results in the "
        f"git-tracked {metrics_file} that `rftctl report` writes (`dvc exp run` commits it); for "
        f"a commit, run `dvc repro` then `git add dvc.lock {metrics_file}` and commit"
    )


def to_markdown(c: Comparison, metrics_file: str = "metrics.json") -> str:
    """Rows per run (workspace first), each value with (+difference from the workspace)."""
    note = unreadable_line(c, metrics_file)
    if not c.rows:
        return "No experiment results found." + (f"\n\n{note}\n" if note else "\n")
    head = ["Run", "Experiment", *(_header(col) for col in c.columns)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in c.rows:
        cells = []
        for col in c.columns:
            v = r["values"].get(col)
            d = r["diff"].get(col)
            cells.append(_fmt(col, v) + (f" ({_fmt(col, d, True)})" if d is not None else ""))
        lines.append("| " + " | ".join([r["run"], r["experiment"], *cells]) + " |")
    foot = (
        "\nValues in % (H in nats), the mean over the seeds each revision evaluated; in brackets "
        "the experiment's difference from the workspace's row of the same run.\n"
    )
    return "\n".join(lines) + "\n" + foot + (f"\n{note}\n" if note else "")


def to_csv(c: Comparison) -> str:
    """Long form: run, experiment, rev, metric, value, workspace, difference."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["run", "experiment", "rev", "metric", "value", "workspace", "difference"])
    ws = {r["run"]: r["values"] for r in c.rows if r["experiment"] == WORKSPACE}
    for r in c.rows:
        for col in c.columns:
            if col not in r["values"]:
                continue
            base = ws.get(r["run"], {}).get(col)
            d = r["diff"].get(col)
            w.writerow(
                [
                    r["run"],
                    r["experiment"],
                    r["rev"],
                    col,
                    r["values"][col],
                    "" if base is None else base,
                    "" if d is None else d,
                ]
            )
    return buf.getvalue()


def to_records(c: Comparison) -> dict:
    return {"columns": list(c.columns), "rows": list(c.rows), "unreadable": list(c.unreadable)}
