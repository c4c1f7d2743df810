"""What the table's mark means: the paired t-test over seeds (Holm within its family) sets it; with
one seed a side there is none and the checkpoint test over problems is named as such, exact where
it says exact. Simulated runs of the same method check the mark's false-positive rate."""

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest

from rftctl.report import significance as sig
from rftctl.report.bootstrap import Resampling
from rftctl.report.inputs import parse_eval_metrics
from rftctl.report.intervals import t_pvalue, t_quantile_975
from rftctl.report.render import (
    DAGGER,
    footnote,
    format_delta,
    format_p,
    to_csv,
    to_markdown,
    to_records,
)
from rftctl.report.tables import (
    FAMILY_ALL,
    FAMILY_CHECKPOINT,
    FAMILY_PRIMARY,
    FAMILY_SECONDARY,
    Entry,
    build_table,
)

RES = Resampling(resamples=2000, seed=0)


def entry_from_counts(
    run: str, display: str, counts_by_seed: dict[int, dict[str, tuple[int, int]]], name="aime24"
):
    evals, per = {}, {}
    for seed, counts in counts_by_seed.items():
        n = next(iter(counts.values()))[0]
        vals = {
            f"avg@{n}": sum(c for _, c in counts.values()) / (n * len(counts)),
            f"pass@{n}": sum(c > 0 for _, c in counts.values()) / len(counts),
        }
        doc = {
            "run": run,
            "seed": seed,
            "method": run,
            "display": display,
            "sets": {
                name: {
                    "n": n,
                    "ks": [n],
                    "temperature": 0.7,
                    "top_p": 1.0,
                    "max_new_tokens": 64,
                    "seed": 0,
                    "num_problems": len(counts),
                    **vals,
                }
            },
        }
        evals[seed] = parse_eval_metrics(doc, f"<{run}>")
        per[seed] = {name: counts}
    return Entry(run, display, evals, per)


def _aime_pair(gains: int, losses: int, n: int = 32, problems: int = 30):
    """GRPO and a run on 30 problems at n = 32, one seed each: ``gains`` problems the run solves
    once and GRPO never, ``losses`` the reverse, 10 both solve (16 of 32), the rest neither."""
    base, run = {}, {}
    for i in range(problems):
        if i < gains:
            base[f"p{i}"], run[f"p{i}"] = (n, 0), (n, 1)
        elif i < gains + losses:
            base[f"p{i}"], run[f"p{i}"] = (n, 1), (n, 0)
        elif i < gains + losses + 10:
            base[f"p{i}"] = run[f"p{i}"] = (n, 16)
        else:
            base[f"p{i}"] = run[f"p{i}"] = (n, 0)
    return [
        entry_from_counts("none", "GRPO", {0: base}),
        entry_from_counts("clipb", "GRPO+ClipB", {0: run}),
    ]


# ------------------------------------------------------------------------------------------
# one seed a side: the checkpoint test, never a mark
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("gains", "losses", "p"), [(4, 0, 2 / 16), (8, 0, 2 / 256), (8, 2, 2 * 56 / 1024)]
)
def test_one_seed_shows_the_checkpoint_test_and_no_mark(gains, losses, p):
    table = build_table(
        _aime_pair(gains, losses), set_order=["aime24"], ks=None, baseline="none", bootstrap=RES
    )
    pass32 = table.rows[1].cells[1]
    # the two-sided sign test: P(|#gains - m/2| >= observed) under Binomial(m, 1/2)
    assert pass32.test.p == pytest.approx(p, rel=1e-12) and pass32.test.kind == sig.SIGN_FLIP_EXACT
    assert pass32.family == FAMILY_CHECKPOINT and not pass32.marked
    md = to_markdown(table)
    assert DAGGER not in md.split("\n\n")[0] and f"checkpoints p={format_p(p)}" in md
    note = footnote(table)
    assert f"no {DAGGER} where a side has one seed" in note
    assert "whether these two checkpoints differ on these problems" in note
    assert (
        "1 comparison: 1 method x 1 set x 2 metrics" not in note
    )  # the checkpoint family counts 2 cells
    assert "2 comparisons: 1 method x 1 set x 2 metrics" in note


