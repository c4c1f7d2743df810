"""The authors' grading rule (``grader.mode: reference``): last ``\\boxed{}`` + normalised string
match.

The paper's runs score with Trinity-RFT's ``math_boxed_reward`` (the reward named in
examples/entropy/clipb.yaml of https://github.com/modelscope/Trinity-RFT), whose accuracy is
``compute_score`` of ``trinity/utils/eval_utils.py`` with the answer normaliser ``strip_string``
of ``trinity/utils/math_eval_utils.py`` (a trimmed copy of Qwen2.5-Math's evaluation code). The
same rule scores their evaluation. This module re-implements that rule from its description so
that rftctl's numbers can be compared with the paper's; it shares no code with it.

The rule, step by step (quirks kept on purpose, since matching them is the point):

* **Extraction.** If the response contains ``\\boxed `` (with a space) anywhere, the answer is
  the text after its last occurrence up to the next ``$``. Otherwise the last ``\\boxed`` (else
  the last ``\\fbox``) and the text up to the ``}`` that brings the brace count (every ``{`` and
  ``}``, escaped or not) back to zero. The box must read ``\\boxed{...}``: a ``\\fbox{...}`` is
  found but scores 0 (the reference's ``remove_boxed`` rejects it), and no box at all scores 0:
  there is no "Answer:" or last-number fallback. A gold answer that holds a box is unboxed the
  same way; otherwise it is used as is.
* **Normalisation** (both sides): strip; drop newlines, trailing dots, ``\\!``, ``$``, ``%``
  (before ``\\%``, so ``50\\%`` keeps its backslash); array/bmatrix -> pmatrix; tfrac/dfrac ->
  frac; neq/leq/geq -> ne/le/ge; drop ``\\left`` ``\\right`` ``\\mbox{..}`` ``\\mathbf`` and
  degree marks; ``\\{`` -> ``{``; ``\\text{x}`` -> x; remove whole-word units (UNIT_WORDS, two
  passes, never emptying the string); a digits-only string or an English number phrase becomes
  its integer (``073`` -> 73, ``five`` -> 5); drop a leading ``x =``; infinity -> \\infty;
  ``27.00`` -> 27; ``.5`` -> 0.5; remove all spaces; ``\\sqrt2`` -> ``\\sqrt{2}``;
  ``\\frac12`` -> ``\\frac{1}{2}``; ``3/4`` -> ``\\frac{3}{4}``; drop one pair of outer braces or
  parentheses. Empty -> None.
* **Comparison.** Equal normalised strings score 1, anything else 0. No numeric or symbolic
  equivalence: ``0.5`` against ``1/2`` and ``1,000`` against ``1000`` score 0.

Number phrases: exact for digits-only strings and well-formed English numbers up to the billions;
phrases with "point" (decimals in words) are left unchanged here, where the reference would read
them as decimals: no answer in the paper's evaluation sets is written that way.
"""

from __future__ import annotations

import re

from rftctl.data.answers import Verdict

