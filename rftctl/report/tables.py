"""The comparison table: rows = runs, columns = data set x sampling setting x metric.

Columns per data set (the paper's): Avg@n, then Pass@K for each K of ``report.ks`` (default n).
Pass@1 is never a column: estimated from n samples it equals Avg@n. Avg@K for K < n (the
accuracy of the first K samples) is a noisier estimate of the same quantity and is not shown
either; the tidy results file (report/results.py) keeps every K.

Values are percent: the mean over the run's seeds, with a 95 % interval (report/intervals.py):
the t-interval over seeds with >= 2 seeds, else the bootstrap interval over problems
(report/bootstrap.py). Every metric is higher-is-better, so the maximum mean of each column is
bold, ties (equal as displayed) all bold. Non-baseline rows show their difference from the
baseline run of their group, computed from the displayed values.

What a difference is tested for depends on the seeds (report/significance.py):

* the same >= 2 seeds on both sides: the paired t-test over the per-seed differences, with the
  t-interval of those differences as its bracket and the exact sign-flip test over seeds
  beside it. Only these cells can carry the mark (†), which is set by the Holm-adjusted p
  within the table's family: every such cell, or, when the configuration declares primary
  endpoints (``report.primary``), the primary cells only (Holm within them; the other cells
  show their p, adjusted within the secondary cells, without a mark);
* one seed on both sides: the checkpoint test (sign-flip over problems) with the paired
  bootstrap interval over problems; never a mark;
* different seed sets: the difference alone, no test, and a note that says so.

Results obtained under different sampling settings (n, temperature, top_p, max_new_tokens, seed)
for the same data set are never mixed in one column: each setting gets its own columns, labelled
with the fields that differ ("aime24 (T=0.7) Avg@1" next to "aime24 (T=1.0) Avg@1").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from rftctl.paths import Paths
from rftctl.report import bootstrap as bs
from rftctl.report import significance as sig
from rftctl.report.bootstrap import Resampling
from rftctl.report.inputs import EvalResult, PerProblem, SetResult, Setting
from rftctl.report.intervals import Interval, t_interval
from rftctl.report.significance import TestResult

_TAG_NAMES = {
    "n": "n",
    "temperature": "T",
    "top_p": "top_p",
    "max_new_tokens": "max_new_tokens",
    "seed": "seed",
}
T_INTERVAL, BOOTSTRAP = "t", "bootstrap"  # Cell.interval_kind, Cell.delta_interval_kind
# Cell.family: the comparisons one Holm adjustment counts
FAMILY_ALL = "all seed-level comparisons"  # no primary endpoints declared: every seed-tested cell
FAMILY_PRIMARY = "primary endpoints"  # report.primary: the primary cells (the only marks)
FAMILY_SECONDARY = "secondary"  # report.primary: every other seed-tested cell (no mark)
FAMILY_CHECKPOINT = "checkpoint tests"  # one seed per side: never marked


@dataclass(frozen=True)
class Column:
    dataset: str
    setting: Setting
    tag: str  # "" unless the data set was evaluated under several settings
    kind: str  # "avg" | "pass"
    k: int

    @property
    def metric(self) -> str:
        return f"{self.kind}@{self.k}"

    @property
    def header(self) -> str:
        tag = f" ({self.tag})" if self.tag else ""
        return f"{self.dataset}{tag} {self.kind.capitalize()}@{self.k}"


@dataclass(frozen=True)
class Entry:
    """One row's input: a run's eval results per seed (empty when absent) inside an optional group.

    per_problem: seed -> set -> problem id -> (n, c), for the bootstrap intervals; empty when the
    per-problem files are not available (DVC experiments): the row then has t-intervals only.
    """

    run: str
    display: str
    evals: Mapping[int, EvalResult]
    per_problem: Mapping[int, PerProblem] = field(default_factory=dict)
    group: str = ""  # e.g. a DVC experiment name; deltas are taken within a group
    engines: Mapping[int, str] = field(
        default_factory=dict
    )  # seed -> train.engine (train summaries)


@dataclass(frozen=True)
class Cell:
    value: float | None  # percent: the mean over seeds, rounded to 2 decimals
    delta: float | None  # value - baseline value (both as displayed), None for the baseline
    best: bool
    per_seed: Mapping[int, float] = field(default_factory=dict)  # seed -> percent, 2 decimals
    interval: Interval | None = None  # percent: 95 % interval of the value
    interval_kind: str = ""  # T_INTERVAL | BOOTSTRAP | "" (none)
    # percent: the delta's bracket, the same question as its test: the t-interval of the per-seed
    # differences (T_INTERVAL) or the paired bootstrap over problems (BOOTSTRAP, one seed)
    delta_interval: Interval | None = None
    delta_interval_kind: str = ""
    # the delta's test: paired t over seeds (can set the mark) or the checkpoint test over problems
    test: TestResult | None = None
    seed_flip: TestResult | None = None  # the exact sign-flip test over seeds, beside the paired t
    p_adjusted: float | None = None  # Holm-adjusted p of ``test`` within its family
    family: str = ""  # FAMILY_* : which comparisons the adjustment counts
    marked: bool = (
        False  # the dagger: a seed-level test whose adjusted p <= ALPHA in a marked family
    )

    @property
    def significant(self) -> bool:
        """The cell carries the mark (†)."""
        return self.marked


@dataclass(frozen=True)
class Row:
    run: str
    label: str
    group: str
    is_baseline: bool
    cells: tuple[Cell, ...]
    seeds: tuple[int, ...] = ()  # seeds with eval results
    baseline_run: str = (
        ""  # the run its deltas are taken against ("" for a baseline or without one)
    )


@dataclass(frozen=True)
class Table:
    columns: tuple[Column, ...]
    rows: tuple[Row, ...]
    baseline: str
    notes: tuple[str, ...]
    bootstrap: Resampling | None = None
    primary: tuple[tuple[str, str], ...] = ()  # report.primary as (set, metric)


def _pct(x: float) -> float:
    return round(100.0 * x, 2) + 0.0  # + 0.0 turns -0.0 into 0.0


def _scaled(iv: Interval | None) -> Interval | None:
    return None if iv is None else Interval(100.0 * iv.low, 100.0 * iv.high)


def _tags(settings: Sequence[Setting]) -> dict[Setting, str]:
    if len(settings) < 2:
        return {s: "" for s in settings}
    varying = [f for f in Setting._fields if len({getattr(s, f) for s in settings}) > 1]
    return {s: ", ".join(f"{_TAG_NAMES[f]}={getattr(s, f)}" for f in varying) for s in settings}


def _set_result(ev: EvalResult, dataset: str, setting: Setting) -> SetResult | None:
    for s in ev.sets:
        if s.name == dataset and s.setting == setting:
            return s
    return None


def _metric(r: SetResult, kind: str, k: int) -> float | None:
    """The fraction of metric kind@k; Avg@n falls back to Pass@1, its equal."""
    v = r.values.get(f"{kind}@{k}")
    if v is None and kind == "avg" and k == r.setting.n:
        v = r.values.get("pass@1")
    return v


def _columns(
    entries: Sequence[Entry], set_order: Sequence[str], ks: Sequence[int] | None
) -> tuple[list[Column], list[str]]:
    by_set: dict[str, set[Setting]] = {}
    for e in entries:
        for ev in e.evals.values():
            for s in ev.sets:
                by_set.setdefault(s.name, set()).add(s.setting)
    names = [n for n in set_order if n in by_set] + sorted(n for n in by_set if n not in set_order)
    cols, notes = [], []
    for name in names:
        settings = sorted(by_set[name])
        tags = _tags(settings)
        for st in settings:
            results = [
                r for e in entries for ev in e.evals.values() if (r := _set_result(ev, name, st))
            ]
            label = f"{name} ({tags[st]})" if tags[st] else name
            wanted = [("avg", st.n)] + [
                ("pass", k) for k in (sorted(set(ks)) if ks else [st.n]) if k != 1
            ]
            if ks and 1 in ks:
                notes.append(
                    f"{label}: Pass@1 not shown (estimated from n={st.n} samples it equals "
                    f"Avg@{st.n})"
                )
            too_big = [k for kind, k in wanted if k > st.n]
            absent = [
                k
                for kind, k in wanted
                if k <= st.n and not any(_metric(r, kind, k) is not None for r in results)
            ]
            if too_big:
                notes.append(f"{label}: K={','.join(map(str, too_big))} skipped (n={st.n})")
            if absent:
                notes.append(f"{label}: K={','.join(map(str, absent))} not in the metrics files")
            cols += [
                Column(name, st, tags[st], kind, k)
                for kind, k in wanted
                if k not in too_big and k not in absent
            ]
    return cols, notes


def _per_seed(entry: Entry, c: Column) -> dict[int, float]:
    """seed -> fraction of column ``c`` for every seed of the entry that has it."""
    out = {}
    for seed, ev in sorted(entry.evals.items()):
        r = _set_result(ev, c.dataset, c.setting)
        if r is not None and (v := _metric(r, c.kind, c.k)) is not None:
            out[seed] = v
    return out


def _counts(entry: Entry, c: Column, seeds: Sequence[int]) -> list[Mapping[str, tuple[int, int]]]:
    """The per-problem counts of column ``c``'s data set for those of ``seeds`` that have them."""
    return [
        pp[c.dataset]
        for s in seeds
        if (pp := entry.per_problem.get(s)) is not None and c.dataset in pp
    ]