# ------------------------------------------------------------------------------------------
# exact p over problems
# ------------------------------------------------------------------------------------------
def _brute_force_p(d: list[Fraction]) -> Fraction:
    """Fraction of all 2^P sign patterns (zeros included) with |sum| >= |observed|, in exact
    rationals."""
    obs = abs(sum(d))
    hits = sum(
        abs(sum(s * x for s, x in zip(signs, d))) >= obs
        for signs in itertools.product((1, -1), repeat=len(d))
    )
    return Fraction(hits, 2 ** len(d))


def _exact_big_int_p(a: list[int]) -> Fraction:
    """The sign-flip law of integer differences by convolution in Python's exact integers (slow;
    an independent check of the float64 convolution on large cases)."""
    counts = {0: 1}
    for x in a:
        nxt: dict[int, int] = {}
        for v, c in counts.items():
            nxt[v + x] = nxt.get(v + x, 0) + c
            nxt[v - x] = nxt.get(v - x, 0) + c
        counts = nxt
    obs = abs(sum(a))
    return Fraction(sum(c for v, c in counts.items() if abs(v) >= obs), 2 ** len(a))


@pytest.mark.parametrize("seed", range(6))
def test_avg_at_n_differences_are_exact_against_brute_force(seed):
    rng = np.random.default_rng(seed)
    n = 8
    run = {f"q{i}": (n, int(c)) for i, c in enumerate(rng.integers(0, n + 1, size=13))}
    base = {f"q{i}": (n, int(c)) for i, c in enumerate(rng.integers(0, n + 1, size=13))}
    ints, den = sig.problem_differences([run], [base], "avg", n)
    assert den == n and ints == [run[k][1] - base[k][1] for k in sorted(run)]
    want = float(_brute_force_p([Fraction(x, den) for x in ints]))
    res = sig.sign_flip_test(ints, seed=0)
    assert res.kind == sig.SIGN_FLIP_EXACT and res.size == sum(x != 0 for x in ints)
    assert res.p == pytest.approx(want, rel=1e-12)
    # the same differences as floats c / n reach the same exact path
    assert sig.sign_flip_test([x / den for x in ints], seed=0).p == pytest.approx(want, rel=1e-12)
    # and the enumeration (used when the integers are too large to convolve) agrees
    a = [abs(x) for x in ints if x]
    assert sig._enumeration_p(a, abs(sum(ints))) == pytest.approx(want, rel=1e-12)


def test_pass_at_k_below_n_is_exact_by_enumeration_with_few_discordant_problems():
    n, k = 16, 4
    rng = np.random.default_rng(5)
    run = {f"q{i}": (n, int(c)) for i, c in enumerate(rng.integers(0, 6, size=12))}
    base = {f"q{i}": (n, int(c)) for i, c in enumerate(rng.integers(0, 6, size=12))}
    ints, den = sig.problem_differences([run], [base], "pass", k)
    assert den == math.comb(n, k) or den % 1 == 0
    want = _brute_force_p([Fraction(x, den) for x in ints])
    res = sig.sign_flip_test(ints, seed=0)
    assert res.kind == sig.SIGN_FLIP_EXACT and res.p == pytest.approx(float(want), rel=1e-12)


def test_500_problem_convolution_matches_exact_integers_and_prints_below_1e_6():
    # 500 problems, n = 16: the run solves about 1.5 more samples per problem
    rng = np.random.default_rng(11)
    rates = rng.beta(1.2, 1.8, size=500)
    base = rng.binomial(16, rates)
    run = rng.binomial(16, np.clip(rates + 0.09, 0, 1))
    d = (run - base).tolist()
    res = sig.sign_flip_test(d, seed=0)
    assert (
        res.kind == sig.SIGN_FLIP_EXACT and res.size == sum(x != 0 for x in d) > sig.ENUMERATE_MAX
    )
    exact = _exact_big_int_p([abs(x) for x in d if x])
    assert res.p == pytest.approx(float(exact), rel=1e-9)
    assert res.p < 1e-6 and not res.bound
    # printed as the p it is, never as a Monte Carlo floor
    text = format_p(res.p)
    assert text == f"{res.p:.1e}" and "5.0e-05" not in text
    assert float(text) < 1e-6


