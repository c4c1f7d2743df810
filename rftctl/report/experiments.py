"""Compare DVC experiments: `dvc exp show --json` -> the same table, rows = experiment x run.

Each run's seeds (data/metrics/eval/<run>/seed<k>.json) become one row: the mean over seeds with
its t-interval (>= 2 seeds). dvc exp show carries only the metrics files, not the per-problem
counts, so experiment rows have no bootstrap intervals. Files of the layout before seeds
(data/metrics/eval/<run>.json) are read as the seed the file names, else seed 0.

Shape (dvc 3.x, captured in tests/golden/dvc_exp_show.json): a list of baseline entries
{"rev", "name", "data": {"params", "metrics": {path: {"data": {...}} | {"error": ...}}},
"experiments": [{"name", "revs": [entry, ...]}] | null}; the first entry is the workspace.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Any

from rftctl.errors import BackendError, ConfigError, DataError
from rftctl.paths import Paths
from rftctl.report.inputs import EvalResult, parse_eval_metrics
from rftctl.report.tables import Entry


@dataclass(frozen=True)
class Experiment:
    """One row group: a DVC experiment (or the workspace / a baseline commit) and its runs."""

    name: str
    rev: str
    results: tuple[EvalResult, ...]  # every one with its cell seed set
    errors: tuple[str, ...] = ()  # metrics files dvc could not read for this revision


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


def _eval_metrics_seed(path: str, eval_dir: str) -> int | None:
    """The cell seed of an eval metrics file: <eval_dir>/<run>/seed<k>.json -> k; the flat
    layout before seeds, <eval_dir>/<run>.json, -> -1 (seed taken from the file, else 0);
    any other file -> None."""
    p = PurePosixPath(path.replace("\\", "/"))
    where = eval_dir.strip("/")
    seed = Paths.seed_of(p.name)
    if seed is not None and p.parent.parent.as_posix().endswith(where):
        return seed
    if p.parent.as_posix().endswith(where) and p.suffix == ".json":
        return -1
    return None


def _experiment(entry: Any, name: str, eval_dir: str) -> Experiment:
    if not isinstance(entry, dict):
        raise DataError(
            f"dvc exp show: expected an object per revision, got {type(entry).__name__}"
        )
    rev = str(entry.get("rev") or "")
    metrics = ((entry.get("data") or {}).get("metrics")) or {}
    results, errors = [], []
    for path, m in sorted(metrics.items()):
        seed = _eval_metrics_seed(path, eval_dir)
        if seed is None:
            continue
        if not isinstance(m, dict) or "data" not in m:
            errors.append(path)
            continue
        ev = parse_eval_metrics(m["data"], f"dvc exp show ({name}): {path}")
        if seed < 0:
            seed = ev.seed if ev.seed is not None else 0
        results.append(replace(ev, seed=seed))
    return Experiment(name, rev, tuple(results), tuple(errors))


def parse_exp_show(data: Any, *, eval_dir: str) -> list[Experiment]:
    """Flatten `dvc exp show --json` into experiments, in dvc's order.

    eval_dir: directory of the eval metrics files relative to the repo root (data/metrics/eval).
    Names: "workspace", a baseline commit's branch name (or short rev), each experiment's name.
    """
    if not isinstance(data, list):
        raise DataError(f"dvc exp show: expected a JSON list, got {type(data).__name__}")
    out = []
    for base in data:
        if not isinstance(base, dict):
            raise DataError("dvc exp show: expected an object per baseline revision")
        rev = str(base.get("rev") or "")
        out.append(_experiment(base, str(base.get("name") or _short(rev)), eval_dir))
        for exp in base.get("experiments") or []:
            for r in exp.get("revs") or []:
                r_rev = str(r.get("rev") or "")
                out.append(
                    _experiment(r, str(r.get("name") or exp.get("name") or _short(r_rev)), eval_dir)
                )
    return out


def select(experiments: Sequence[Experiment], names: Sequence[str]) -> list[Experiment]:
    """The named experiments in the order given; no names means all. Unknown -> ConfigError."""
    if not names:
        return list(experiments)
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


def entries(experiments: Sequence[Experiment], run_order: Sequence[str]) -> list[Entry]:
    """Table rows: for each experiment, its runs in ``run_order`` then any others by name; each
    row holds the run's seeds."""
    rows = []
    for e in experiments:
        by_run: dict[str, dict[int, EvalResult]] = {}
        for r in e.results:
            by_run.setdefault(r.run, {})[r.seed] = r
        order = [r for r in run_order if r in by_run] + sorted(
            r for r in by_run if r not in run_order
        )
        rows += [
            Entry(r, by_run[r][min(by_run[r])].display, by_run[r], group=e.name) for r in order
        ]
    return rows
