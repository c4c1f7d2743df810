"""Read every run's result files (as rftctl/stages/train.py and evaluate.py write them).

Whatever exists is read; whatever is absent is recorded so the report can name it. A file that
exists but is malformed is a DataError naming the file and the stage to rerun.

Which runs: those of the configuration (params.yaml ``methods``), plus the rows that commands add
on purpose (``rftctl evaluate --base`` and ``--model DIR --name NAME``: their eval file says
``method: base`` / ``external``). Any other directory under data/ (a throwaway run trained with
another --params file, a renamed run) is listed once as ignored, never silently mixed in.

A cell's step log must be the one its finished run wrote beside its policy: the train summary
records both digests, and a log that differs (another run's, or torn: a truncated last row, a
row of the wrong width) is a DataError naming the file. A cell still training in place (its lock
held, no summary yet) is left out and named in one line.

An evaluation must be of the policy that is there now: a cell whose eval file records another
``model_digest`` than its policy directory's (retrained since) is a DataError naming the cell and
the command that refreshes it, not a row that pairs new training curves with old scores.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from rftctl.errors import DataError
from rftctl.lock import holder
from rftctl.models.io import model_digest
from rftctl.paths import Paths
from rftctl.util import sha256_file

# artifact kinds, in the order the "missing: ..." line names them
EVAL, PER_PROBLEM, TRAIN_LOG, TRAIN_SUMMARY = (
    "eval metrics",
    "per-problem results",
    "train log",
    "train summary",
)
KINDS = (EVAL, PER_PROBLEM, TRAIN_LOG, TRAIN_SUMMARY)


class Setting(NamedTuple):
    """Sampling settings of one evaluation; results under different settings are never mixed."""

    n: int
    temperature: float
    top_p: float
    max_new_tokens: int
    seed: int


@dataclass(frozen=True)
class SetResult:
    """One data set's Avg@K / Pass@K (fractions in [0, 1]) from one run."""

    name: str
    setting: Setting
    ks: tuple[int, ...]
    values: Mapping[str, float]  # "avg@K" / "pass@K" -> fraction
    num_problems: int | None = None
    effective_seed: int | None = None  # the sampling seed used (setting.seed + the cell's seed)


@dataclass(frozen=True)
class EvalResult:
    """data/metrics/eval/<run>/seed<k>.json, parsed."""

    run: str
    seed: int | None  # the cell's seed (None in files written before seeds existed)
    display: str
    method: str | None
    model: str | None
    backend: str | None
    train_steps: int | None
    updates_per_batch: int | None
    sets: tuple[SetResult, ...]
    model_digest: str | None = None  # sha256 of the evaluated policy (models.io.model_digest)


PerProblem = Mapping[str, Mapping[str, tuple[int, int]]]  # set -> problem id -> (n, c)


@dataclass(frozen=True, eq=False)
class CellArtifacts:
    """Everything found for one run x seed; None where the file is absent."""

    seed: int
    eval: EvalResult | None = None
    per_problem: PerProblem | None = None
    train_log: Any = None  # pandas.DataFrame [steps x columns], "step" first
    train_summary: Mapping[str, Any] | None = None
    training: bool = False  # still training in place: its partial log left out

    def missing(self) -> list[str]:
        have = {
            EVAL: self.eval,
            PER_PROBLEM: self.per_problem,
            TRAIN_LOG: self.train_log,
            TRAIN_SUMMARY: self.train_summary,
        }
        return [k for k in KINDS if have[k] is None]


@dataclass(frozen=True, eq=False)
class RunArtifacts:
    """One run: a cell per seed looked at, in seed order."""

    run: str
    display: str
    cells: tuple[CellArtifacts, ...] = ()

    def _by_seed(self, attr: str) -> dict[int, Any]:
        return {c.seed: v for c in self.cells if (v := getattr(c, attr)) is not None}

    @property
    def evals(self) -> dict[int, EvalResult]:
        return self._by_seed("eval")

    @property
    def per_problems(self) -> dict[int, PerProblem]:
        return self._by_seed("per_problem")

    @property
    def train_logs(self) -> dict[int, Any]:
        return self._by_seed("train_log")

    @property
    def train_summaries(self) -> dict[int, Mapping[str, Any]]:
        return self._by_seed("train_summary")

    @property
    def training(self) -> list[int]:
        return [c.seed for c in self.cells if c.training]

    def found_any(self) -> bool:
        return any(len(c.missing()) < len(KINDS) for c in self.cells)

    def missing(self, seeds: Sequence[int]) -> list[str]:
        """Artifact kinds absent for the given seeds: "train log" when every seed lacks it,
        "train log (seed 1, 2)" when only some do."""
        cells = {c.seed: c for c in self.cells}
        out = []
        for kind in KINDS:
            lacking = [s for s in seeds if s not in cells or kind in cells[s].missing()]
            if len(lacking) == len(seeds):
                out.append(kind)
            elif lacking:
                out.append(f"{kind} (seed {', '.join(map(str, lacking))})")
        return out