def _value_interval(
    entry: Entry, c: Column, per_seed: Mapping[int, float], boot: Resampling
) -> tuple[Interval | None, str]:
    if len(per_seed) >= 2:
        return t_interval([100.0 * v for v in per_seed.values()]), T_INTERVAL
    counts = _counts(entry, c, list(per_seed))
    if len(per_seed) == 1 and counts:
        iv = bs.metric_interval(counts, c.kind, c.k, resamples=boot.resamples, seed=boot.seed)
        return _scaled(iv), BOOTSTRAP if iv else ""
    return None, ""


def _paired_counts(
    entry: Entry, base: Entry, c: Column, seeds: Sequence[int], base_seeds: Sequence[int]
):
    """(run counts per seed, baseline counts per seed), or None when a seed lacks per-problem
    counts (then there is no honest paired interval or problem-level test)."""
    run, ref = _counts(entry, c, seeds), _counts(base, c, base_seeds)
    if len(run) != len(seeds) or len(ref) != len(base_seeds) or not run or not ref:
        return None
    return run, ref


def _comparison(
    entry: Entry,
    base: Entry,
    c: Column,
    per_seed: Mapping[int, float],
    base_per_seed: Mapping[int, float],
    boot: Resampling,
) -> dict:
    """The delta's bracket and test (Cell fields) by the seeds each side has: over seeds when
    both have the same >= 2 seeds; the checkpoint test over problems when both have one; nothing
    when the seed sets differ."""
    by_seed = sig.seed_comparison(dict(per_seed), dict(base_per_seed))
    if by_seed is not None:
        return {
            "delta_interval": _scaled(by_seed.interval),
            "delta_interval_kind": T_INTERVAL,
            "test": by_seed.t,
            "seed_flip": by_seed.sign_flip,
        }
    if len(per_seed) != 1 or len(base_per_seed) != 1:
        return {}
    pair = _paired_counts(entry, base, c, list(per_seed), list(base_per_seed))
    if pair is None:
        return {}
    out: dict = {}
    iv = bs.paired_difference(*pair, c.kind, c.k, resamples=boot.resamples, seed=boot.seed)
    if iv is not None:
        out.update(delta_interval=_scaled(iv), delta_interval_kind=BOOTSTRAP)
    diffs = sig.problem_differences(*pair, c.kind, c.k)
    if diffs is not None:
        out["test"] = sig.sign_flip_test(diffs[0], seed=boot.seed)
    return out


