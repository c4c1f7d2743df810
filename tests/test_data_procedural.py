import random
import re

import pytest

from rftctl.data import procedural
from rftctl.data.grading import compare_fast, extract_answer
from rftctl.errors import ConfigError

ALL = list(procedural.SKILLS)


def test_deterministic_and_ids_stable():
    a = procedural.generate(300, 7, ALL, [1, 2, 3])
    b = procedural.generate(300, 7, ALL, [1, 2, 3])
    c = procedural.generate(300, 8, ALL, [1, 2, 3])
    assert a == b and [p.id for p in a] == [p.id for p in b]
    assert [p.id for p in a] != [p.id for p in c]
    assert len({p.id for p in a}) == len(a) == 300
    assert all(re.fullmatch(r"proc-[a-z0-9]+-[0-9a-f]{10}", p.id) for p in a)
    assert {p.meta["skill"] for p in a} == set(ALL) and {p.meta["level"] for p in a} == {1, 2, 3}


def test_answers_are_exact_integers_matching_question_numbers():
    for p in procedural.generate(400, 1, ALL, [1, 2, 3]):
        assert re.fullmatch(r"\d+", p.answer), p  # non-negative integer
        assert p.answer == str(procedural.answer_of(p.meta["steps"]))
        if p.meta["skill"] in ("add", "sub", "mul", "add3"):
            nums = [int(x) for x in re.findall(r"\d+", p.question)]
            if p.question.startswith("Subtract"):  # "Subtract b from a"
                nums.reverse()
            op = p.meta["steps"][0][0]
            val = sum(nums) if op == "+" else nums[0] - nums[1] if op == "-" else nums[0] * nums[1]
            assert str(val) == p.answer, p
        lv = p.meta["level"]
        if p.meta["skill"] in ("add", "sub", "add3"):
            assert all(len(x) <= lv for x in re.findall(r"\d+", p.question))


def test_levels_restrict_digit_counts():
    for p in procedural.generate(100, 3, ["add"], [3]):
        assert all(len(x) == 3 for x in re.findall(r"\d+", p.question))


def test_small_space_returns_distinct_problems_only():
    ps = procedural.generate(1000, 0, ["sub"], [1])
    assert len(ps) < 1000 and len({p.question for p in ps}) == len(ps)


def _equations_hold(text: str) -> bool:
    """Every 'a op b [op c] = r' chain in a solution is arithmetically true (no eval)."""
    for chain in re.findall(r"\d+(?: [-+*] \d+)+(?: = \d+(?: [-+*] \d+)*)+", text):
        vals = []
        for side in chain.split(" = "):
            toks = side.split()  # sum of signed products: '*' binds tighter than '+'/'-'
            total, sign, prod = 0, 1, int(toks[0])
            for op, x in zip(toks[1::2], toks[2::2]):
                if op == "*":
                    prod *= int(x)
                else:
                    total, sign, prod = total + sign * prod, (1 if op == "+" else -1), int(x)
            vals.append(total + sign * prod)
        if len(set(vals)) != 1:
            return False
    return True


def test_worked_solutions_valid_distinct_short():
    rng = random.Random(0)
    forms = set()
    for p in procedural.generate(300, 2, ALL, [1, 2, 3]):
        sols = procedural.worked_solutions(p, rng, 4)
        assert len(sols) == len(set(sols)) >= 2
        for s in sols:
            assert s.rstrip(".").endswith(f"\\boxed{{{p.answer}}}"), s
            assert len(s) <= procedural.MAX_SOLUTION_CHARS, s
            assert compare_fast(extract_answer(s), p.answer) is True
            assert _equations_hold(s), s
            forms.add(re.sub(r"\d+", "N", s))
    assert len(forms) > 30  # decompositions x orders x phrasings
    assert any("So the answer is" in f for f in forms) and any("Total:" in f for f in forms)
    assert not _equations_hold("47 + 38 = 84. \\boxed{84}")  # the checker itself can fail


def test_worked_solutions_deterministic_for_rng():
    p = procedural.generate(1, 0, ["add"], [2])[0]
    assert procedural.worked_solutions(p, random.Random(5), 3) == procedural.worked_solutions(
        p, random.Random(5), 3
    )


def test_bad_skill_or_level():
    with pytest.raises(ConfigError, match="did you|choose from"):
        procedural.generate(5, 0, ["ad"], [1])
    with pytest.raises(ConfigError, match="levels"):
        procedural.generate(5, 0, ["add"], [4])