@dataclass(frozen=True, eq=False)
class ReportInputs:
    runs: tuple[RunArtifacts, ...]
    expected: tuple[str, ...] = field(default=())  # runs named in cfg.methods
    seeds: tuple[int, ...] = field(default=(0,))  # cfg.seeds
    ignored: tuple[str, ...] = field(default=())  # other run directories under data/, not read

    def missing(self) -> dict[str, list[str]]:
        """Expected run -> the artifact kinds it lacks (runs lacking nothing are left out)."""
        by_run = {r.run: r for r in self.runs}
        out = {}
        for run in self.expected:
            gaps = by_run[run].missing(self.seeds) if run in by_run else list(KINDS)
            if gaps:
                out[run] = gaps
        return out


def missing_line(missing: Mapping[str, list[str]]) -> str:
    """ "missing: clipv (no results), kl_cov (train log (seed 1))" or "" when nothing is missing."""
    if not missing:
        return ""
    parts = [
        f"{run} ({'no results' if list(g) == list(KINDS) else ', '.join(g)})"
        for run, g in missing.items()
    ]
    return "missing: " + ", ".join(parts)


def training_line(runs: Sequence[RunArtifacts]) -> str:
    """The one line naming the cells left out because they are still training ("" when none)."""
    cells = [f"{r.run} seed {s}" for r in runs for s in r.training]
    if not cells:
        return ""
    return f"still training (left out until they finish): {', '.join(cells)}"


def ignored_line(ignored: Sequence[str]) -> str:
    """The one line naming the run directories the report did not read ("" when none)."""
    if not ignored:
        return ""
    return (
        f"ignored (not runs of params.yaml `methods`, nor rows of `rftctl evaluate "
        f"--base/--model`): "
        f"{', '.join(ignored)}; add them to `methods` to report them, or delete their directories "
        f"under data/"
    )


# ------------------------------------------------------------------------------------------
# parsing
# ------------------------------------------------------------------------------------------
def _get(d: Mapping, key: str, source: str, kind: type | tuple = object):
    if key not in d:
        raise DataError(f"{source}: missing key {key!r}; rerun the stage that writes it")
    v = d[key]
    if not isinstance(v, kind) or isinstance(v, bool) and kind is not bool:
        raise DataError(
            f"{source}: key {key!r} has {type(v).__name__} {v!r}; rerun the stage that writes it"
        )
    return v


def parse_eval_metrics(data: Any, source: str) -> EvalResult:
    """Parse the JSON object of data/metrics/eval/<run>/seed<k>.json; ``source`` names it in
    errors."""
    if not isinstance(data, Mapping):
        raise DataError(
            f"{source}: expected a JSON object, got {type(data).__name__}; rerun `rftctl evaluate`"
        )
    run = _get(data, "run", source, str)
    sets = []
    num = (int, float)
    for name, s in _get(data, "sets", source, Mapping).items():
        where = f"{source} sets.{name}"
        if not isinstance(s, Mapping):
            raise DataError(f"{where}: expected an object; rerun `rftctl evaluate {run}`")
        setting = Setting(
            n=_get(s, "n", where, int),
            temperature=float(_get(s, "temperature", where, num)),
            top_p=float(_get(s, "top_p", where, num)),
            max_new_tokens=_get(s, "max_new_tokens", where, int),
            seed=_get(s, "seed", where, int),
        )
        values = {
            k: float(v)
            for k, v in s.items()
            if k.startswith(("avg@", "pass@")) and isinstance(v, num)
        }
        ks = tuple(
            sorted({int(k.split("@", 1)[1]) for k in values if k.split("@", 1)[1].isdigit()})
        )
        sets.append(
            SetResult(name, setting, ks, values, s.get("num_problems"), s.get("effective_seed"))
        )
    seed = data.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        raise DataError(
            f"{source}: key 'seed' has {type(seed).__name__} {seed!r}; rerun `rftctl evaluate`"
        )
    return EvalResult(
        run=run,
        seed=seed,
        display=str(data.get("display") or run),
        method=data.get("method"),
        model=data.get("model"),
        backend=data.get("backend"),
        train_steps=data.get("train_steps"),
        updates_per_batch=data.get("updates_per_batch"),
        sets=tuple(sets),
        model_digest=data.get("model_digest")
        if isinstance(data.get("model_digest"), str)
        else None,
    )