def _matches(c: Column, primary: Sequence[tuple[str, str]]) -> bool:
    """Is column ``c`` one of the primary endpoints (set, "avg@64" | "pass@n" ...)?"""
    for name, metric in primary:
        kind, _, k = metric.partition("@")
        if (
            c.dataset == name
            and c.kind == kind
            and (k == str(c.k) or (k == "n" and c.k == c.setting.n))
        ):
            return True
    return False


def _adjust(
    rows: list[Row], columns: Sequence[Column], primary: Sequence[tuple[str, str]]
) -> list[Row]:
    """Holm within each family; the mark on the family that carries marks (module docstring)."""
    families: dict[str, list[tuple[int, int]]] = {}
    for i, r in enumerate(rows):
        for j, cell in enumerate(r.cells):
            if cell.test is None:
                continue
            if cell.test.kind == sig.PAIRED_T:
                fam = (
                    (FAMILY_PRIMARY if _matches(columns[j], primary) else FAMILY_SECONDARY)
                    if primary
                    else FAMILY_ALL
                )
            else:
                fam = FAMILY_CHECKPOINT
            families.setdefault(fam, []).append((i, j))
    cells = [list(r.cells) for r in rows]
    for fam, where in families.items():
        adjusted = sig.holm([cells[i][j].test.p for i, j in where])
        for (i, j), p in zip(where, adjusted):
            cells[i][j] = replace(
                cells[i][j],
                p_adjusted=p,
                family=fam,
                marked=fam in (FAMILY_ALL, FAMILY_PRIMARY) and p <= sig.ALPHA,
            )
    return [replace(r, cells=tuple(c)) for r, c in zip(rows, cells)]