# Whole-word unit names the reference removes (MathQA's units, via Qwen2.5-Math), then each with
# an "s" appended. A data table, not code: matched as the reference matches them, as unescaped
# regular expressions between non-word characters (so "q ." also matches "q x").
_UNITS = [
    "east",
    "degree",
    "mph",
    "kmph",
    "ft",
    "m sqaure",
    " m east",
    "sq m",
    "deg",
    "mile",
    "q .",
    "monkey",
    "prime",
    "ratio",
    "profit of rs",
    "rd",
    "o",
    "gm",
    "p . m",
    "lb",
    "tile",
    "per",
    "dm",
    "lt",
    "gain",
    "ab",
    "way",
    "west",
    "a .",
    "b .",
    "c .",
    "d .",
    "e .",
    "f .",
    "g .",
    "h .",
    "t",
    "a",
    "h",
    "no change",
    "men",
    "soldier",
    "pie",
    "bc",
    "excess",
    "st",
    "inches",
    "noon",
    "percent",
    "by",
    "gal",
    "kmh",
    "c",
    "acre",
    "rise",
    "a . m",
    "th",
    "π r 2",
    "sq",
    "mark",
    "l",
    "toy",
    "coin",
    "sq . m",
    "gallon",
    "° f",
    "profit",
    "minw",
    "yr",
    "women",
    "feet",
    "am",
    "pm",
    "hr",
    "cu cm",
    "square",
    "v â € ™",
    "are",
    "rupee",
    "rounds",
    "cubic",
    "cc",
    "mtr",
    "s",
    "ohm",
    "number",
    "kmph",
    "day",
    "hour",
    "minute",
    "min",
    "second",
    "man",
    "woman",
    "sec",
    "cube",
    "mt",
    "sq inch",
    "mp",
    "∏ cm ³",
    "hectare",
    "more",
    "sec",
    "unit",
    "cu . m",
    "cm 2",
    "rs .",
    "rs",
    "kg",
    "g",
    "month",
    "km",
    "m",
    "cm",
    "mm",
    "apple",
    "liter",
    "loss",
    "yard",
    "pure",
    "year",
    "increase",
    "decrease",
    "d",
    "less",
    "Surface",
    "litre",
    "pi sq m",
    "s .",
    "metre",
    "meter",
    "inch",
]
UNIT_WORDS = tuple(_UNITS + [u + "s" for u in _UNITS])
_UNIT_RES = tuple(re.compile(r"(^|\W)" + u + r"($|\W)") for u in UNIT_WORDS)

_SMALL = {
    w: i
    for i, w in enumerate(
        [
            "zero",
            "one",
            "two",
            "three",
            "four",
            "five",
            "six",
            "seven",
            "eight",
            "nine",
            "ten",
            "eleven",
            "twelve",
            "thirteen",
            "fourteen",
            "fifteen",
            "sixteen",
            "seventeen",
            "eighteen",
            "nineteen",
        ]
    )
}
_TENS = {
    w: 10 * i
    for i, w in enumerate(
        ["twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"], 2
    )
}
_SCALES = {"thousand": 1_000, "million": 1_000_000, "billion": 1_000_000_000}
_NUMBER_WORDS = set(_SMALL) | set(_TENS) | set(_SCALES) | {"hundred", "point"}


# ---- extraction -------------------------------------------------------------------------------
def _last_box_span(text: str) -> str | None:
    """The reference's "last boxed only string": ``\\boxed ...`` / ``\\boxed{...}`` /
    ``\\fbox{...}``."""
    if "\\boxed " in text:
        return "\\boxed " + text.split("\\boxed ")[-1].split("$")[0]
    start = text.rfind("\\boxed")
    if start < 0:
        start = text.rfind("\\fbox")
        if start < 0:
            return None
    depth = 0
    for i in range(start, len(text)):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if text[i] == "}" and depth == 0:
            return text[start : i + 1]
    return None  # never closed: a truncated answer


def _unbox(span: str) -> str | None:
    """The box's content, or None where the reference's unboxing fails (``\\fbox``,
    ``\\boxed5``)."""
    if "\\boxed " in span:
        return span[len("\\boxed ") :] if span.startswith("\\boxed ") else None
    if span.startswith("\\boxed{") and span.endswith("}"):
        return span[len("\\boxed{") : -1]
    return None


def reference_extract(response: str) -> str | None:
    """The answer the reference scores: the unboxed content of the last box, else None."""
    span = _last_box_span(response)
    return None if span is None else _unbox(span)


# ---- normalisation ----------------------------------------------------------------------------
def _words_to_int(text: str) -> int | None:
    """A digits-only string or an English number phrase as an integer, else None (the
    reference's word2number step: non-number words are ignored, a repeated scale word refuses)."""
    s = text.replace("-", " ").lower()
    if s.isdigit():
        try:
            return int(s)
        except ValueError:  # unicode digits such as "²"
            return None
    words = [w for w in s.split() if w in _NUMBER_WORDS]
    if not words or "point" in words or any(words.count(w) > 1 for w in _SCALES):
        return None
    total = current = 0
    for w in words:
        if w in _SMALL or w in _TENS:
            current += _SMALL.get(w, 0) + _TENS.get(w, 0)
        elif w == "hundred":
            current = max(current, 1) * 100
        else:
            total += max(current, 1) * _SCALES[w]
            current = 0
    return total + current