def test_a_monte_carlo_result_is_said_so_with_its_standard_error_and_a_bound_reads_as_one():
    # Pass@K with K < n over many discordant problems: denominators too large to convolve
    rng = np.random.default_rng(3)
    n, k = 64, 32
    base_c = rng.integers(3, 12, size=60)  # 1 - C(64 - c, 32) / C(64, 32): denominators grow with c
    base = {f"q{i}": (n, int(c)) for i, c in enumerate(base_c)}
    run = {f"q{i}": (n, int(c) + 3) for i, c in enumerate(base_c)}
    ints, _ = sig.problem_differences([run], [base], "pass", k)
    res = sig.sign_flip_test(ints, seed=1)
    assert sum(abs(x) for x in ints) > sig.CONV_MAX and len(ints) > sig.ENUMERATE_MAX
    assert res.kind == sig.SIGN_FLIP_MC and res.bound  # the run is ahead on every problem
    assert res.p == 1 / (1 + sig.MC_FLIPS) and res.se is not None
    assert format_p(res.p, bound=True) == "<5.0e-05"
    assert sig.sign_flip_test(ints, seed=1) == res  # the report's seed fixes the draws
    # a Monte Carlo p that is not a bound carries its standard error
    mixed = [x if i % 2 else -x for i, x in enumerate(ints)]
    res2 = sig.sign_flip_test(mixed, seed=1)
    assert res2.kind == sig.SIGN_FLIP_MC and not res2.bound
    assert res2.se == pytest.approx(math.sqrt(res2.p * (1 - res2.p) / sig.MC_FLIPS))


def test_no_discordant_problem_gives_p_one():
    assert sig.sign_flip_test([0, 0, 0], seed=0)[:3] == (1.0, sig.SIGN_FLIP_EXACT, 0)
    with pytest.raises(ValueError, match="1-d array"):
        sig.sign_flip_test(np.zeros((2, 2)), seed=0)


# ------------------------------------------------------------------------------------------
# over seeds: the mark's test, its bracket and the sign-flip over seeds
# ------------------------------------------------------------------------------------------
def _t_tail_by_integration(t: float, df: float, steps: int = 400_000) -> float:
    """P(|T| >= t) = 1 - 2 * integral_0^t of the t density (Simpson's rule)."""
    c = math.exp(math.lgamma((df + 1) / 2) - math.lgamma(df / 2)) / math.sqrt(df * math.pi)
    x = np.linspace(0.0, t, steps + 1)
    f = c * (1 + x**2 / df) ** (-(df + 1) / 2)
    h = t / steps
    return 1 - 2 * h / 3 * (f[0] + f[-1] + 4 * f[1:-1:2].sum() + 2 * f[2:-1:2].sum())


@pytest.mark.parametrize(
    ("t", "df"), [(1.0, 1), (2.5, 2), (0.3, 3), (4.1, 3.7), (2.0, 10), (1.96, 200)]
)
def test_t_pvalue_matches_the_integrated_density(t, df):
    assert t_pvalue(t, df) == pytest.approx(_t_tail_by_integration(t, df), abs=1e-8)
    assert t_pvalue(-t, df) == t_pvalue(t, df)


def test_t_pvalue_at_the_tabulated_quantile_is_five_percent():
    for df in (1, 2, 3, 5, 10, 30):
        assert t_pvalue(t_quantile_975(df), df) == pytest.approx(0.05, abs=1e-8)
    with pytest.raises(ValueError):
        t_pvalue(1.0, 0)


def test_paired_t_and_sign_flip_over_seeds_by_hand():
    # differences 1, 2, 3: mean 2, sd 1, se 1/sqrt(3), t = 2 sqrt(3), df 2
    res = sig.paired_t_test([11.0, 22.0, 33.0], [10.0, 20.0, 30.0])
    assert res.kind == sig.PAIRED_T and res.size == 3
    assert res.p == pytest.approx(_t_tail_by_integration(2 * math.sqrt(3), 2), abs=1e-8)
    assert sig.paired_t_test([2.0, 3.0], [1.0, 2.0]).p == 0.0
    assert sig.paired_t_test([1.0, 2.0], [1.0, 2.0]).p == 1.0
    # three positive differences: only the all-plus and all-minus patterns are as extreme
    flip = sig.seed_sign_flip_test([1.0, 2.0, 3.0])
    assert flip.p == 2 / 8 == flip.min_p == 0.25
    # 1, 2, -0.5: |sum| = 2.5; patterns with |sum| >= 2.5: +-(1+2+0.5), +-(1+2-0.5), +-(-1+2+0.5)?
    # no:
    # sums of +-1 +-2 +-0.5 are 3.5, 2.5, 1.5, 0.5 and their negatives: 4 of 8 reach 2.5
    assert sig.seed_sign_flip_test([1.0, 2.0, -0.5]).p == 4 / 8
    assert sig.seed_sign_flip_test([0.1] * 6).min_p == 2 / 64


