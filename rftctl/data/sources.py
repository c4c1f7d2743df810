"""Data sources: registered loaders that turn a local file (or the HF hub) into Problems.

Each entry of SOURCES is a :class:`SourceInfo`; ``info.load(LoadRequest)`` returns a
:class:`Loaded`. Local paths resolve against ``prepare.data_root`` (each source's file name and its
Hugging Face data set are registered below; ``rftctl ls sources``); ``path: hub`` downloads with
``datasets`` (imported lazily; the `hub` extra). Malformed rows (missing/empty question or answer,
invalid JSON, a non-numeric answer where the set has integer answers) raise DataError naming file
and row when ``on_malformed == "fail"``, else are skipped and returned as ``Malformed`` records. Row
numbers are 1-based (jsonl: line number; parquet / hub: row position).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from rftctl.data import procedural
from rftctl.data.problems import Problem
from rftctl.errors import ConfigError, DataError
from rftctl.registry import Registry

HUB = "hub"
FILE_SUFFIXES = (".jsonl", ".parquet", ".csv")
HUB_INSTALL = "pip install 'rftctl[hub]'  (or: pip install datasets huggingface_hub)"
# DAPO's original template (BytedTsinghua-SIA/DAPO-Math-17k); open-r1's "Processed" copy already
# removed it, but a raw copy may still carry it.
DAPO_PREFIX = (
    "Solve the following math problem step by step. The last line of your response should be "
    "of the form Answer: $Answer (without quotes) where $Answer is the answer to the problem.\n\n"
)
DAPO_SUFFIX = '\n\nRemember to put your answer on its own line after "Answer:".'
QWQ_SUFFIX = "\nPlease reason step by step, and put your final answer within \\boxed{}."


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


class _Bad(Exception):
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
_INTLIKE = re.compile(r"^[-+]?\d+(?:\.0*)?$")


def int_answer(value: Any) -> str:
    """'073' -> '73', 27.0 -> '27', '1,000' -> '1000'; raises _Bad when not an integer."""
    s = str(value).strip().replace(",", "")
    if not _INTLIKE.match(s):
        raise _Bad(f"answer {str(value)[:40]!r} is not an integer")
    return str(int(s.split(".")[0]))


def clean_text(s: str) -> str:
    # math-ai/aime25 and DAPO-Math-17k: a JSON "\f" escape turned the "\f" of "\frac" into a
    # form feed.
    return s.replace("\x0c", "\\f").strip()


def _need(row: dict, *keys: str) -> Any:
    for k in keys:
        v = row.get(k)
        if v is not None and (not isinstance(v, str) or v.strip()):
            return v
    raise _Bad(f"missing or empty {'/'.join(keys)}")


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
    import pandas as pd

    try:  # every cell as text: "073" and "NA" stay what the file says
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except Exception as e:  # noqa: BLE001 (pandas raises several types for a malformed file)
        raise DataError(
            f"{path}: cannot read csv ({type(e).__name__}: {e}); fix or replace the file"
        ) from None
    for i, rec in enumerate(df.to_dict("records"), 1):
        yield i, rec, ""


def _rows_hub(hub: tuple[str, str | None, str], key: str) -> Iterator[tuple[int, dict | None, str]]:
    try:
        import datasets
    except ImportError:
        raise ConfigError(f"{key}.path: 'hub' needs the datasets package; {HUB_INSTALL}") from None
    ds = datasets.load_dataset(hub[0], hub[1], split=hub[2])
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
        import importlib.util

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
        raise DataError(
            f"{p}: not found for {req.key} (source {info.name}); copy the file there "
            f"(see rftctl ls sources), set prepare.data_root or path, or use path: hub"
        )
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
                raise _Bad(err)
            pid, q, a, meta = row_fn(row, i, req.options)
            problems.append(Problem(pid, q, a, info.name, meta))
        except _Bad as e:
            if req.on_malformed == "fail":
                raise DataError(
                    f"{origin} row {i}: {e} ({req.key}); fix the row or set prepare.on_malformed: "
                    f"skip"
                ) from None
            bad.append(Malformed(origin, i, str(e)))
    return Loaded(problems, bad, origin, n)


def _file_source(name, summary, default_path, hub, row_fn, options=()):
    info_box: list[SourceInfo] = []

    def load(req: LoadRequest) -> Loaded:
        return load_rows(info_box[0], req, row_fn)

    info = SourceInfo(
        name,
        summary,
        tuple(options),
        load,
        default_path,
        hub,
        check=lambda req: check_options(info_box[0], req),
    )
    info_box.append(info)
    SOURCES.register(name, info, summary=summary)


# ---- row functions --------------------------------------------------------------------------
def _question(row: dict) -> str:
    q = clean_text(str(_need(row, "problem", "question", "prompt")))
    q = q.removesuffix(QWQ_SUFFIX.strip()).strip()  # QwQ copies append the boxed instruction
    if not q:
        raise _Bad("empty question")
    return q


def _aime(prefix):
    def fn(row, i, opts):
        rid = row.get("id")
        return (
            f"{prefix}-{rid if rid is not None else i}",
            _question(row),
            int_answer(_need(row, "answer")),
            {k: str(row[k]) for k in ("url", "year") if row.get(k) is not None},
        )

    return fn


def _math500(row, i, opts):
    a = str(_need(row, "answer")).strip()
    meta = {k: row[k] for k in ("subject", "level") if row.get(k) is not None}
    return f"math500-{row.get('unique_id') or i}", _question(row), a, meta


def _gsm8k(row, i, opts):
    full = str(_need(row, "answer"))
    if "####" not in full:
        raise _Bad("answer has no '####' final-answer marker")
    return f"gsm8k-{i}", _question(row), int_answer(full.split("####")[-1]), {}


def _dapo(row, i, opts):
    prompt = _need(row, "prompt")
    if isinstance(prompt, str):
        q = prompt
    else:  # verl chat format: the last user message holds the problem
        users = [
            m.get("content")
            for m in list(prompt)
            if isinstance(m, dict) and m.get("role") == "user"
        ]
        if not users or not users[-1]:
            raise _Bad("prompt has no user message")
        q = users[-1]
    q = clean_text(q.removeprefix(DAPO_PREFIX).removesuffix(DAPO_SUFFIX))
    if not q:
        raise _Bad("empty question")
    rm = row.get("reward_model")
    gt = rm.get("ground_truth") if isinstance(rm, dict) else row.get("solution")
    if gt is None or not str(gt).strip():
        raise _Bad("missing ground_truth")
    info = row.get("extra_info") if isinstance(row.get("extra_info"), dict) else {}
    idx = info.get("index", i - 1)
    subset = opts.get("subset", "en")
    return f"dapo-{subset}-{idx}", q, int_answer(gt), {"index": int(idx)}


_file_source(
    "aime24",
    "AIME 2024 (HuggingFaceH4/aime_2024, 30 problems; zero-padded answers -> integers)",
    "aime24/train-00000-of-00001.parquet",
    ("HuggingFaceH4/aime_2024", None, "train"),
    _aime("aime24"),
)
_file_source(
    "aime25",
    "AIME 2025 (math-ai/aime25, 30 problems; form-feed \\frac defect fixed)",
    "aime25/test.jsonl",
    ("math-ai/aime25", None, "test"),
    _aime("aime25"),
)
_file_source(
    "amc23",
    "AMC 2023 (40 problems; float answers -> integers)",
    "amc23/test.jsonl",
    ("math-ai/amc23", None, "test"),
    _aime("amc23"),
)
_file_source(
    "math500",
    "MATH-500 (500 problems; LaTeX answers graded with math-verify)",
    "math500/test.jsonl",
    ("HuggingFaceH4/MATH-500", None, "test"),
    _math500,
)
_file_source(
    "gsm8k",
    "GSM8K test (1,319 problems; final answer after '####', commas removed)",
    "gsm8k/test.jsonl",
    ("openai/gsm8k", "main", "test"),
    _gsm8k,
)

_DAPO_FILES = {"en": "dapo_math_17k/train.parquet", "all": "dapo_math_17k/dapo_math_17k.parquet"}


def _check_dapo(req: LoadRequest) -> None:
    check_options(SOURCES.get("dapo"), req)
    subset = req.options.get("subset", "en")
    if subset not in _DAPO_FILES:
        raise ConfigError(f"{req.key}.options.subset: must be en or all, got {subset!r}")


def _load_dapo(req: LoadRequest) -> Loaded:
    _check_dapo(req)
    subset = req.options.get("subset", "en")
    info = SourceInfo(
        "dapo",
        SOURCES.get("dapo").summary,
        ("subset",),
        _load_dapo,
        _DAPO_FILES[subset],
        ("open-r1/DAPO-Math-17k-Processed", subset, "train"),
        _check_dapo,
    )
    return load_rows(info, req, _dapo)


SOURCES.register(
    "dapo",
    SourceInfo(
        "dapo",
        "DAPO-Math-17k (open-r1 Processed, verl format; options: subset en (14,116) | all "
        "(17,917))",
        ("subset",),
        _load_dapo,
        _DAPO_FILES["en"],
        ("open-r1/DAPO-Math-17k-Processed", "en", "train"),
        _check_dapo,
    ),
)


def _check_procedural(req: LoadRequest) -> None:
    check_options(SOURCES.get("procedural"), req)
    o = req.options
    if "n" not in o:
        raise ConfigError(f"{req.key}.options.n: required for source procedural (e.g. n: 4000)")
    if not isinstance(o["n"], int) or o["n"] < 1:
        raise ConfigError(f"{req.key}.options.n: must be a positive integer, got {o['n']!r}")
    # skills / levels are options of this source only (not config.py knobs): omitted = all of them
    procedural.check_skills_levels(
        list(o.get("skills", procedural.SKILLS)),
        list(o.get("levels", procedural.LEVELS)),
        f"{req.key}.options",
    )


def _load_procedural(req: LoadRequest) -> Loaded:
    _check_procedural(req)
    o = req.options
    skills = list(o.get("skills", procedural.SKILLS))
    levels = list(o.get("levels", procedural.LEVELS))
    probs = procedural.generate(o["n"], req.seed + int(o.get("seed_offset", 0)), skills, levels)
    return Loaded(probs, [], "procedural", len(probs))


SOURCES.register(
    "procedural",
    SourceInfo(
        "procedural",
        "seeded arithmetic/word problems with exact integer answers (options: n; skills, levels "
        "(default: all); seed_offset (default 0))",
        ("n", "skills", "levels", "seed_offset"),
        _load_procedural,
        check=_check_procedural,
    ),
)

DAPO_HOLDOUT = "dapo_holdout"
SOURCES.register(
    DAPO_HOLDOUT,
    SourceInfo(
        DAPO_HOLDOUT,
        "eval only: rftctl's own seeded hold-out of prepare.holdout_size DAPO training rows "
        "(not the authors' unpublished DAPO500; options: seed)",
        ("seed",),
        None,
    ),
)


# ---- bring your own data: the `table` source lives in rftctl/data/table_source.py -------------
TABLE = "table"

from rftctl.data import table_source  # noqa: E402, F401  (registers TABLE; imports this module's helpers)
