"""The `table` source: bring your own problems, a jsonl / parquet / csv file or a hub dataset with
a column mapping (options: question, answer; id; answer_after or answer_boxed).

`rftctl validate` (check_request -> _check_table) already reads the file's column names, cheaply
(a parquet schema, a csv header, the keys of the first jsonl rows), so a wrong column name is
reported before `rftctl prepare` runs, with the columns the file has.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from rftctl.data.answers import last_box
from rftctl.data.source_io import (
    FILE_SUFFIXES,
    HUB,
    INTLIKE,
    SOURCES,
    TABLE,
    BadRow,
    Loaded,
    LoadRequest,
    SourceInfo,
    check_options,
    clean_text,
    int_answer,
    map_rows,
    need,
    open_rows,
    resolve_path,
)
from rftctl.errors import ConfigError, DataError

COLUMN_SAMPLE_ROWS = 1000  # jsonl rows whose keys `validate` reads (prepare reads every row)
_TABLE_OPTIONS = (
    "question",
    "answer",
    "id",
    "answer_after",
    "answer_boxed",
    "dataset",
    "config",
    "split",
)
_THOUSANDS = re.compile(r"^[-+]?\d{1,3}(?:,\d{3})+$")


def _check_table_options(req: LoadRequest) -> None:
    o = req.options
    check_options(SOURCES.get(TABLE), req)
    for k in ("question", "answer"):
        if not isinstance(o.get(k), str) or not o[k]:
            raise ConfigError(
                f"{req.key}.options.{k}: required for source table: the column holding the {k} "
                f"(e.g. {k}: {'problem' if k == 'question' else 'solution'})"
            )
    for k in ("id", "answer_after", "dataset", "config", "split"):
        if k in o and (not isinstance(o[k], str) or not o[k]):
            raise ConfigError(f"{req.key}.options.{k}: must be a non-empty string, got {o[k]!r}")
    if "answer_boxed" in o and not isinstance(o["answer_boxed"], bool):
        raise ConfigError(
            f"{req.key}.options.answer_boxed: must be true or false, got {o['answer_boxed']!r}"
        )
    if o.get("answer_boxed") and "answer_after" in o:
        raise ConfigError(f"{req.key}.options: give answer_after or answer_boxed, not both")
    if req.path is None:
        raise ConfigError(
            f"{req.key}.path: source table needs path: a jsonl / parquet / csv file, or hub "
            "(with options.dataset)"
        )
    hub = req.path == HUB
    if hub and "dataset" not in o:
        raise ConfigError(
            f"{req.key}.options.dataset: required with path: hub (a dataset id, e.g. openai/gsm8k)"
        )
    for k in ("dataset", "config", "split"):
        if not hub and k in o:
            raise ConfigError(
                f"{req.key}.options.{k}: only for path: hub; remove it for a local file"
            )
    if not hub and Path(req.path).suffix not in FILE_SUFFIXES:
        raise ConfigError(
            f"{req.key}.path: {req.path!r} is not a {'/'.join(FILE_SUFFIXES)} file; "
            "convert it or use path: hub"
        )


def _check_table(req: LoadRequest) -> None:
    """What `rftctl validate` checks: the options, then (a local file) the mapped columns."""
    _check_table_options(req)
    if req.path != HUB:
        _check_columns(req)


def _table_answer(value: Any, opts: dict) -> str:
    """The gold answer from the answer column: after the last ``answer_after`` marker or inside the
    last \\boxed{}; integers lose padding, thousands commas and a zero fraction ("1,000" -> 1000),
    anything else stays as written for the grader (math-verify)."""

    text = str(value)
    if opts.get("answer_after"):
        if opts["answer_after"] not in text:
            raise BadRow(f"answer has no {opts['answer_after']!r} final-answer marker")
        text = text.rsplit(opts["answer_after"], 1)[1]
    elif opts.get("answer_boxed"):
        boxed = last_box(text)
        if not boxed:
            raise BadRow("answer has no \\boxed{} final answer")
        text = boxed
    text = text.strip()
    if not text:
        raise BadRow("empty answer")
    return int_answer(text) if INTLIKE.match(text) or _THOUSANDS.match(text) else text


def _table_row(name: str):
    def fn(row, i, o):
        q = clean_text(str(need(row, o["question"])))
        if not q:
            raise BadRow("empty question")
        pid = f"{name}-{need(row, o['id']) if o.get('id') else i}"
        return pid, q, _table_answer(need(row, o["answer"]), o), {}

    return fn


def _load_table(req: LoadRequest) -> Loaded:
    _check_table_options(req)  # the columns are checked below against every row, not a sample
    o = req.options
    hub = (o["dataset"], o.get("config"), o.get("split", "train")) if req.path == HUB else None
    info = SourceInfo(
        TABLE, SOURCES.get(TABLE).summary, _TABLE_OPTIONS, _load_table, None, hub, _check_table
    )
    origin, rows = open_rows(info, req)
    rows = list(rows)
    have = list(dict.fromkeys(k for _, r, _ in rows if r is not None for k in r))
    for k in ("question", "answer", "id"):
        col = o.get(k)
        if col is not None and col not in have:
            raise DataError(
                f"{origin}: no column {col!r} ({req.key}.options.{k}); the file has columns: "
                f"{', '.join(map(str, have)) or 'none'}; set options.{k} to one of them"
            )
    return map_rows(info, req, origin, iter(rows), _table_row(req.name))


def table_columns(path: Path) -> list[str]:
    """Column names without reading the whole file: the parquet schema, the csv header, or the
    keys of the first COLUMN_SAMPLE_ROWS JSON objects of a jsonl file."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            return list(pq.read_schema(path).names)
        except Exception as e:  # noqa: BLE001 (pyarrow raises several types for a corrupt file)
            raise DataError(
                f"{path}: cannot read parquet ({type(e).__name__}: {e}); replace the file"
            ) from None
    if path.suffix == ".csv":
        import pandas as pd

        try:
            return [str(c) for c in pd.read_csv(path, nrows=0).columns]
        except Exception as e:  # noqa: BLE001 (pandas raises several types for a malformed file)
            raise DataError(
                f"{path}: cannot read csv ({type(e).__name__}: {e}); fix or replace the file"
            ) from None
    cols: dict[str, None] = {}
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f):
            if n >= COLUMN_SAMPLE_ROWS:
                break
            try:
                row = json.loads(line) if line.strip() else None
            except ValueError:
                continue  # a malformed row: prepare reports it (skipped or fatal per on_malformed)
            if isinstance(row, dict):
                cols.update(dict.fromkeys(row))
    return list(cols)


def _check_columns(req: LoadRequest) -> None:
    """The local file exists and has the mapped columns (validate time; DataError, exit 3, the
    same lines prepare gives). ``req.data_root`` is already resolved against --root."""
    path = resolve_path(SOURCES.get(TABLE), req)
    have = table_columns(path)
    for k in ("question", "answer", "id"):
        col = req.options.get(k)
        if col is not None and col not in have:
            raise DataError(
                f"{path}: no column {col!r} ({req.key}.options.{k}); the file has columns: "
                f"{', '.join(map(str, have)) or 'none'}; set options.{k} to one of them"
            )


# registered by rftctl/data/sources.py, after the built-in sources
INFO = SourceInfo(
    TABLE,
    "your own problems: a jsonl / parquet / csv file (path) or hub dataset (path: hub; "
    "options: dataset, "
    "config, split) with a column mapping (options: question, answer; id; answer_after e.g. "
    "'####', or answer_boxed)",
    _TABLE_OPTIONS,
    _load_table,
    check=_check_table,
)