def test_seed_comparison_needs_the_same_seeds_on_both_sides():
    assert sig.seed_comparison({0: 0.5}, {0: 0.4}) is None
    assert sig.seed_comparison({0: 0.5, 1: 0.6}, {0: 0.4}) is None
    assert sig.seed_comparison({0: 0.5, 1: 0.6}, {0: 0.4, 2: 0.3}) is None
    c = sig.seed_comparison({0: 0.5, 1: 0.6, 2: 0.9}, {0: 0.4, 1: 0.3, 2: 0.5})
    assert c.differences == pytest.approx((0.1, 0.3, 0.4))
    half = t_quantile_975(2) * np.std([0.1, 0.3, 0.4], ddof=1) / math.sqrt(3)
    assert c.interval.low == pytest.approx(0.8 / 3 - half) and c.interval.high == pytest.approx(
        0.8 / 3 + half
    )


def _counts(gains: int) -> dict[str, tuple[int, int]]:
    return {f"p{i}": (32, 1 if i < gains else 0) for i in range(30)}


def test_three_seeds_mark_by_the_paired_t_with_its_own_interval():
    # seed s: the run gains 2 + s problems over GRPO at Pass@32, so per-seed differences are
    # 2/30, 3/30, 4/30 (mean 3/30, sd 1/30): t = 3 sqrt(3), df 2, p = 0.0351
    base = entry_from_counts("none", "GRPO", {s: _counts(0) for s in range(3)})
    run = entry_from_counts("clipb", "GRPO+ClipB", {s: _counts(2 + s) for s in range(3)})
    table = build_table(
        [base, run],
        set_order=["aime24"],
        ks=None,
        baseline="none",
        bootstrap=RES,
        primary=[("aime24", "pass@n")],
    )
    cell = table.rows[1].cells[1]
    assert cell.test.kind == sig.PAIRED_T and cell.test.size == 3
    assert cell.test.p == pytest.approx(_t_tail_by_integration(3 * math.sqrt(3), 2), abs=1e-8)
    # the bracket answers the same question: the t-interval of the per-seed differences
    half = t_quantile_975(2) * (100 / 30) / math.sqrt(3)
    assert cell.delta_interval.low == pytest.approx(
        10 - half
    ) and cell.delta_interval.high == pytest.approx(10 + half)
    assert cell.delta_interval.low > 0  # agrees with p < 0.05
    # one primary endpoint: Holm over one comparison is the raw p; the Avg@32 cell is secondary
    assert cell.family == FAMILY_PRIMARY and cell.p_adjusted == cell.test.p and cell.marked
    avg = table.rows[1].cells[0]
    assert avg.family == FAMILY_SECONDARY and not avg.marked
    assert cell.seed_flip.p == 0.25 and cell.seed_flip.min_p == 0.25
    text = format_delta(cell)
    assert "p=0.035, Holm 0.035; sign-flip p=0.250 (min 0.250)" in text and text.endswith(DAGGER)
    note = footnote(table)
    assert "paired t-test of the per-seed differences" in note
    assert "differs from the baseline over training seeds" in note
    assert (
        "the declared primary endpoints (aime24 pass@n), 1 comparison: 1 method x 1 set x 1 metric"
        in note
    )
    assert "cells outside the primary endpoints show their unadjusted p" in note
    assert "checkpoint" not in note
    # the p-values travel to the CSV and the JSON records, the adjusted one beside the raw one
    header, _, clipb = to_csv(table).splitlines()
    row = dict(zip(header.split(","), clipb.split(",")))
    assert float(row["aime24 Pass@32 p"]) == pytest.approx(cell.test.p, rel=1e-5)
    assert float(row["aime24 Pass@32 p holm"]) == pytest.approx(cell.p_adjusted, rel=1e-5)
    assert row["aime24 Pass@32 test"] == sig.PAIRED_T and row["aime24 Pass@32 marked"] == "1"
    assert row["aime24 Pass@32 sign-flip min p"] == "0.25"
    rec = to_records(table)[1]
    assert rec["p_holm"]["aime24 Pass@32"] == cell.p_adjusted and rec["marked"] == [
        "aime24 Pass@32"
    ]


