"""Grader: a table of (response, gold, expected correct, expected status) cases.

The adversarial rows prove termination through the Grader's per-item timeout (their status is
"timeout"/"error"/"no_answer"), not through a wall-clock assertion.
"""

import pytest

from rftctl.data.grading import (
    MAX_ANSWER_CHARS,
    Grader,
    Verdict,
    as_number,
    compare_fast,
    extract_answer,
    grade,
    normalize,
)

OK, NA, TO, ERR = "ok", "no_answer", "timeout", "error"
BIG = "9^{9^{9^{9}}}"

CASES = [
    # --- equivalent forms -> correct ---------------------------------------------------------
    ("So the answer is \\boxed{73}.", "73", True, OK),
    ("\\boxed{073}", "73", True, OK),
    ("\\boxed{73}", "073", True, OK),
    ("\\boxed{1,000}", "1000", True, OK),
    ("\\boxed{1000}", "1,000", True, OK),
    ("\\boxed{0.5}", "\\frac{1}{2}", True, OK),
    ("\\boxed{\\frac{1}{2}}", "0.5", True, OK),
    ("\\boxed{\\dfrac{1}{2}}", "\\frac{1}{2}", True, OK),
    ("\\boxed{\\tfrac{3}{4}}", "0.75", True, OK),
    ("\\boxed{1/2}", "\\frac12", True, OK),  # \frac12 needs math-verify
    ("\\boxed{5 \\text{ cm}}", "5", True, OK),
    ("\\boxed{5\\text{cm}}", "5", True, OK),
    ("$\\boxed{5}$", "5", True, OK),
    ("\\boxed{$5$}", "5", True, OK),
    ("The total is 2+3 = 5, so \\boxed{5} is it. Done!", "5", True, OK),
    ("First \\boxed{3}, then corrected: \\boxed{4}", "4", True, OK),
    ("First \\boxed{4}, then corrected: \\boxed{3}", "4", False, OK),
    ("\\boxed{\\frac{\\sqrt{2}}{2}}", "\\frac{1}{\\sqrt{2}}", True, OK),
    ("\\fbox{12}", "12", True, OK),
    ("\\boxed 7", "7", True, OK),
    ("\\boxed{27}", "27.0", True, OK),
    ("\\boxed{-3}", "-3", True, OK),
    ("\\boxed{x = 5}", "5", True, OK),
    ("\\boxed{90^\\circ}", "90", True, OK),
    (
        "\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}",
        "\\left( 3, \\frac{\\pi}{2} \\right)",
        True,
        OK,
    ),
    ("\\boxed{(3,\\frac{\\pi}{2})}", "\\left( 3, \\frac{\\pi}{2} \\right)", True, OK),
    ("\\boxed{\\text{Evelyn}}", "\\text{Evelyn}", True, OK),
    ("\\boxed{2\\sqrt{3}}", "\\sqrt{12}", True, OK),
    ("\\boxed{\\{1,2\\}}", "\\{1,2\\}", True, OK),
    ("\\boxed{10\\%}", "10", True, OK),
    ("\\boxed{\\$18}", "18", True, OK),
    ("\\boxed{ 42 }", "42", True, OK),
    ("\\boxed{+42}", "42", True, OK),
    ("\\boxed{42.0}", "42", True, OK),
    ("\\boxed{\\frac{6}{4}}", "\\frac{3}{2}", True, OK),
    # --- fallbacks (no box) ------------------------------------------------------------------
    ("We add them. The answer is 42.", "42", True, OK),
    ("the answer is $\\frac{1}{2}$.", "0.5", True, OK),
    ("Work...\nAnswer: 17", "17", True, OK),
    ("Work...\nAnswer: 17 apples", "17", True, OK),
    ("3 + 4 = 7\n7 + 1 = 8\n", "8", True, OK),
    ("Total cost is $1,250 dollars", "1250", True, OK),
    # --- wrong answers that look right -------------------------------------------------------
    ("\\boxed{37}", "73", False, OK),
    ("\\boxed{2}", "\\frac{1}{2}", False, OK),
    ("\\boxed{1/2}", "2", False, OK),
    ("\\boxed{0.55}", "0.5", False, OK),
    ("\\boxed{12}", "123", False, OK),
    ("\\boxed{123}", "12", False, OK),
    ("\\boxed{-73}", "73", False, OK),
    ("\\boxed{7.3}", "73", False, OK),
    ("\\boxed{1,2}", "12", False, OK),
    ("\\boxed{\\frac{\\sqrt{2}}{3}}", "\\frac{1}{\\sqrt{2}}", False, OK),
    ("\\boxed{\\text{Eve}}", "\\text{Evelyn}", False, OK),
    ("The answer is 41.", "42", False, OK),
    # --- no answer ---------------------------------------------------------------------------
    ("", "5", False, NA),
    ("I am not sure what to do here.", "5", False, NA),
    ("\\boxed{}", "5", False, NA),
    ("Thinking about \\boxed{", "5", False, NA),
    ("\\boxed{12", "12", False, NA),  # opened, never closed: truncated
    # --- adversarial -------------------------------------------------------------------------
    ("a" * 1_000_000, "1", False, NA),
    ("x" * 1_000_000 + " \\boxed{8}", "8", True, OK),
    ("{" * 10_000 + "\\boxed{6}", "6", True, OK),
    ("\\boxed{" + "{" * 10_000 + "1" + "}" * 10_000 + "}", "1", False, ERR),  # answer over the cap
    ("}" * 10_000 + "\\boxed{6}" + "{" * 10_000, "6", True, OK),
    ("\\boxed{" * 20_000, "6", False, NA),
    ("\\boxed{" + "9" * 2000 + "}", "9", False, ERR),
    (f"\\boxed{{{BIG}}}", "9", False, TO),
    (f"\\boxed{{{BIG} + 1}}", "\\frac{1}{3}", False, TO),
    ("\\boxed{\\frac{1}{0}}", "5", False, OK),
    ("\\boxed{__import__('os').system('echo hi')}", "0", False, OK),
]


