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

from rftctl.data import procedural, table_source
from rftctl.data.source_io import (
    FILE_SUFFIXES,
    HUB,
    SOURCES,
    TABLE,
    BadRow,
    Loaded,
    LoadRequest,
    Malformed,
    SourceInfo,
    check_options,
    check_request,
    clean_text,
    int_answer,
    load_rows,
    need,
)
from rftctl.errors import ConfigError

# the names importers of this module use (the registry is complete once this module is loaded)
__all__ = [
    "DAPO_HOLDOUT",
    "FILE_SUFFIXES",
    "HUB",
    "SOURCES",
    "TABLE",
    "Loaded",
    "LoadRequest",
    "Malformed",
    "SourceInfo",
    "check_request",
    "int_answer",
]

# DAPO's original template (BytedTsinghua-SIA/DAPO-Math-17k); open-r1's "Processed" copy already
# removed it, but a raw copy may still carry it.
DAPO_PREFIX = (
    "Solve the following math problem step by step. The last line of your response should be "
    "of the form Answer: $Answer (without quotes) where $Answer is the answer to the problem.\n\n"
)
DAPO_SUFFIX = '\n\nRemember to put your answer on its own line after "Answer:".'
QWQ_SUFFIX = "\nPlease reason step by step, and put your final answer within \\boxed{}."


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
    q = clean_text(str(need(row, "problem", "question", "prompt")))
    q = q.removesuffix(QWQ_SUFFIX.strip()).strip()  # QwQ copies append the boxed instruction
    if not q:
        raise BadRow("empty question")
    return q


def _aime(prefix):
    def fn(row, i, opts):
        rid = row.get("id")
        return (
            f"{prefix}-{rid if rid is not None else i}",
            _question(row),
            int_answer(need(row, "answer")),
            {k: str(row[k]) for k in ("url", "year") if row.get(k) is not None},
        )

    return fn


def _math500(row, i, opts):
    a = str(need(row, "answer")).strip()
    meta = {k: row[k] for k in ("subject", "level") if row.get(k) is not None}
    return f"math500-{row.get('unique_id') or i}", _question(row), a, meta


def _gsm8k(row, i, opts):
    full = str(need(row, "answer"))
    if "####" not in full:
        raise BadRow("answer has no '####' final-answer marker")
    return f"gsm8k-{i}", _question(row), int_answer(full.split("####")[-1]), {}


def _dapo(row, i, opts):
    prompt = need(row, "prompt")
    if isinstance(prompt, str):
        q = prompt
    else:  # verl chat format: the last user message holds the problem
        users = [
            m.get("content")
            for m in list(prompt)
            if isinstance(m, dict) and m.get("role") == "user"
        ]
        if not users or not users[-1]:
            raise BadRow("prompt has no user message")
        q = users[-1]
    q = clean_text(q.removeprefix(DAPO_PREFIX).removesuffix(DAPO_SUFFIX))
    if not q:
        raise BadRow("empty question")
    rm = row.get("reward_model")
    gt = rm.get("ground_truth") if isinstance(rm, dict) else row.get("solution")
    if gt is None or not str(gt).strip():
        raise BadRow("missing ground_truth")
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

# bring your own data (rftctl/data/table_source.py), listed after the built-in sets
SOURCES.register(TABLE, table_source.INFO)
