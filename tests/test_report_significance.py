"""The significance mark: the exact paired sign-flip test over problems, the t-tests over seeds, the
table and files that carry their p-values, and the mark's false-positive rate by simulation."""

import itertools
import math

import numpy as np
import pytest

from rftctl.report import significance as sig
from rftctl.report.bootstrap import Resampling
from rftctl.report.inputs import parse_eval_metrics
from rftctl.report.intervals import t_pvalue, t_quantile_975
from rftctl.report.render import DAGGER, footnote, to_csv, to_markdown, to_records
from rftctl.report.tables import Entry, build_table

RES = Resampling(resamples=2000, seed=0)


# ------------------------------------------------------------------------------------------
# acceptance 1: AIME-sized pair at Pass@32
# ------------------------------------------------------------------------------------------
def _aime_pair(gains: int, losses: int, n: int = 32, problems: int = 30):
    """GRPO and a run on 30 problems at n = 32: ``gains`` problems the run solves once and GRPO
    never, ``losses`` the reverse, 10 both solve (16 of 32), the rest neither."""
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
    return [_entry("none", "GRPO", {0: base}), _entry("clipb", "GRPO+ClipB", {0: run})]


def _entry(run: str, display: str, counts_by_seed: dict[int, dict[str, tuple[int, int]]], name="aime24"):
    evals, per = {}, {}
    for seed, counts in counts_by_seed.items():
        n = next(iter(counts.values()))[0]
        vals = {f"avg@{n}": sum(c for _, c in counts.values()) / (n * len(counts)),
                f"pass@{n}": sum(c > 0 for _, c in counts.values()) / len(counts)}
        doc = {"run": run, "seed": seed, "method": run, "display": display, "sets": {name: {
            "n": n, "ks": [n], "temperature": 0.7, "top_p": 1.0, "max_new_tokens": 64, "seed": 0,
            "num_problems": len(counts), **vals}}}
        evals[seed] = parse_eval_metrics(doc, f"<{run}>")
        per[seed] = {name: counts}
    return Entry(run, display, evals, per)


def test_four_gains_no_losses_is_not_marked_p_0125():
    table = build_table(_aime_pair(4, 0), set_order=["aime24"], ks=None, baseline="none", bootstrap=RES)
    pass32 = table.rows[1].cells[1]
    assert table.columns[1].header == "aime24 Pass@32"
    assert pass32.delta == pytest.approx(100 * 4 / 30, abs=0.01)
    # the exact test: 2 of the 2^4 sign patterns are as extreme as 4 gains and 0 losses
    assert pass32.test.p == 2 / 16 and pass32.test.kind == sig.SIGN_FLIP_EXACT and pass32.test.size == 4
    assert not pass32.significant
    # the percentile bootstrap interval excludes 0 here: the over-claim the test replaces
    assert pass32.delta_interval.low > 0
    md = to_markdown(table)
    assert "p=0.125 |" in md and DAGGER not in md.split("\n\n")[0]


def test_eight_gains_no_losses_is_marked_p_00078():
    table = build_table(_aime_pair(8, 0), set_order=["aime24"], ks=None, baseline="none", bootstrap=RES)
    pass32 = table.rows[1].cells[1]
    assert pass32.test.p == 2 / 256 and pass32.significant
    md = to_markdown(table)
    assert f"p=0.0078{DAGGER}" in md and f"(+{100 * 8 / 30:.2f}{DAGGER})" in md


def test_gains_and_losses_follow_the_two_sided_sign_test():
    # 8 gains and 2 losses: P(|#gains - 5| >= 3) under Binomial(10, 1/2) = 2 * (1 + 10 + 45) / 1024
    table = build_table(_aime_pair(8, 2), set_order=["aime24"], ks=None, baseline="none", bootstrap=RES)
    assert table.rows[1].cells[1].test.p == pytest.approx(2 * 56 / 1024, rel=1e-12)


# ------------------------------------------------------------------------------------------
# the sign-flip test against brute force
# ------------------------------------------------------------------------------------------
def _brute_force_p(d: list[float]) -> float:
    """Fraction of all 2^P sign patterns (zeros included) with |sum| >= |observed| (exact
    rationals via a 1e-12 slack on float sums of the same terms)."""
    obs = abs(math.fsum(d))
    hits = sum(abs(math.fsum(s * x for s, x in zip(signs, d))) >= obs - 1e-12
               for signs in itertools.product((1, -1), repeat=len(d)))
    return hits / 2 ** len(d)