def _read_json(path: Path, stage: str) -> Any:
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: malformed JSON ({e}); rerun `{stage}`") from None


def _parse_per_problem(data: Any, source: str) -> dict[str, dict[str, tuple[int, int]]]:
    if not isinstance(data, Mapping):
        raise DataError(
            f"{source}: expected {{set: {{problem id: [n, c]}}}}; rerun `rftctl evaluate`"
        )
    out: dict[str, dict[str, tuple[int, int]]] = {}
    for name, probs in data.items():
        if not isinstance(probs, Mapping):
            raise DataError(
                f"{source} {name}: expected {{problem id: [n, c]}}; rerun `rftctl evaluate`"
            )
        rows = {}
        for pid, nc in probs.items():
            ok = (
                isinstance(nc, (list, tuple))
                and len(nc) == 2
                and all(isinstance(x, int) for x in nc)
            )
            if not ok or not 0 <= nc[1] <= nc[0] or nc[0] < 1:
                raise DataError(
                    f"{source} {name}.{pid}: expected [n, c] with 0 <= c <= n, got {nc!r}; rerun "
                    f"`rftctl evaluate`"
                )
            rows[str(pid)] = (int(nc[0]), int(nc[1]))
        out[str(name)] = rows
    return out


def _check_torn(path: Path, again: str) -> None:
    """DataError when the TSV is torn: a last row without its newline, or a row whose field count
    is not the header's (pandas would read either as a row with blanks)."""
    text = path.read_bytes().decode("utf-8", errors="replace")
    lines = text.split("\n")
    if not text.endswith("\n"):
        raise DataError(
            f"{path}: torn log (its last row, line {len(lines)}, has no line end: a truncated "
            f"file); rerun `{again}`"
        )
    width = len(lines[0].split("\t"))
    for i, line in enumerate(lines[1:-1], start=2):
        if len(line.split("\t")) != width:
            raise DataError(
                f"{path}: torn log (line {i} has {len(line.split(chr(9)))} fields, the header "
                f"{width}); rerun `{again}`"
            )


def _read_train_log(path: Path, again: str = "rftctl train"):
    import pandas as pd

    _check_torn(path, again)
    try:
        df = pd.read_csv(path, sep="\t")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise DataError(
            f"{path}: unreadable TSV ({type(e).__name__}: {e}); rerun `rftctl train`"
        ) from None
    if "step" not in df.columns:
        raise DataError(f"{path}: no 'step' column in the header; rerun `rftctl train`")
    return df


def stale_files(paths: Paths) -> list[Path]:
    """Metrics files of the layout before seeds (data/metrics/eval/<run>.json, also the train
    summaries): the report never reads them, and says so rather than silently showing less."""
    dirs = (paths.eval_metrics_dir, paths.train_summaries)
    return sorted(p for d in dirs if d.is_dir() for p in d.glob("*.json"))


def discover_runs(paths: Paths) -> list[str]:
    """Run names with a result directory of any kind (data/metrics/eval/<run>/, ...), sorted."""
    found: set[str] = set()
    for d in (
        paths.eval_metrics_dir,
        paths.train_summaries,
        paths.run_dir("_").parent,
        paths.evals,
    ):
        if d.is_dir():
            found |= {p.name for p in d.iterdir() if p.is_dir()}
    return sorted(found)


ROW_COMMANDS = ("base", "external")  # eval-file `method` of `evaluate --base` / `evaluate --model`


def _refresh_command(ev: EvalResult, run: str, seed: int) -> str:
    if ev.method == "base":
        return f"`rftctl evaluate --base --seed {seed}`"
    if ev.method == "external":
        return f"`rftctl evaluate --model {ev.model} --name {run} --seed {seed}`"
    return f"`rftctl evaluate --run {run} --seed {seed}` (or `dvc repro evaluate@{run}-{seed}`)"


def check_fresh(
    paths: Paths, ev: EvalResult, run: str, seed: int, source: str, digests: dict
) -> None:
    """DataError when the policy directory now holds another model than the one evaluated.
    Skipped when the file records no digest or the directory is gone (nothing to compare)."""
    if ev.model_digest is None:
        return
    if ev.method == "base":
        policy = paths.base_model
    elif ev.method == "external":
        policy = Path(ev.model) if ev.model else None
    else:
        policy = paths.policy(run, seed)
    if policy is None or not (policy / "config.json").exists():
        return
    if policy not in digests:  # a content hash of the weights: once per directory per report
        digests[policy] = model_digest(policy)
    if digests[policy] != ev.model_digest:
        raise DataError(
            f"{source}: cell {run} seed {seed} was evaluated on policy {ev.model_digest[:12]}, but "
            f"{policy} now holds {digests[policy][:12]} (trained again since); the report will "
            f"not pair these scores with that policy: rerun {_refresh_command(ev, run, seed)}"
        )