@pytest.fixture(scope="module")
def grader():
    with Grader(workers=2, timeout_s=3.0) as g:
        yield g


def test_table_size():
    assert len(CASES) >= 60


def test_table(grader):
    verdicts = grader.grade_many([c[0] for c in CASES], [c[1] for c in CASES])
    bad = [
        (c[0][:60], c[1], v)
        for c, v in zip(CASES, verdicts)
        if (v.correct, v.status) != (c[2], c[3])
    ]
    assert not bad, bad
    assert grader.timeouts == 2
    assert grader.parse_failures == sum(c[3] == NA for c in CASES)
    # the pool recovered from the killed workers: another math-verify item still grades
    assert grader.grade("\\boxed{\\sqrt{4}}", "2") == Verdict(True, "\\sqrt{4}", OK)


def test_extraction_details():
    assert extract_answer("\\boxed{\\frac{1}{2}}") == "\\frac{1}{2}"
    assert extract_answer("a \\boxed{1} b \\boxed{\\{2\\}}") == "\\{2\\}"
    assert extract_answer("\\boxed{1} then \\boxed{2") == "1"  # the last *closed* box
    assert extract_answer("The answer is: 5.\n") == "5"
    assert extract_answer("no digits here") is None
    assert extract_answer("x" * 10 + "\\boxed{" + "1" * (MAX_ANSWER_CHARS + 5) + "}") is not None


def test_normalise_and_numbers():
    assert normalize("$5 \\text{ cm}$") == "5"
    assert normalize("\\left( 1, 2 \\right)") == "( 1, 2 )"
    assert as_number("1,000") == 1000 and as_number("-\\frac{3}{4}") == as_number("-0.75")
    assert as_number("1/0") is None and as_number("abc") is None
    assert compare_fast("073", "73") is True and compare_fast("\\sqrt{4}", "2") is None


def test_module_grade_fast_path():
    assert grade("\\boxed{073}", "73") == Verdict(True, "073", OK)
    assert grade("nothing", "73").status == NA


def test_grader_validates_args():
    with pytest.raises(ValueError):
        Grader(workers=0, timeout_s=1)
    with pytest.raises(ValueError):
        Grader(workers=1, timeout_s=1).grade_many(["a"], [])


def test_repeated_answers_are_verified_once():
    with Grader(workers=1, timeout_s=2.0) as g:
        vs = g.grade_many(
            [f"\\boxed{{{BIG}}}"] * 6 + ["\\boxed{\\sqrt{9}}"] * 3, ["9"] * 6 + ["3"] * 3
        )
        assert [v.status for v in vs] == [TO] * 6 + [OK] * 3 and all(v.correct for v in vs[6:])
        assert g.timeouts == 6  # every sample is counted...
        assert len(g._cache) == 2  # ...but each distinct pair went to math-verify once
