"""Seeded procedural math problems with exact integer answers, and worked solutions for SFT.

Skills: add, sub, add3 (three terms), mul (level-digit number times a one-digit number), and word
problems apples, coins, ages, shopping (one or two steps) and compare (difference). Level L
(1..3) sets the operand digit count. Every problem records its computation as ``meta["steps"]``:
a list of ``[op, x, y]`` (op in "+", "-", "*"), each step's result feeding the next; worked
solutions are rendered from those steps in several forms, so they are valid by construction.

Determinism: ``generate(n, seed, ...)`` depends only on its arguments. Ids are
``proc-<skill>-<sha1(question)[:10]>``, so the same text always gets the same id, and the prepare
stage's dedup/decontamination by normalised text keeps train and eval disjoint.
"""

from __future__ import annotations

import hashlib
import itertools
import random
from collections.abc import Callable

from rftctl.data.problems import Problem
from rftctl.errors import ConfigError

SKILLS = ("add", "sub", "add3", "mul", "apples", "coins", "ages", "shopping", "compare")
LEVELS = (1, 2, 3)
MAX_SOLUTION_CHARS = (
    100  # measured: <= 46 tokens of a 1k byte-level BPE; the tiny model budget is ~48
)
_NAMES = (
    "Ann",
    "Ben",
    "Cara",
    "Dan",
    "Eva",
    "Finn",
    "Gia",
    "Hugo",
    "Ivy",
    "Jack",
    "Kim",
    "Leo",
    "Mia",
    "Noah",
    "Omar",
    "Pia",
)
_ITEMS = (("pen", "pens"), ("book", "books"), ("cup", "cups"), ("ball", "balls"), ("hat", "hats"))


def _num(rng: random.Random, level: int) -> int:
    lo = 1 if level == 1 else 10 ** (level - 1)
    return rng.randint(lo, 10**level - 1)


def _names(rng: random.Random) -> tuple[str, str]:
    a, b = rng.sample(_NAMES, 2)
    return a, b


# Each skill: rng, level -> (question, steps). steps: [[op, x, y], ...]; step i>0 uses the
# previous result as x.
def _add(rng, lv):
    a, b = _num(rng, lv), _num(rng, lv)
    q = rng.choice(("What is {a} + {b}?", "Compute {a} + {b}.", "Add {a} and {b}.")).format(
        a=a, b=b
    )
    return q, [["+", a, b]]


def _sub(rng, lv):
    a, b = sorted((_num(rng, lv), _num(rng, lv)), reverse=True)
    q = rng.choice(("What is {a} - {b}?", "Compute {a} - {b}.", "Subtract {b} from {a}.")).format(
        a=a, b=b
    )
    return q, [["-", a, b]]


def _add3(rng, lv):
    a, b, c = _num(rng, lv), _num(rng, lv), _num(rng, lv)
    q = rng.choice(
        ("What is {a} + {b} + {c}?", "Compute {a} + {b} + {c}.", "Add {a}, {b} and {c}.")
    ).format(a=a, b=b, c=c)
    return q, [["+", a, b], ["+", a + b, c]]


def _mul(rng, lv):
    a, b = _num(rng, lv), rng.randint(2, 9)
    q = rng.choice(("What is {a} * {b}?", "What is {a} times {b}?", "Multiply {a} by {b}.")).format(
        a=a, b=b
    )
    return q, [["*", a, b]]


def _apples(rng, lv):
    n = rng.choice(_NAMES)
    a, b = _num(rng, lv), _num(rng, lv)
    kind = rng.randrange(3)
    if kind == 0:
        return f"{n} has {a} apples and buys {b} more. How many apples does {n} have now?", [
            ["+", a, b]
        ]
    if kind == 1:
        a, b = max(a, b), min(a, b)
        return f"{n} has {a} apples and eats {b}. How many apples are left?", [["-", a, b]]
    c = rng.randint(1, a + b)
    return (
        f"{n} has {a} apples, buys {b} more and gives away {c}. How many apples are left?",
        [["+", a, b], ["-", a + b, c]],
    )


def _coins(rng, lv):
    n = rng.choice(_NAMES)
    a = _num(rng, lv)
    if rng.random() < 0.5:
        b = _num(rng, lv)
        return f"{n} has {a} coins and finds {b} more. How many coins does {n} have?", [["+", a, b]]
    b = rng.randint(2, 9)
    return f"{n} has {b} bags with {a} coins in each. How many coins are there in total?", [
        ["*", a, b]
    ]


def _ages(rng, lv):
    n1, n2 = _names(rng)
    lv = min(lv, 2)  # three-digit ages read oddly; level 3 ages stay two-digit
    a, b = _num(rng, lv), rng.randint(1, 9 * lv)
    if rng.random() < 0.5:
        return f"{n1} is {a} years old. {n2} is {b} years older. How old is {n2}?", [["+", a, b]]
    c = rng.randint(1, 9 * lv)
    return (
        f"{n1} is {a} years old. {n2} is {b} years older. How old will {n2} be in {c} years?",
        [["+", a, b], ["+", a + b, c]],
    )


def _shopping(rng, lv):
    n = rng.choice(_NAMES)
    one, many = rng.choice(_ITEMS)
    a, b = _num(rng, lv), rng.randint(2, 9)
    if rng.random() < 0.5:
        return f"A {one} costs {a} dollars. {n} buys {b} {many}. How much does {n} pay?", [
            ["*", a, b]
        ]
    c = a * b + _num(rng, lv)
    return (
        f"{n} buys {b} {many} at {a} dollars each and pays with {c} dollars. How much change does "
        f"{n} get?",
        [["*", a, b], ["-", c, a * b]],
    )