@pytest.mark.parametrize("seed", range(5))
def test_exact_sign_flip_matches_brute_force_enumeration(seed):
    rng = np.random.default_rng(seed)
    # per-problem differences of Avg@8 (multiples of 1/8), ties and zeros included
    d = (rng.integers(-3, 5, size=12) / 8.0).tolist()
    res = sig.sign_flip_test(d, seed=0)
    assert res.kind == sig.SIGN_FLIP_EXACT and res.size == sum(x != 0 for x in d)
    assert res.p == pytest.approx(_brute_force_p(d), abs=1e-15)


def test_monte_carlo_beyond_exact_max_is_seeded_and_close_to_exact():
    rng = np.random.default_rng(3)
    d = rng.normal(0.02, 0.1, size=sig.EXACT_MAX + 2)
    mc = sig.sign_flip_test(d, seed=7)
    assert mc.kind == sig.SIGN_FLIP_MC and mc.size == d.size
    assert sig.sign_flip_test(d, seed=7) == mc  # the report's seed fixes it
    exact = sig._exact_hits(np.abs(d), abs(d.sum()) - 1e-9) / 2.0**d.size
    se = math.sqrt(exact * (1 - exact) / sig.MC_FLIPS)
    assert abs(mc.p - exact) < 5 * se + 1 / sig.MC_FLIPS


def test_no_discordant_problem_gives_p_one():
    assert sig.sign_flip_test([0.0, 0.0, 0.0], seed=0) == (1.0, sig.SIGN_FLIP_EXACT, 0)
    with pytest.raises(ValueError, match="1-d array"):
        sig.sign_flip_test(np.zeros((2, 2)), seed=0)


# ------------------------------------------------------------------------------------------
# t-tests over seeds
# ------------------------------------------------------------------------------------------
def _t_tail_by_integration(t: float, df: float, steps: int = 400_000) -> float:
    """P(|T| >= t) = 1 - 2 * integral_0^t of the t density (Simpson's rule)."""
    c = math.exp(math.lgamma((df + 1) / 2) - math.lgamma(df / 2)) / math.sqrt(df * math.pi)
    x = np.linspace(0.0, t, steps + 1)
    f = c * (1 + x**2 / df) ** (-(df + 1) / 2)
    h = t / steps
    return 1 - 2 * h / 3 * (f[0] + f[-1] + 4 * f[1:-1:2].sum() + 2 * f[2:-1:2].sum())


@pytest.mark.parametrize(("t", "df"), [(1.0, 1), (2.5, 2), (0.3, 3), (4.1, 3.7), (2.0, 10), (1.96, 200)])
def test_t_pvalue_matches_the_integrated_density(t, df):
    assert t_pvalue(t, df) == pytest.approx(_t_tail_by_integration(t, df), abs=1e-8)
    assert t_pvalue(-t, df) == t_pvalue(t, df)


def test_t_pvalue_at_the_tabulated_quantile_is_five_percent():
    for df in (1, 2, 3, 5, 10, 30):
        assert t_pvalue(t_quantile_975(df), df) == pytest.approx(0.05, abs=1e-8)
    assert t_pvalue(1.0, 1) == pytest.approx(0.5, abs=1e-12)  # Cauchy: P(|T| >= 1) = 1/2
    with pytest.raises(ValueError):
        t_pvalue(1.0, 0)


def test_paired_t_by_hand():
    # differences 1, 2, 3: mean 2, sd 1, se 1/sqrt(3), t = 2 sqrt(3), df 2
    res = sig.paired_t_test([11.0, 22.0, 33.0], [10.0, 20.0, 30.0])
    assert res.kind == sig.PAIRED_T and res.size == 3
    assert res.p == pytest.approx(_t_tail_by_integration(2 * math.sqrt(3), 2), abs=1e-8)
    # every seed shows the same non-zero difference: certain; no difference at all: p = 1
    assert sig.paired_t_test([2.0, 3.0], [1.0, 2.0]).p == 0.0
    assert sig.paired_t_test([1.0, 2.0], [1.0, 2.0]).p == 1.0


def test_welch_by_hand():
    # run 1, 2, 3 (var 1), baseline 2, 4, 6, 8 (var 20/3): se^2 = 1/3 + 5/3 = 2,
    # df = 4 / ((1/3)^2 / 2 + (5/3)^2 / 3) = 4 / (1/18 + 25/27) = 216 / 53
    res = sig.welch_t_test([1.0, 2.0, 3.0], [2.0, 4.0, 6.0, 8.0])
    assert res.kind == sig.WELCH_T
    assert res.p == pytest.approx(_t_tail_by_integration(3 / math.sqrt(2), 216 / 53), abs=1e-8)


