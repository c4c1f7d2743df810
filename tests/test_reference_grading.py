"""grader.mode: reference scores as the authors' code does (Trinity-RFT math_boxed_reward: the last
\\boxed{} and a normalised string match). Every expected score below was worked out by hand from
that rule (rftctl/data/reference_grading.py), not by running either grader."""

import pytest

from rftctl.data.grading import Grader
from rftctl.data.reference_grading import reference_extract, reference_grade, reference_normalize

# (response, gold, reference score, why)
CASES = [
    ("so the answer is \\boxed{073}.", "73", 1, "digits-only strings become integers: 073 -> 73"),
    ("The answer is 42.", "42", 0, "no box: no 'answer is' or last-number fallback"),
    ("Answer: 42", "42", 0, "no box"),
    ("\\boxed{\\frac{1}{2}}", "1/2", 1, "gold 1/2 -> \\frac{1}{2}"),
    ("\\boxed{0.5}", "1/2", 0, "no numeric equivalence: 0.5 vs \\frac{1}{2}"),
    ("\\boxed{27.0}", "27", 1, "27.0 -> 27"),
    ("\\boxed{27}", "27.0", 1, "a float gold (AMC23) 27.0 -> 27"),
    ("\\fbox{5}", "5", 0, "an fbox is found but its unboxing fails"),
    ("\\boxed{x = 5}", "5", 1, "a leading 'x =' is dropped"),
    ("\\boxed{5 \\text{ cm}}", "5", 1, "\\text{ cm} -> ' cm', then the unit word cm is removed"),
    ("\\boxed{50\\%}", "50", 0, "% is removed before \\%: 50\\% -> '50\\'"),
    ("\\boxed{3} no wait \\boxed{4}", "4", 1, "the last box"),
    ("\\boxed{3} no wait \\boxed{4}", "3", 0, "the last box"),
    ("\\boxed{\\dfrac{3}{4}}", "\\frac{3}{4}", 1, "dfrac -> frac"),
    ("the result is \\boxed 7$ done", "7", 1, "'\\boxed ' with a space: up to the next $"),
    ("\\boxed{12", "12", 0, "an unclosed box: no answer"),
    ("\\boxed{five}", "5", 1, "number words: five -> 5"),
    ("\\boxed{(2, 3)}", "(2,3)", 1, "spaces removed, outer parentheses dropped"),
    ("\\boxed{\\sqrt2}", "\\sqrt{2}", 1, "\\sqrt2 -> \\sqrt{2}"),
    ("\\boxed{-5}", "-5", 1, "exact string"),
    ("\\boxed{-5}", "5", 0, "sign matters"),
    ("\\boxed{1,000}", "1000", 0, "no thousands separator handling"),
    ("\\boxed{10^\\circ}", "10", 1, "degree marks dropped"),
    ("\\boxed{\\frac12}", "\\frac{1}{2}", 1, "\\frac12 -> \\frac{1}{2}"),
    ("\\boxed{.5}", "0.5", 1, ".5 -> 0.5"),
    ("\\boxed{\\left( 1, 2 \\right)}", "(1,2)", 1, "\\left/\\right dropped"),
    ("\\boxed{x^2+1}", "x^2 + 1", 1, "spaces removed"),
    ("\\boxed{x^2+1}", "1+x^2", 0, "no symbolic equivalence"),
    (
        "\\boxed{\\boxed{9}}",
        "9",
        1,
        "rfind finds the inner (last) box: its span \\boxed{9} unboxes to 9",
    ),
]


@pytest.mark.parametrize(
    ("response", "gold", "score", "why"), CASES, ids=[f"{i}" for i in range(len(CASES))]
)
def test_reference_rule_scores_by_hand(response, gold, score, why):
    assert int(reference_grade(response, gold).correct) == score, why


def test_the_grader_in_reference_mode_uses_the_rule_for_a_batch():
    responses = [c[0] for c in CASES]
    golds = [c[1] for c in CASES]
    with Grader(workers=1, timeout_s=5.0, mode="reference") as g:
        verdicts = g.grade_many(responses, golds)
    assert [int(v.correct) for v in verdicts] == [c[2] for c in CASES]
    # no box -> a parse failure, counted like the default grader's
    assert g.parse_failures == sum(reference_extract(r) is None for r in responses) >= 3
    assert g._procs == []  # no math-verify worker was started


def test_the_modes_differ_on_the_readme_example():
    # the README's departure example: the default grader reads "The answer is 42." and compares
    # 0.5 with 1/2 as numbers; the reference rule scores both 0
    with (
        Grader(workers=1, timeout_s=5.0) as default,
        Grader(workers=1, timeout_s=5.0, mode="reference") as ref,
    ):
        pairs = [("The answer is 42.", "42"), ("\\boxed{0.5}", "1/2"), ("\\boxed{1,000}", "1000")]
        assert [v.correct for v in default.grade_many(*zip(*pairs))] == [True, True, True]
        assert [v.correct for v in ref.grade_many(*zip(*pairs))] == [False, False, False]


def test_normalizer_pieces_by_hand():
    assert reference_normalize("\\text{(A)}") == "A"
    assert reference_normalize("\\$18.90") == "18.90"
    assert reference_normalize("two hundred thirty-four") == "234"
    assert reference_normalize("3/4") == "\\frac{3}{4}"
    assert reference_normalize("03/4") == "03/4"  # not written canonically: left alone
    assert reference_normalize("   ") is None


def test_unknown_mode_is_refused():
    with pytest.raises(
        ValueError, match="unknown grading mode 'strict'; use one of default, reference"
    ):
        Grader(workers=1, timeout_s=1.0, mode="strict")
