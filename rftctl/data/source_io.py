"""What every data source shares: the load request and result records, the source registry,
the row readers (jsonl, parquet, csv, the hub), path resolution, option checks and the mapping of
rows to Problems with malformed-row handling.

The sources themselves register in rftctl/data/sources.py (the built-in sets) and
rftctl/data/table_source.py (your own tables); import SOURCES from rftctl.data.sources, which
loads both.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from rftctl.data.problems import Problem
from rftctl.errors import ConfigError, DataError
from rftctl.registry import Registry

TABLE = "table"  # the bring-your-own-data source (rftctl/data/table_source.py)
HUB = "hub"
FILE_SUFFIXES = (".jsonl", ".parquet", ".csv")
HUB_INSTALL = "pip install 'rftctl[hub]'  (or: pip install datasets huggingface_hub)"


class Malformed(NamedTuple):
    file: str
    row: int
    reason: str


@dataclass(frozen=True)
class LoadRequest:
    name: str  # problem-set name (spec.name)
    key: str  # config key for messages, e.g. "prepare.train[0]"
    path: str | None  # spec.path: None (default file), "hub", or a path
    options: dict[str, Any]
    data_root: Path
    seed: int
    on_malformed: str  # "skip" | "fail"


@dataclass(frozen=True)
class Loaded:
    problems: list[Problem]
    malformed: list[Malformed]
    origin: str  # resolved file, hub id, or "procedural"
    rows_read: int


@dataclass(frozen=True)
class SourceInfo:
    name: str
    summary: str
    options: tuple[str, ...]  # allowed option keys
    load: Callable[[LoadRequest], Loaded] | None  # None: derived by the prepare stage
    default_path: str | None = None
    hub: tuple[str, str | None, str] | None = None  # (dataset id, config, split)
    check: Callable[[LoadRequest], None] | None = None  # option checks without loading (validate)


SOURCES: Registry[SourceInfo] = Registry("data source")


class BadRow(Exception):
    """A malformed row (message = reason)."""


def check_options(info: SourceInfo, req: LoadRequest) -> None:
    bad = sorted(set(req.options) - set(info.options))
    if bad:
        allowed = ", ".join(info.options) or "none"
        raise ConfigError(
            f"{req.key}.options: unknown option(s) {bad} for source {info.name!r}; allowed: "
            f"{allowed}"
        )


# ---- answers and text -----------------------------------------------------------------------
INTLIKE = re.compile(r"^[-+]?\d+(?:\.0*)?$")


def int_answer(value: Any) -> str:
    """'073' -> '73', 27.0 -> '27', '1,000' -> '1000'; raises BadRow when not an integer."""
    s = str(value).strip().replace(",", "")
    if not INTLIKE.match(s):
        raise BadRow(f"answer {str(value)[:40]!r} is not an integer")
    return str(int(s.split(".")[0]))


def clean_text(s: str) -> str:
    # math-ai/aime25 and DAPO-Math-17k: a JSON "\f" escape turned the "\f" of "\frac" into a
    # form feed.
    return s.replace("\x0c", "\\f").strip()


def need(row: dict, *keys: str) -> Any:
    for k in keys:
        v = row.get(k)
        if v is not None and (not isinstance(v, str) or v.strip()):
            return v
    raise BadRow(f"missing or empty {'/'.join(keys)}")


# ---- readers --------------------------------------------------------------------------------
def _rows_jsonl(path: Path) -> Iterator[tuple[int, dict | None, str]]:
    with path.open(encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                d = json.loads(line)
                yield (i, d, "") if isinstance(d, dict) else (i, None, "row is not a JSON object")
            except ValueError as e:
                yield i, None, f"invalid JSON ({e.msg})"


def _rows_parquet(path: Path) -> Iterator[tuple[int, dict | None, str]]:
    import pandas as pd

    try:
        df = pd.read_parquet(path)
    except Exception as e:  # noqa: BLE001 (pyarrow raises several types for a corrupt file)
        raise DataError(
            f"{path}: cannot read parquet ({type(e).__name__}: {e}); replace the file"
        ) from None
    for i, rec in enumerate(df.to_dict("records"), 1):
        yield i, rec, ""


def _rows_csv(path: Path) -> Iterator[tuple[int, dict | None, str]]:
    """Row by row, every cell as text ("073" and "NA" stay what the file says): a row with more
    fields than the header is one malformed row (skipped under on_malformed: skip), not a failed
    file; a short row's missing cells are empty. Rows count from 1 after the header, blank lines
    not counted."""

    def unreadable(e: Exception) -> DataError:
        return DataError(
            f"{path}: cannot read csv ({type(e).__name__}: {e}); fix or replace the file"
        )

    with path.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f)
        try:
            header = next(reader, None)
            if header is None:
                return
            i = 0
            for rec in reader:
                if not rec or not any(x.strip() for x in rec):
                    continue
                i += 1
                if len(rec) > len(header):
                    yield i, None, f"{len(rec)} fields, the header has {len(header)}"
                    continue
                yield i, dict(zip(header, rec + [""] * (len(header) - len(rec)))), ""
        except (csv.Error, UnicodeDecodeError) as e:
            raise unreadable(e) from None


def _rows_hub(hub: tuple[str, str | None, str], key: str) -> Iterator[tuple[int, dict | None, str]]:
    try:
        import datasets
    except ImportError:
        raise ConfigError(f"{key}.path: 'hub' needs the datasets package; {HUB_INSTALL}") from None
    try:
        ds = datasets.load_dataset(hub[0], hub[1], split=hub[2])
    except Exception as e:  # noqa: BLE001 (offline, no such dataset, network: several types)
        off = os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on")
        why = (
            "the hub is off (HF_HUB_OFFLINE=1, rftctl's default) and the dataset is not in the "
            "local cache; rerun with HF_HUB_OFFLINE=0 and network"
            if off
            else f"{type(e).__name__}: {' '.join(str(e).split())[:200]}; check the network and "
            "the dataset name"
        )
        raise DataError(
            f"{key}.path: hub: cannot load {hub[0]} ({why}); or drop `path: hub` and point "
            "prepare.data_root at your copy (`-S prepare.data_root=DIR`)"
        ) from None
    for i, rec in enumerate(ds, 1):
        yield i, dict(rec), ""


def check_request(info: SourceInfo, req: LoadRequest) -> None:
    """Every check a source makes before reading a row (what `rftctl validate` runs)."""
    if info.check is not None:
        info.check(req)
    else:
        check_options(info, req)
    if req.path == HUB and (
        info.default_path or info.hub or info.name == TABLE
    ):  # file-backed sources
        if info.hub is None and info.name != TABLE:
            raise ConfigError(
                f"{req.key}.path: source {info.name!r} has no hub dataset; give a local path"
            )
        if importlib.util.find_spec("datasets") is None:
            raise ConfigError(f"{req.key}.path: 'hub' needs the datasets package; {HUB_INSTALL}")


def resolve_path(info: SourceInfo, req: LoadRequest) -> Path:
    raw = req.path if req.path is not None else info.default_path
    if raw is None:
        raise ConfigError(f"{req.key}.path: source {info.name!r} has no default file; set path")
    p = Path(raw)
    if not p.is_absolute():
        p = req.data_root / p
    if p.is_dir():
        files = sorted(x for x in p.iterdir() if x.suffix in FILE_SUFFIXES)
        want = p / Path(info.default_path or "").name
        if want.is_file():
            p = want
        elif len(files) == 1:
            p = files[0]
        else:
            raise DataError(
                f"{p}: directory holds {len(files)} jsonl/parquet/csv files for {req.key}; set "
                f"path to one file"
            )
    if not p.is_file():
        where = (
            f"point prepare.data_root at the folder holding your copy of {info.default_path} "
            "(`-S prepare.data_root=DIR`), "
            if req.path is None and info.default_path
            else "copy the file there, set the set's path, "
        )
        hub = (
            f"or set `path: hub` on {req.key} (downloads {info.hub[0]}: {HUB_INSTALL}, network, "
            "HF_HUB_OFFLINE=0)"
            if info.hub
            else "or use path: hub"
        )
        raise DataError(f"{p}: not found for {req.key} (source {info.name}); {where}{hub}")
    return p


def open_rows(
    info: SourceInfo, req: LoadRequest
) -> tuple[str, Iterator[tuple[int, dict | None, str]]]:
    """(origin, rows): the resolved file or hub id, and its (row number, row or None, error)
    triples."""
    if req.path == HUB:
        if info.hub is None:
            raise ConfigError(
                f"{req.key}.path: source {info.name!r} has no hub dataset; give a local path"
            )
        return f"hub:{info.hub[0]}", _rows_hub(info.hub, req.key)
    path = resolve_path(info, req)
    readers = {".parquet": _rows_parquet, ".csv": _rows_csv}
    return str(path), readers.get(path.suffix, _rows_jsonl)(path)


def load_rows(
    info: SourceInfo, req: LoadRequest, row_fn: Callable[[dict, int, dict], tuple]
) -> Loaded:
    """Read rows, map each through ``row_fn(row, row_number, options) -> (id, question, answer,
    meta)``."""
    check_options(info, req)
    origin, rows = open_rows(info, req)
    return map_rows(info, req, origin, rows, row_fn)


def map_rows(info: SourceInfo, req: LoadRequest, origin: str, rows, row_fn) -> Loaded:
    """Problems from rows; malformed rows fail or are skipped per ``req.on_malformed``."""
    problems, bad, n = [], [], 0
    for i, row, err in rows:
        n += 1
        try:
            if row is None:
                raise BadRow(err)
            pid, q, a, meta = row_fn(row, i, req.options)
            problems.append(Problem(pid, q, a, info.name, meta))
        except BadRow as e:
            if req.on_malformed == "fail":
                raise DataError(
                    f"{origin} row {i}: {e} ({req.key}); fix the row or set prepare.on_malformed: "
                    f"skip"
                ) from None
            bad.append(Malformed(origin, i, str(e)))
    return Loaded(problems, bad, origin, n)