def _compare(rng, lv):
    n1, n2 = _names(rng)
    a, b = _num(rng, lv), _num(rng, lv)
    while a == b:
        b = _num(rng, lv)
    a, b = max(a, b), min(a, b)
    return (
        f"{n1} has {a} marbles and {n2} has {b} marbles. How many more marbles does {n1} have "
        f"than {n2}?",
        [["-", a, b]],
    )


_GENERATORS: dict[str, Callable] = {
    "add": _add,
    "sub": _sub,
    "add3": _add3,
    "mul": _mul,
    "apples": _apples,
    "coins": _coins,
    "ages": _ages,
    "shopping": _shopping,
    "compare": _compare,
}


def _apply(op: str, x: int, y: int) -> int:
    return x + y if op == "+" else x - y if op == "-" else x * y


def answer_of(steps: list) -> int:
    r = None
    for op, x, y in steps:
        r = _apply(op, x, y)
    return r


def check_skills_levels(skills: list[str], levels: list[int], key: str) -> None:
    bad = [s for s in skills if s not in _GENERATORS]
    if bad or not skills:
        raise ConfigError(
            f"{key}.skills: unknown skill(s) {bad or '[]'}; choose from {', '.join(SKILLS)}"
        )
    badl = [lv for lv in levels if lv not in LEVELS]
    if badl or not levels:
        raise ConfigError(
            f"{key}.levels: levels must be a non-empty subset of {list(LEVELS)}, got {levels}"
        )


def generate(n: int, seed: int, skills: list[str], levels: list[int]) -> list[Problem]:
    """``n`` distinct problems (fewer only if the skill/level space is exhausted after 50n draws).

    Skill and level are drawn uniformly per problem from a ``random.Random(seed)``.
    """
    check_skills_levels(list(skills), list(levels), "procedural")
    rng = random.Random(f"rftctl-procedural-{seed}")
    out, seen = [], set()
    for _ in range(50 * n):
        if len(out) >= n:
            break
        skill, lv = rng.choice(list(skills)), rng.choice(list(levels))
        q, steps = _GENERATORS[skill](rng, lv)
        if q in seen:
            continue
        seen.add(q)
        pid = f"proc-{skill}-{hashlib.sha1(q.encode()).hexdigest()[:10]}"
        out.append(
            Problem(
                pid,
                q,
                str(answer_of(steps)),
                "procedural",
                {"skill": skill, "level": lv, "steps": steps},
            )
        )
    return out


# ---- worked solutions -----------------------------------------------------------------------
def _split(v: int) -> tuple[int, int] | None:
    """v = head + units with head a multiple of 10 (None when the split is trivial)."""
    if v < 10 or v % 10 == 0:
        return None
    return v - v % 10, v % 10


def _step_forms(op: str, x: int, y: int) -> list[str]:
    r = _apply(op, x, y)
    forms = []
    if op == "+":
        forms += [f"{x} + {y} = {r}.", f"{y} + {x} = {r}."]
        sy = _split(y)
        if sy:
            forms.append(f"{x} + {y} = {x} + {sy[0]} + {sy[1]} = {r}.")
        sx = _split(x)
        if sx and sy:
            t, u = sx[0] + sy[0], sx[1] + sy[1]
            forms.append(f"{sx[0]} + {sy[0]} = {t}, {sx[1]} + {sy[1]} = {u}, {t} + {u} = {r}.")
    elif op == "-":
        forms += [f"{x} - {y} = {r}.", f"{x} - {y} = {r}, since {r} + {y} = {x}."]
        sy = _split(y)
        if sy:
            forms.append(f"{x} - {y} = {x} - {sy[0]} - {sy[1]} = {r}.")
    else:
        forms += [f"{x} * {y} = {r}.", f"{x} times {y} is {r}."]
        sx = _split(x)
        if sx:
            forms.append(
                f"{x} * {y} = {sx[0]} * {y} + {sx[1]} * {y} = {sx[0] * y} + {sx[1] * y} = {r}."
            )
    return forms


_ENDINGS = (
    "So the answer is \\boxed{{{a}}}.",
    "Total: \\boxed{{{a}}}",
    "The answer is \\boxed{{{a}}}.",
    "\\boxed{{{a}}}",
    "Answer: \\boxed{{{a}}}",
)


def worked_solutions(problem: Problem, rng: random.Random, k: int) -> list[str]:
    """Up to ``k`` distinct valid worked solutions of a procedural problem, each ending in
    ``\\boxed{<answer>}``; forms vary by decomposition, operand order and closing phrase.

    Solutions over MAX_SOLUTION_CHARS are used only when no shorter form exists. Returns fewer
    than ``k`` when fewer distinct forms exist.
    """
    steps = problem.meta.get("steps")
    if not steps:
        raise ValueError(
            f"problem {problem.id}: no meta['steps']; worked solutions need a procedural problem"
        )
    per_step = [_step_forms(*s) for s in steps]
    cands = []
    for combo in itertools.product(*per_step):
        for end in _ENDINGS:
            cands.append(" ".join(combo) + " " + end.format(a=problem.answer))
    cands = list(dict.fromkeys(cands))  # equal operands (2 + 2) give repeated forms
    short = [c for c in cands if len(c) <= MAX_SOLUTION_CHARS]
    pool = short or sorted(cands, key=len)[: max(k, 1)]
    rng.shuffle(pool)
    return pool[:k]
