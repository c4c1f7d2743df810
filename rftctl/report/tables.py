"""The comparison table: rows = runs, columns = data set x sampling setting x K x {Avg, Pass}.

Values are percent with 2 decimals. Every metric is higher-is-better, so the maximum of each
column is bold, ties (equal as displayed) all bold. Non-baseline rows show their difference from
the baseline run of their group, computed from the displayed values: "19.69 (+2.81)".

Results obtained under different sampling settings (n, temperature, top_p, max_new_tokens, seed)
for the same data set are never mixed in one column: each setting gets its own columns, labelled
with the fields that differ ("aime24 (T=0.7) Avg@1" next to "aime24 (T=1.0) Avg@1").
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from rftctl.report.inputs import EvalResult, SetResult, Setting

_TAG_NAMES = {
    "n": "n",
    "temperature": "T",
    "top_p": "top_p",
    "max_new_tokens": "max_new_tokens",
    "seed": "seed",
}
ABSENT = "—"


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
    """One row's input: a run's eval results (None when absent) inside an optional group."""

    run: str
    display: str
    eval: EvalResult | None
    group: str = ""  # e.g. a DVC experiment name; deltas are taken within a group


@dataclass(frozen=True)
class Cell:
    value: float | None  # percent, rounded to 2 decimals
    delta: float | None  # value - baseline value (both as displayed), None for the baseline
    best: bool


@dataclass(frozen=True)
class Row:
    run: str
    label: str
    group: str
    is_baseline: bool
    cells: tuple[Cell, ...]


@dataclass(frozen=True)
class Table:
    columns: tuple[Column, ...]
    rows: tuple[Row, ...]
    baseline: str
    notes: tuple[str, ...]


def _pct(x: float) -> float:
    return round(100.0 * x, 2) + 0.0  # + 0.0 turns -0.0 into 0.0


def _tags(settings: Sequence[Setting]) -> dict[Setting, str]:
    if len(settings) < 2:
        return {s: "" for s in settings}
    varying = [f for f in Setting._fields if len({getattr(s, f) for s in settings}) > 1]
    return {s: ", ".join(f"{_TAG_NAMES[f]}={getattr(s, f)}" for f in varying) for s in settings}


def _set_result(entry: Entry, dataset: str, setting: Setting) -> SetResult | None:
    if entry.eval is None:
        return None
    for s in entry.eval.sets:
        if s.name == dataset and s.setting == setting:
            return s
    return None


def _columns(
    entries: Sequence[Entry], set_order: Sequence[str], ks: Sequence[int] | None
) -> tuple[list[Column], list[str]]:
    by_set: dict[str, set[Setting]] = {}
    for e in entries:
        for s in e.eval.sets if e.eval else ():
            by_set.setdefault(s.name, set()).add(s.setting)
    names = [n for n in set_order if n in by_set] + sorted(n for n in by_set if n not in set_order)
    cols, notes = [], []
    for name in names:
        settings = sorted(by_set[name])
        tags = _tags(settings)
        for st in settings:
            wanted = sorted(set(ks)) if ks else sorted({1, st.n})
            results = [r for e in entries if (r := _set_result(e, name, st))]
            label = f"{name} ({tags[st]})" if tags[st] else name
            too_big = [k for k in wanted if k > st.n]
            absent = [
                k
                for k in wanted
                if k <= st.n
                and not any(f"avg@{k}" in r.values or f"pass@{k}" in r.values for r in results)
            ]
            if too_big:
                notes.append(f"{label}: K={','.join(map(str, too_big))} skipped (n={st.n})")
            if absent:
                notes.append(f"{label}: K={','.join(map(str, absent))} not in the metrics files")
            for k in wanted:
                if k in too_big or k in absent:
                    continue
                cols += [Column(name, st, tags[st], kind, k) for kind in ("avg", "pass")]
    return cols, notes


def _values(entry: Entry, columns: Sequence[Column]) -> list[float | None]:
    out = []
    for c in columns:
        r = _set_result(entry, c.dataset, c.setting)
        v = r.values.get(c.metric) if r else None
        out.append(None if v is None else _pct(v))
    return out


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
                if (r := _set_result(e, name, st)) and r.num_problems is not None
            }
        )
        line = (
            f"{name}: n={st.n}, K={','.join(map(str, ks))}, temperature={st.temperature}, top_p={st.top_p}, "
            f"max_new_tokens={st.max_new_tokens}, seed={st.seed}"
        )
        if probs:
            line += f", problems={'/'.join(map(str, probs))}"
        notes.append(line)
    have = [(r.label, e) for e, r in zip(entries, rows) if e.eval is not None]
    for title, attr in (
        ("backend", "backend"),
        ("model", "model"),
        ("training steps", "train_steps"),
        ("updates per rollout batch", "updates_per_batch"),
    ):
        line = _describe(title, {label: getattr(e.eval, attr) for label, e in have})
        if line:
            notes.append(line)
    return notes


def build_table(
    entries: Sequence[Entry], *, set_order: Sequence[str], ks: Sequence[int] | None, baseline: str
) -> Table:
    """Rows in the order given; ``ks`` None means K = 1 and n of each setting.

    baseline: run name whose row (within each group) the deltas are taken against.
    """
    columns, col_notes = _columns(entries, set_order, ks)
    values = [_values(e, columns) for e in entries]
    best = []
    for j in range(len(columns)):
        col = [v[j] for v in values if v[j] is not None]
        best.append(max(col) if len(col) >= 2 else None)
    base_vals = {
        e.group: v for e, v in zip(entries, values) if e.run == baseline and e.eval is not None
    }
    labels = unique_labels([(e.run, e.display, e.group) for e in entries])
    rows = []
    for e, vals, label in zip(entries, values, labels):
        base = base_vals.get(e.group)
        is_base = e.run == baseline
        cells = []
        for j, v in enumerate(vals):
            delta = None
            if v is not None and base is not None and not is_base and base[j] is not None:
                delta = round(v - base[j], 2) + 0.0
            cells.append(Cell(v, delta, v is not None and best[j] is not None and v == best[j]))
        rows.append(
            Row(e.run, f"{e.group} / {label}" if e.group else label, e.group, is_base, tuple(cells))
        )
    notes = _notes(entries, rows, columns) + col_notes
    groups = list(dict.fromkeys(e.group for e in entries))
    if columns and any(g not in base_vals for g in groups):
        where = (
            "" if groups == [""] else " in " + ", ".join(g for g in groups if g not in base_vals)
        )
        notes.append(f"baseline run {baseline!r} has no eval metrics{where}: no deltas")
    return Table(tuple(columns), tuple(rows), baseline, tuple(notes))


# ------------------------------------------------------------------------------------------
# rendering
# ------------------------------------------------------------------------------------------
def format_cell(cell: Cell) -> str:
    if cell.value is None:
        return ABSENT
    text = f"**{cell.value:.2f}**" if cell.best else f"{cell.value:.2f}"
    if cell.delta is not None:
        text += f" ({cell.delta:+.2f})"
    return text


def unique_labels(items: Sequence[tuple[str, str, str]]) -> list[str]:
    """Display names for (run, display, group) items; runs sharing a display name within a
    group get their run name appended, e.g. "GRPO+Sign intervention [pos_s_gt_n]"."""
    return [f"{d} [{r}]" if sum(x[1] == d and x[2] == g for x in items) > 1 else d for r, d, g in items]


def _baseline_label(table: Table) -> str:
    label = next((r.label.split(" / ", 1)[-1] for r in table.rows if r.is_baseline), table.baseline)
    return (
        f"{label} (run `{table.baseline}`)"
        if label != table.baseline
        else f"run `{table.baseline}`"
    )


def to_markdown(table: Table, *, missing: str = "") -> str:
    """A GitHub markdown table followed by its footnote lines (and the missing-runs line)."""
    blocks = []
    if table.columns:
        lines = [
            "| Method | " + " | ".join(c.header for c in table.columns) + " |",
            "|---|" + "---:|" * len(table.columns),
        ]
        lines += [
            f"| {r.label} | " + " | ".join(format_cell(c) for c in r.cells) + " |"
            for r in table.rows
        ]
        blocks.append("\n".join(lines))
        blocks.append(
            f"Values in percent; best per column in **bold**; (+x.xx) = difference from {_baseline_label(table)}."
        )
    else:
        blocks.append("No evaluation results found.")
    if table.notes:
        blocks.append("\n".join(f"- {n}" for n in table.notes))
    if missing:
        blocks.append(missing)
    return "\n\n".join(blocks) + "\n"


def to_csv(table: Table) -> str:
    """One row per run: run, label, then for each column its value and its delta (percent)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(
        ["run", "group", "label"]
        + [h for c in table.columns for h in (c.header, f"{c.header} delta")]
    )
    for r in table.rows:
        vals = []
        for c in r.cells:
            vals += [
                "" if c.value is None else f"{c.value:.2f}",
                "" if c.delta is None else f"{c.delta:+.2f}",
            ]
        w.writerow([r.run, r.group, r.label] + vals)
    return buf.getvalue()


def to_records(table: Table) -> list[dict]:
    """JSON-friendly rows for summary.json: {run, group, label, values: {header: percent}, deltas, best}."""
    out = []
    for r in table.rows:
        out.append(
            {
                "run": r.run,
                "group": r.group,
                "label": r.label,
                "values": {c.header: x.value for c, x in zip(table.columns, r.cells)},
                "deltas": {
                    c.header: x.delta for c, x in zip(table.columns, r.cells) if x.delta is not None
                },
                "best": [c.header for c, x in zip(table.columns, r.cells) if x.best],
            }
        )
    return out
