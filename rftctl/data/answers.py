"""Answer extraction: the final answer a response states, and the verdict record.

The grader (rftctl/data/grading.py) and the authors' rule (rftctl/data/reference_grading.py) both
build on this module; it imports nothing from either. Extraction, in order: the last
``\\boxed{}`` / ``\\fbox{}``; else the text after the last "answer is" / "answer:"; else the last
number on the last line. Responses are untrusted: only the tail is scanned, extracted answers
are length-capped, and every pattern is linear.
"""

from __future__ import annotations

import re
from typing import NamedTuple

MAX_SCAN_CHARS = 100_000  # only the tail of a response is scanned (the answer is at the end)
MAX_ANSWER_CHARS = 1000  # longer extracted answers are rejected
MAX_LINE_CHARS = 1000  # fallbacks look at most this far along a line


class Verdict(NamedTuple):
    correct: bool
    extracted: str | None
    status: str  # "ok" | "no_answer" | "timeout" | "error"


# ---- extraction -----------------------------------------------------------------------------
_BRACE = re.compile(r"\\[{}]|[{}]")
_BOX = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])\s*")
_NUM = re.compile(r"[-+]?\d[\d,]*(?:\.\d+)?(?:/\d+)?")
_MATH_SPAN = re.compile(r"\s*\$([^$]{1,1000})\$")


def _match_braces(text: str) -> dict[int, int]:
    """open index -> close index for every balanced structural brace pair (one linear pass)."""
    stack: list[int] = []
    match: dict[int, int] = {}
    for m in _BRACE.finditer(text):
        tok = m.group()
        if tok == "{":
            stack.append(m.start())
        elif tok == "}" and stack:
            match[stack.pop()] = m.start()
    return match


def last_box(text: str) -> str | None:
    """The content of the last ``\\boxed{...}`` / ``\\fbox{...}`` (or ``\\boxed 5``) in ``text``;
    "" where a box marker exists but no box closed (a truncated answer); None without a box."""
    starts = [m.end() for m in _BOX.finditer(text)]
    if not starts:
        return None
    match = None
    for p in reversed(starts):
        if p < len(text) and text[p] == "{":
            if match is None:
                match = _match_braces(text)
            close = match.get(p)
            if close is not None and text[p + 1 : close].strip():
                return text[p + 1 : close].strip()
        elif p < len(text) and text[p] not in "}$":
            tok = re.match(r"[^\s$}]{1,1000}", text[p : p + MAX_ANSWER_CHARS + 1])
            if tok:
                return tok.group()
    return ""  # a box marker exists but no box closed: truncated answer


def _after_phrase(text: str) -> str | None:
    low = text.lower()
    best = max(((low.rfind(k), k) for k in ("answer is", "answer:")), key=lambda t: t[0])
    i, key = best
    if i < 0:
        return None
    rest = text[i + len(key) : i + len(key) + MAX_LINE_CHARS].split("\n", 1)[0].lstrip(" :")
    m = _MATH_SPAN.match(rest)
    if m:
        return m.group(1).strip()
    m = _NUM.match(rest)
    if m:
        return m.group().rstrip(",")
    rest = rest.strip().rstrip(".").strip()
    return rest or None


def extract_answer(response: str) -> str | None:
    """The final answer in ``response`` (see module docstring for the rules), or None."""
    text = response[-MAX_SCAN_CHARS:]
    boxed = last_box(text)
    if boxed is not None:
        return boxed or None
    phrase = _after_phrase(text)
    if phrase:
        return phrase
    stripped = text.rstrip()
    last_line = stripped[stripped.rfind("\n") + 1 :][-MAX_LINE_CHARS:]
    nums = _NUM.findall(last_line)
    return nums[-1].rstrip(",") if nums else None