def test_seed_test_chooses_paired_or_welch_or_none():
    assert sig.seed_test({0: 0.5}, {0: 0.4, 1: 0.3}) is None
    assert sig.seed_test({0: 0.5, 1: 0.6}, {0: 0.4, 1: 0.3}).kind == sig.PAIRED_T
    assert sig.seed_test({0: 0.5, 1: 0.6}, {0: 0.4, 2: 0.3}).kind == sig.WELCH_T


def test_table_with_three_seeds_marks_by_the_seed_test_and_says_so():
    # seed s: the run gains 2 + s problems over GRPO at Pass@32, so per-seed differences are
    # 2/30, 3/30, 4/30 (mean 3/30, sd 1/30): t = 3 sqrt(3), df 2
    def counts(gains):
        return {f"p{i}": (32, 1 if i < gains else 0) for i in range(30)}
    base = _entry("none", "GRPO", {s: counts(0) for s in range(3)})
    run = _entry("clipb", "GRPO+ClipB", {s: counts(2 + s) for s in range(3)})
    table = build_table([base, run], set_order=["aime24"], ks=None, baseline="none", bootstrap=RES)
    cell = table.rows[1].cells[1]
    assert cell.test.kind == sig.PAIRED_T and cell.test.size == 3
    assert cell.test.p == pytest.approx(_t_tail_by_integration(3 * math.sqrt(3), 2), abs=1e-8)
    assert cell.significant  # p = 0.0377
    note = footnote(table)
    assert "paired t-test over the per-seed differences" in note
    assert "whether the method beats the baseline over training seeds" in note
    assert "sign-flip" not in note
    # the p-value travels to the CSV and the JSON records
    header, _, clipb = to_csv(table).splitlines()
    row = dict(zip(header.split(","), clipb.split(",")))
    assert float(row["aime24 Pass@32 p"]) == pytest.approx(cell.test.p, rel=1e-5)
    assert row["aime24 Pass@32 test"] == sig.PAIRED_T and row["aime24 Pass@32 significant"] == "1"
    rec = to_records(table)[1]
    assert rec["p_values"]["aime24 Pass@32"] == cell.test.p and rec["tests"]["aime24 Pass@32"] == sig.PAIRED_T


# ------------------------------------------------------------------------------------------
# false-positive rate by simulation: two runs drawn from the same per-problem rates
# ------------------------------------------------------------------------------------------
def test_sign_flip_false_positive_rate_is_about_five_percent():
    rng = np.random.default_rng(2024)
    reps, problems, n = 400, 40, 16
    marked = 0
    for r in range(reps):
        rates = rng.beta(0.6, 0.9, size=problems)  # many hard problems, some easy: AIME-like spread
        a, b = rng.binomial(n, rates), rng.binomial(n, rates)
        marked += sig.sign_flip_test((a - b) / n, seed=r).significant
    rate = marked / reps
    # binomial standard error at 5 % over 400 repetitions is 1.1 %: the bound 7 % is 1.8 se above
    assert 0.02 <= rate <= 0.07, rate


def _seed_runs(rng, logit, seeds, n):
    """[seeds, problems] Avg@n of one method: each training seed shifts every problem's logit."""
    shifts = rng.normal(0.0, 0.6, size=seeds)
    p = 1 / (1 + np.exp(-(logit[None, :] + shifts[:, None])))
    return rng.binomial(n, p) / n


def test_seed_test_false_positive_rate_with_training_noise():
    # each training seed shifts every problem's rate (training noise); both methods draw their
    # seeds' shifts from the same law, so any mark is a false positive. The problem-level
    # sign-flip test on seed-averaged values cannot see this noise and marks far more often.
    rng = np.random.default_rng(7)
    reps, problems, n, seeds = 400, 40, 16, 3
    marked_seed = marked_problem = 0
    for r in range(reps):
        rates = rng.beta(0.6, 0.9, size=problems)

        logit = np.log(rates + 1e-6) - np.log1p(-rates + 1e-6)
        a, b = (_seed_runs(rng, logit, seeds, n) for _ in range(2))
        test = sig.seed_test(dict(enumerate(a.mean(axis=1))), dict(enumerate(b.mean(axis=1))))
        marked_seed += test.significant
        marked_problem += sig.sign_flip_test(a.mean(axis=0) - b.mean(axis=0), seed=r).significant
    assert marked_seed / reps <= 0.07, marked_seed / reps
    assert marked_problem / reps > 0.2  # why the seed-aware mark exists