def _row_command(paths: Paths, run: str, seeds: Sequence[int]) -> bool:
    """Whether an extra run's eval file says `rftctl evaluate --base/--model` wrote it."""
    for seed in seeds:
        p = paths.eval_metrics(run, seed)
        if p.exists():
            data = _read_json(p, f"rftctl evaluate ... --seed {seed}")
            return isinstance(data, Mapping) and data.get("method") in ROW_COMMANDS
    return False


def load_cell(paths: Paths, run: str, seed: int, digests: dict | None = None) -> CellArtifacts:
    ev = per = log = summ = None
    again = f"rftctl evaluate --run {run} --seed {seed}"
    if (p := paths.eval_metrics(run, seed)).exists():
        ev = parse_eval_metrics(_read_json(p, again), str(p))
        check_fresh(paths, ev, run, seed, str(p), {} if digests is None else digests)
    if (p := paths.eval_per_problem(run, seed)).exists():
        per = _parse_per_problem(_read_json(p, again), str(p))
    retrain = f"rftctl train --run {run} --seed {seed} --force"
    if (p := paths.train_summary(run, seed)).exists():
        summ = _read_json(p, f"rftctl train --run {run} --seed {seed}")
        if not isinstance(summ, Mapping):
            raise DataError(
                f"{p}: expected a JSON object; rerun `rftctl train --run {run} --seed {seed}`"
            )
    elif holder(paths.train_lock(run, seed)) is not None:
        # training in place (no finished run yet): its log is partial, left out
        return CellArtifacts(seed, ev, per, None, None, training=True)
    if (p := paths.train_log(run, seed)).exists():
        log = _read_train_log(p, retrain)
        if summ is not None:
            check_bound(paths, run, seed, summ, {} if digests is None else digests)
    return CellArtifacts(seed, ev, per, log, summ)


def check_bound(paths: Paths, run: str, seed: int, summ: Mapping, digests: dict) -> None:
    """DataError when the step log or the policy beside a summary are not the ones its run
    wrote (the summary records their digests; summaries from before that are not checked)."""
    log, policy = paths.train_log(run, seed), paths.policy(run, seed)
    again = f"`rftctl train --run {run} --seed {seed} --force`"
    want = summ.get("log_sha256")
    if isinstance(want, str) and (have := sha256_file(log)) != want:
        raise DataError(
            f"{log}: this step log is not the one of the finished run beside it (the summary "
            f"{paths.train_summary(run, seed)} records {want[:12]}, the file is {have[:12]}); "
            f"the report will not mix them: rerun {again}"
        )
    want = summ.get("policy_digest")
    if isinstance(want, str) and (policy / "config.json").exists():
        if policy not in digests:
            digests[policy] = model_digest(policy)
        if digests[policy] != want:
            raise DataError(
                f"{log}: this step log belongs to policy {want[:12]}, but {policy} holds "
                f"{digests[policy][:12]}; the report will not mix them: rerun {again}"
            )


def load_run(
    paths: Paths, run: str, seeds: Sequence[int], digests: dict | None = None
) -> RunArtifacts:
    cells = tuple(load_cell(paths, run, s, digests) for s in sorted(set(seeds)))
    display = next(
        (
            x
            for c in cells
            for x in ((c.eval.display if c.eval else None), (c.train_summary or {}).get("display"))
            if x
        ),
        run,
    )
    return RunArtifacts(run, str(display), cells)


def load_inputs(
    paths: Paths, runs: Sequence[str], seeds: Sequence[int], *, include_extra: bool = True
) -> ReportInputs:
    """Load the named runs (in order) for the given seeds and, with include_extra, the rows of
    `rftctl evaluate --base/--model` found under data/ with a file for one of those seeds; any
    other run directory there is returned in ``ignored``, unread."""
    order, ignored = list(dict.fromkeys(runs)), []
    if include_extra:
        for r in discover_runs(paths):
            if r not in order:
                (order if _row_command(paths, r, seeds) else ignored).append(r)
    digests: dict = {}
    loaded = [load_run(paths, r, seeds, digests) for r in order]
    present = [a for a in loaded if a.run in runs or a.found_any()]
    return ReportInputs(tuple(present), tuple(dict.fromkeys(runs)), tuple(seeds), tuple(ignored))