def family_size(table: Table, family: str) -> tuple[int, int, int, int]:
    """(comparisons, methods, sets, metrics) of one family: how many cells the adjustment
    counted and the distinct rows, data sets (with their setting) and metrics among them."""
    where = [
        (r, c)
        for r in table.rows
        for c, cell in zip(table.columns, r.cells)
        if cell.family == family
    ]
    return (
        len(where),
        len({r.label for r, _ in where}),
        len({(c.dataset, c.setting) for _, c in where}),
        len({c.metric if c.k != c.setting.n else f"{c.kind}@n" for _, c in where}),
    )


def _describe(label: str, by_row: Mapping[str, object]) -> str | None:
    """'backend: vllm' when all rows agree, else 'model: a (GRPO), b (GRPO+ClipB)'."""
    known = {k: v for k, v in by_row.items() if v is not None}
    if not known:
        return None
    distinct = list(dict.fromkeys(known.values()))
    if len(distinct) == 1:
        return f"{label}: {distinct[0]}"
    parts = [f"{v} ({', '.join(k for k, x in known.items() if x == v)})" for v in distinct]
    return f"{label}: " + "; ".join(parts)


def _first_eval(e: Entry) -> EvalResult | None:
    return e.evals[min(e.evals)] if e.evals else None


def _notes(entries: Sequence[Entry], rows: Sequence[Row], columns: Sequence[Column]) -> list[str]:
    notes = []
    seen: dict[tuple[str, Setting], list[int]] = {}
    for c in columns:
        ks = seen.setdefault((c.dataset, c.setting), [])
        if c.k not in ks:
            ks.append(c.k)
    for (name, st), ks in seen.items():
        probs = sorted(
            {
                r.num_problems
                for e in entries
                for ev in e.evals.values()
                if (r := _set_result(ev, name, st)) and r.num_problems is not None
            }
        )
        line = (
            f"{name}: n={st.n}, K={','.join(map(str, sorted(ks)))}, temperature={st.temperature}, "
            f"top_p={st.top_p}, "
            f"max_new_tokens={st.max_new_tokens}, seed={st.seed}"
        )
        if probs:
            line += f", problems={'/'.join(map(str, probs))}"
        notes.append(line)
    have = [(r.label, e) for e, r in zip(entries, rows) if e.evals]
    line = _describe("seeds", {label: ", ".join(map(str, sorted(e.evals))) for label, e in have})
    if line:
        notes.append(line)
    for title, attr in (
        ("backend", "backend"),
        ("model", "model"),
        ("training steps", "train_steps"),
        ("updates per rollout batch", "updates_per_batch"),
    ):
        line = _describe(title, {label: _describe_values(e, attr) for label, e in have})
        if line:
            notes.append(line)
    engines = {
        label: " / ".join(dict.fromkeys(e.engines[s] for s in sorted(e.engines))) or None
        for label, e in have
    }
    line = _describe("training engine", engines)
    if line:
        notes.append(line)
    return notes


def _describe_values(e: Entry, attr: str) -> object:
    """The entry's value of ``attr``: one value when its seeds agree, else "a / b" (seed order)."""
    raw = [
        (seed, v) for seed, ev in sorted(e.evals.items()) if (v := getattr(ev, attr)) is not None
    ]
    vals = list(dict.fromkeys(v for _, v in raw))
    if len(vals) > 1:
        vals = list(dict.fromkeys(_seedless(v, seed) for seed, v in raw))
    if not vals:
        return None
    return vals[0] if len(vals) == 1 else " / ".join(map(str, vals))


def _seedless(value: object, seed: int) -> object:
    """A policy path with its seed level written generically (data/runs/none/seed<k>/policy), so
    the seeds of one run share one "model" note."""
    if isinstance(value, str):
        return value.replace(f"/{Paths.seed_name(seed)}/", f"/{Paths.seed_name('<k>')}/")
    return value


def _row_cells(
    e: Entry,
    base: Entry | None,
    columns: Sequence[Column],
    boot: Resampling,
    best: Sequence[float | None],
    base_vals: Sequence[float | None] | None,
) -> list[Cell]:
    cells = []
    for j, c in enumerate(columns):
        per_seed = _per_seed(e, c)
        if not per_seed:
            cells.append(Cell(None, None, False))
            continue
        value = _pct(sum(per_seed.values()) / len(per_seed))
        interval, kind = _value_interval(e, c, per_seed, boot)
        delta, comparison = None, {}
        if base is not None and base_vals is not None and base_vals[j] is not None:
            delta = round(value - base_vals[j], 2) + 0.0
            comparison = _comparison(e, base, c, per_seed, _per_seed(base, c), boot)
        cells.append(
            Cell(
                value,
                delta,
                best[j] is not None and value == best[j],
                {s: _pct(v) for s, v in per_seed.items()},
                interval,
                kind,
                **comparison,
            )
        )
    return cells