def test_holm_by_hand_and_the_mark_uses_the_adjusted_p():
    assert sig.holm([0.01, 0.04, 0.03, 0.2]) == pytest.approx([0.04, 0.09, 0.09, 0.2])
    assert sig.holm([0.5, 0.001]) == pytest.approx([0.5, 0.002])
    assert sig.holm([]) == []
    # a three-seed cell with raw p = 0.0351 among 2 metrics: Holm doubles the smaller p
    base = entry_from_counts("none", "GRPO", {s: _counts(0) for s in range(3)})
    run = entry_from_counts("clipb", "GRPO+ClipB", {s: _counts(2 + s) for s in range(3)})
    table = build_table([base, run], set_order=["aime24"], ks=None, baseline="none", bootstrap=RES)
    cells = table.rows[1].cells
    assert {c.family for c in cells} == {FAMILY_ALL}
    raw = [c.test.p for c in cells]
    assert [c.p_adjusted for c in cells] == pytest.approx(sig.holm(raw))
    assert all((c.p_adjusted <= 0.05) == c.marked for c in cells)
    note = footnote(table)
    assert "every cell with a seed-level test, 2 comparisons: 1 method x 1 set x 2 metrics" in note


def test_mixed_seed_counts_carry_no_test_and_the_table_says_so():
    base = entry_from_counts("none", "GRPO", {0: _counts(0)})
    run = entry_from_counts("clipb", "GRPO+ClipB", {s: _counts(8 + s) for s in range(3)})
    table = build_table([base, run], set_order=["aime24"], ks=None, baseline="none", bootstrap=RES)
    assert all(c.test is None and not c.marked and c.delta is not None for c in table.rows[1].cells)
    assert any("seeds 0, 1, 2 against GRPO's 0: no test and no mark" in n for n in table.notes)
    assert DAGGER not in to_markdown(table)


# ------------------------------------------------------------------------------------------
# the mark's false-positive rate: two runs of the same method (docs/methods.md)
# ------------------------------------------------------------------------------------------
def same_method_runs(rng, logit, seeds, n=16):
    """{seed: {problem: (n, c)}} of one run: seed s shifts every problem's logit by a common
    N(0, 0.1) (training noise, about 2 points of Avg@16) before n samples per problem."""
    out = {}
    for s in range(seeds):
        p = 1 / (1 + np.exp(-(logit + rng.normal(0.0, 0.1))))
        c = rng.binomial(n, p)
        out[s] = {f"q{i}": (n, int(x)) for i, x in enumerate(c)}
    return out


@pytest.mark.parametrize("seeds", [1, 3])
def test_the_same_method_twice_is_rarely_marked(seeds):
    # 200 draws of 500 problems: GRPO, and "ClipB" and "ClipV" that are copies of GRPO's method
    rng = np.random.default_rng(20261207 + seeds)
    res = Resampling(resamples=100, seed=0)
    marked = 0
    for _ in range(200):
        logit = rng.normal(-0.8, 1.6, size=500)  # per-problem difficulty (demo-like Avg@16 ~ 0.3)
        entries = [
            entry_from_counts(run, disp, same_method_runs(rng, logit, seeds), name="arith")
            for run, disp in (("none", "GRPO"), ("clipb", "GRPO+ClipB"), ("clipv", "GRPO+ClipV"))
        ]
        table = build_table(entries, set_order=["arith"], ks=None, baseline="none", bootstrap=res)
        marked += any(c.marked for c in table.rows[1].cells)
        if seeds == 1:
            assert DAGGER not in to_markdown(table).split("\n\n")[0]
    if seeds == 1:
        assert marked == 0
    else:
        assert marked <= 20, marked  # at most 10 % of 200 draws