def _fix_fracs(s: str) -> str:
    """``\\frac12`` -> ``\\frac{1}{2}``, ``\\frac1{2}`` -> ``\\frac{1}{2}``; a ``\\frac``
    followed by fewer than two characters leaves the whole string unchanged."""
    head, *parts = s.split("\\frac")
    out = [head]
    for p in parts:
        if p.startswith("{"):
            out.append("\\frac" + p)
        elif len(p) < 2:
            return s
        elif p[1] != "{":
            out.append("\\frac{" + p[0] + "}{" + p[1] + "}" + p[2:])
        else:
            out.append("\\frac{" + p[0] + "}" + p[1:])
    return "".join(out)


def _fix_slash(s: str) -> str:
    """``3/4`` -> ``\\frac{3}{4}`` when both sides are plain integers written canonically."""
    parts = s.split("/")
    if len(parts) != 2:
        return s
    a, b = parts
    try:
        a2 = a if "sqrt" in a else str(int(a))
        b2 = b if "sqrt" in b else str(int(b))
    except ValueError:
        return s
    return "\\frac{" + a2 + "}{" + b2 + "}" if f"{a2}/{b2}" == s else s


def _latex_forms(s: str) -> str:
    s = re.sub(r"\\begin\{array\}\{.*?\}", r"\\begin{pmatrix}", s)
    s = re.sub(r"\\end\{array\}", r"\\end{pmatrix}", s).replace("bmatrix", "pmatrix")
    s = s.replace("tfrac", "frac").replace("dfrac", "frac")
    s = s.replace("\\neq", "\\ne").replace("\\leq", "\\le").replace("\\geq", "\\ge")
    s = s.replace("\\left", "").replace("\\right", "").replace("\\{", "{").replace("\\}", "}")
    s = re.sub(r"\\mbox{.*?}", "", s).replace("\\mathbf", "")
    s = s.replace("^{\\circ}", "").replace("^\\circ", "")
    return re.sub(r"\\text\{(.*?)\}", r"\1", s)


def reference_normalize(answer: str | None) -> str | None:
    """The reference's answer normaliser (module docstring); None for an empty result."""
    if answer is None:
        return None
    s = str(answer).strip().replace("\n", "").rstrip(".").replace("\\!", "")
    s = s.replace("\\$", "").replace("$", "").replace("%", "").replace("\\%", "")
    s = _latex_forms(s)
    for _ in range(2):
        for unit in _UNIT_RES:
            s = unit.sub(r"\1\2", s) or s
    as_int = _words_to_int(s)
    if as_int is not None:
        s = str(as_int)
    s = re.sub(r"^[a-zA-Z]\s*=\s*", "", s)
    s = s.replace("infinity", "\\infty").replace("inf", "\\infty")
    s = re.sub(r"(\d+)\.0+([^\d]|$)", r"\1\2", s)
    s = s.replace(" .", " 0.").replace("{.", "{0.")
    s = ("0" + s if s.startswith(".") else s).replace(" ", "")
    if "\\sqrt" in s:
        s = re.sub(r"\\sqrt\s*(\w+)", r"\\sqrt{\1}", s)
    s = _fix_slash(_fix_fracs(s))
    if (s.startswith("{") and s.endswith("}")) or (s.startswith("(") and s.endswith(")")):
        s = s[1:-1]
    return s.strip() or None


def reference_grade(response: str, gold: str) -> Verdict:
    """Score ``response`` against ``gold`` as the authors' reward does (1 = correct).

    Verdict.status: "ok" when a box was read, "no_answer" when none (scored 0)."""
    pred = reference_extract(response)
    if pred is None:
        return Verdict(False, None, "no_answer")
    gold = str(gold)
    gold_span = _last_box_span(gold)
    if gold_span is not None:
        gold = _unbox(gold_span)
        if gold is None:  # the reference's scoring raises here and scores 0
            return Verdict(False, pred, "error")
    p, g = reference_normalize(pred), reference_normalize(gold)
    # both empty counts as equal in the reference's comparison (with a warning)
    return Verdict(p == g, pred, "ok")