def build_table(
    entries: Sequence[Entry],
    *,
    set_order: Sequence[str],
    ks: Sequence[int] | None,
    baseline: str | Sequence[str],
    bootstrap: Resampling,
    primary: Sequence[tuple[str, str]] = (),
) -> Table:
    """Rows in the order given; ``ks`` None means the Pass@n column only (besides Avg@n).

    primary: the declared primary endpoints, (set name, metric) with metric "avg@K" / "pass@K"
    ("@n": the set's n); the mark is then set on those cells only (Holm within them).

    baseline: run name whose row (within each group) the deltas are taken against, or several
    names (runs of the baseline method with different per-run train values, report/pairing.py):
    each group's row of any of them is that group's baseline.
    """
    columns, col_notes = _columns(entries, set_order, ks)
    means = [
        [_pct(sum(v.values()) / len(v)) if (v := _per_seed(e, c)) else None for c in columns]
        for e in entries
    ]
    best = []
    for j in range(len(columns)):
        col = [v[j] for v in means if v[j] is not None]
        best.append(max(col) if len(col) >= 2 else None)
    base_runs = [baseline] if isinstance(baseline, str) else list(baseline)
    bases = {e.group: (e, v) for e, v in zip(entries, means) if e.run in base_runs and e.evals}
    labels = unique_labels([(e.run, e.display, e.group) for e in entries])
    rows = []
    for e, label in zip(entries, labels):
        is_base = e.run in base_runs
        base, base_vals = bases.get(e.group, (None, None)) if not is_base else (None, None)
        cells = _row_cells(e, base, columns, bootstrap, best, base_vals)
        rows.append(
            Row(
                e.run,
                f"{e.group} / {label}" if e.group else label,
                e.group,
                is_base,
                tuple(cells),
                tuple(sorted(e.evals)),
                base.run if base is not None else "",
            )
        )
    rows = _adjust(rows, columns, primary)
    notes = (
        _notes(entries, rows, columns)
        + col_notes
        + (_unpaired_notes(entries, bases, base_runs) if columns else [])
    )
    notes += _seed_notes(rows, {r.run: r for r in rows})
    absent = [
        f"{name} {metric}"
        for name, metric in primary
        if not any(_matches(c, [(name, metric)]) for c in columns)
    ]
    if absent:
        notes.append(f"primary endpoints without a column in this table: {', '.join(absent)}")
    return Table(
        tuple(columns), tuple(rows), ", ".join(base_runs), tuple(notes), bootstrap, tuple(primary)
    )


def _seed_notes(rows: Sequence[Row], by_run: Mapping[str, Row]) -> list[str]:
    """Rows whose seeds do not pair with their baseline's: why they carry no mark."""
    notes = []
    for r in rows:
        base = by_run.get(r.baseline_run)
        if base is None or not r.seeds or not base.seeds:
            continue
        if r.seeds != base.seeds and (len(r.seeds) > 1 or len(base.seeds) > 1):
            notes.append(
                f"{r.label}: seeds {', '.join(map(str, r.seeds))} against {base.label}'s "
                f"{', '.join(map(str, base.seeds))}: no test and no mark (the mark needs the same "
                ">= 2 seeds on both sides, paired by seed)"
            )
    return notes


def _unpaired_notes(
    entries: Sequence[Entry], bases: Mapping[str, object], base_runs: Sequence[str]
) -> list[str]:
    """Groups without a baseline row: one whose baseline run has no results, or (per-run train
    values) one that holds no baseline run at all."""
    groups = list(dict.fromkeys(e.group for e in entries))
    missing = [g for g in groups if g not in bases]
    absent = [
        g for g in missing if g and not any(e.group == g and e.run in base_runs for e in entries)
    ]
    notes = [
        f"no baseline run in group {g} (a run of the baseline method with the same per-run train "
        f"values): "
        "no deltas there"
        for g in absent
    ]
    silent = [g for g in missing if g not in absent]
    if silent:
        where = "" if groups == [""] else " in " + ", ".join(silent)
        names = " or ".join(repr(b) for b in base_runs)
        notes.append(f"baseline run {names} has no eval metrics{where}: no deltas")
    return notes


def unique_labels(items: Sequence[tuple[str, str, str]]) -> list[str]:
    """Display names for (run, display, group) items; runs sharing a display name within a
    group get their run name appended, e.g. "GRPO+Sign intervention [pos_s_gt_n]"."""
    return [
        f"{d} [{r}]" if sum(x[1] == d and x[2] == g for x in items) > 1 else d for r, d, g in items
    ]
