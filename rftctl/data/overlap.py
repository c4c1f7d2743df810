"""Text normalisation for deduplication and the contamination guard of the prepare stage
(normalised, deduplicated, split problem files).

Two problems are the same when their normalised texts are equal: lowercase, form feeds fixed,
LaTeX spacing / \\left \\right / $ removed, sentence punctuation and whitespace runs turned into
one space, spaces next to symbols removed.
Math operators, digits, braces and parentheses are kept, so "3 + 4" and "3 - 4" stay distinct.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from rftctl.data.problems import Problem

_LATEX_SPACE = re.compile(r"\\(?:,|;|:|!| |quad|qquad|left|right|displaystyle)(?![a-z])")
_PUNCT = re.compile(r"[.,;:!?'\"`$\u2018\u2019\u201c\u201d\s]+")
_AROUND_SYMBOL = re.compile(r" ?([^a-z0-9 ]) ?")


def norm_text(text: str) -> str:
    s = (
        text.replace("\x0c", "\\f")
        .lower()
        .replace("\\dfrac", "\\frac")
        .replace("\\tfrac", "\\frac")
    )
    s = _LATEX_SPACE.sub(" ", s)
    # punctuation -> one space (so "3, 4" never merges into "34"), then no spaces next to symbols
    # (so "a+b" == "a + b")
    return _AROUND_SYMBOL.sub(r"\1", _PUNCT.sub(" ", s)).strip()


def dedup(problems: Iterable[Problem]) -> tuple[list[Problem], int, int]:
    """First occurrence of each normalised question wins.

    Returns (kept, duplicates dropped, duplicates whose answer disagreed with the kept one).
    """
    seen: dict[str, str] = {}
    kept, dups, conflicts = [], 0, 0
    for p in problems:
        k = norm_text(p.question)
        if k in seen:
            dups += 1
            conflicts += seen[k] != p.answer
            continue
        seen[k] = p.answer
        kept.append(p)
    return kept, dups, conflicts


def overlap_table(train: dict[str, list[Problem]], evals: dict[str, list[Problem]]) -> list[dict]:
    """Rows {"train": set, "eval": set, "overlap": count of train problems whose text is in
    eval}."""
    eval_keys = {e: {norm_text(p.question) for p in ps} for e, ps in evals.items()}
    rows = []
    for t, ps in train.items():
        keys = [norm_text(p.question) for p in ps]
        for e, ek in eval_keys.items():
            rows.append({"train": t, "eval": e, "overlap": sum(k in ek for k in keys)})
    return rows


def drop_overlapping(
    problems: list[Problem], evals: dict[str, list[Problem]]
) -> tuple[list[Problem], int]:
    """Remove problems whose normalised text occurs in any eval set; returns (kept, dropped)."""
    bad = (
        set().union(*({norm_text(p.question) for p in ps} for ps in evals.values()))
        if evals
        else set()
    )
    kept = [p for p in problems if norm_text(p.question) not in bad]
    return kept, len(problems) - len(kept)
