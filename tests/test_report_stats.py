"""The report's statistics: t-intervals over seeds and bootstrap intervals over problems, checked
against hand-computed numbers and a plain-Python re-implementation of the resampling."""

import math

import numpy as np
import pytest

from rftctl.evaluation.metrics import pass_at_k
from rftctl.report import bootstrap as bs
from rftctl.report.intervals import Interval, percentile_interval, t_interval, t_quantile_975


# ------------------------------------------------------------------------------------------
# t-interval
# ------------------------------------------------------------------------------------------
def test_t_interval_by_hand():
    # [1, 2, 3]: mean 2, sd 1, se 1/sqrt(3), t_{0.975,2} = 4.302652730 -> 2 -+ 2.484138
    iv = t_interval([1.0, 2.0, 3.0])
    assert iv.low == pytest.approx(2 - 2.4841377, abs=1e-6) and iv.high == pytest.approx(
        2 + 2.4841377, abs=1e-6
    )
    # [10, 12]: mean 11, sd sqrt(2), se 1, t_{0.975,1} = 12.706205 -> [-1.706205, 23.706205]
    iv = t_interval([10.0, 12.0])
    assert iv == pytest.approx((-1.706204736, 23.706204736))
    assert t_interval([5.0, 5.0, 5.0]) == (5.0, 5.0)  # no spread, no width
    with pytest.raises(ValueError, match="at least 2 values"):
        t_interval([1.0])


def _t_density_mass(t: float, df: int, steps: int = 200_000) -> float:
    """P(|T| <= t) for Student's t with df degrees of freedom, by Simpson's rule on the density."""
    c = math.exp(math.lgamma((df + 1) / 2) - math.lgamma(df / 2)) / math.sqrt(df * math.pi)
    x = np.linspace(0.0, t, steps + 1)
    f = c * (1 + x**2 / df) ** (-(df + 1) / 2)
    h = t / steps
    return 2 * h / 3 * (f[0] + f[-1] + 4 * f[1:-1:2].sum() + 2 * f[2:-1:2].sum())


@pytest.mark.parametrize("df", [1, 2, 3, 5, 10, 29, 30, 31, 45, 100])
def test_t_quantiles_hold_95_percent_of_the_density(df):
    # the tabulated (df <= 30) and expanded (df > 30) quantiles, re-derived by integration
    assert _t_density_mass(t_quantile_975(df), df) == pytest.approx(0.95, abs=2e-6)


def test_t_quantile_expansion_meets_the_table_at_30():
    assert t_quantile_975(31) < t_quantile_975(30) < t_quantile_975(29)
    assert t_quantile_975(10_000) == pytest.approx(1.959963985, abs=1e-3)
    with pytest.raises(ValueError):
        t_quantile_975(0)


def test_interval_excludes_zero():
    assert Interval(0.1, 0.3).excludes_zero() and Interval(-0.3, -0.1).excludes_zero()
    assert not Interval(-0.1, 0.3).excludes_zero() and not Interval(0.0, 0.0).excludes_zero()
    assert Interval(1.0, 4.0).half_width == 1.5


# ------------------------------------------------------------------------------------------
# bootstrap
# ------------------------------------------------------------------------------------------
def _brute_force_means(values: list[float], resamples: int, seed: int) -> list[float]:
    """The replicates, one Python loop per resample, with the draws the module makes for one
    block."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(values), size=(resamples, len(values)))
    return [sum(values[j] for j in row) / len(values) for row in idx.tolist()]


def _percentile(xs: list[float], q: float) -> float:
    """numpy's default (linear) percentile, by hand."""
    s = sorted(xs)
    pos = q / 100 * (len(s) - 1)
    lo = math.floor(pos)
    return s[lo] + (s[min(lo + 1, len(s) - 1)] - s[lo]) * (pos - lo)


def test_resampled_means_match_a_python_loop():
    values = [0.0, 0.25, 1.0, 0.5, 0.75, 0.0, 1.0]
    got = bs.resampled_means(np.array(values), resamples=300, seed=7)[0]
    assert got.tolist() == pytest.approx(_brute_force_means(values, 300, 7), abs=1e-12)
    iv = percentile_interval(got)
    reps = _brute_force_means(values, 300, 7)
    assert iv == pytest.approx((_percentile(reps, 2.5), _percentile(reps, 97.5)), abs=1e-12)


def test_rows_share_the_draws_and_blocks_do_not_change_the_mean_distribution(monkeypatch):
    v = np.array([[0.0, 1.0, 0.5, 0.25], [1.0, 2.0, 1.5, 1.25]])  # row 2 = row 1 + 1
    reps = bs.resampled_means(v, resamples=500, seed=3)
    assert np.allclose(reps[1] - reps[0], 1.0)  # the same problems drawn for both rows
    monkeypatch.setattr(bs, "_BLOCK_CELLS", 8)  # 1 resample per block
    small = bs.resampled_means(v, resamples=500, seed=3)
    assert small.shape == (2, 500) and np.allclose(small[1] - small[0], 1.0)
    assert abs(small[0].mean() - v[0].mean()) < 0.05  # unbiased for the mean


def test_two_problem_bootstrap_interval_by_hand():
    # values [0, 1]: a replicate mean is 0, 0.5 or 1 with probability 1/4, 1/2, 1/4, so the
    # 2.5th and 97.5th percentiles of many replicates are 0 and 1
    counts = {"a": (4, 0), "b": (4, 4)}
    iv = bs.metric_interval([counts], "avg", 4, resamples=2000, seed=0)
    assert iv == (0.0, 1.0)


def test_identical_runs_give_a_zero_interval():
    counts = {f"q{i}": (8, c) for i, c in enumerate([0, 3, 8, 5, 1, 2, 7])}
    for kind, k in (("avg", 8), ("pass", 1), ("pass", 4), ("pass", 8)):
        iv = bs.paired_difference([counts], [dict(counts)], kind, k, resamples=2000, seed=0)
        assert iv == (0.0, 0.0) and not iv.excludes_zero()


def test_better_on_every_problem_excludes_zero_and_pairing_matters():
    base = {f"q{i}": (8, c) for i, c in enumerate([0, 1, 2, 3, 4, 5, 6, 7] * 4)}
    better = {pid: (n, c + 1) for pid, (n, c) in base.items()}
    iv = bs.paired_difference([better], [base], "avg", 8, resamples=2000, seed=0)
    # every per-problem difference is exactly 1/8: each replicate is 1/8, so is the interval
    assert iv == pytest.approx((0.125, 0.125)) and iv.excludes_zero()
    # unpaired, the two runs' own intervals overlap: the spread between problems would hide it
    a = bs.metric_interval([better], "avg", 8, resamples=2000, seed=0)
    b = bs.metric_interval([base], "avg", 8, resamples=2000, seed=1)
    assert a.low < b.high


def test_paired_difference_averages_seeds_inside_the_replicate():
    # run seeds: +1 and +3 correct samples on every problem -> the seed mean is +2/8 everywhere
    base = {f"q{i}": (8, c) for i, c in enumerate([1, 2, 3, 4])}
    s1 = {pid: (n, c + 1) for pid, (n, c) in base.items()}
    s3 = {pid: (n, c + 3) for pid, (n, c) in base.items()}
    iv = bs.paired_difference([s1, s3], [base], "avg", 8, resamples=500, seed=0)
    assert iv == pytest.approx((0.25, 0.25))
    # only problems every seed of both runs has are paired
    partial = {k: v for k, v in s3.items() if k != "q0"}
    diff = bs.seed_mean([s1, partial], bs.common_ids([s1, partial], [base]), "avg", 8)
    assert diff.shape == (3,)


def test_pass_at_k_values_come_from_the_unbiased_estimator():
    counts = {"a": (16, 3), "b": (16, 0), "c": (16, 16)}
    got = bs.problem_values(counts, ["a", "b", "c"], "pass", 4)
    assert got.tolist() == pytest.approx([pass_at_k(16, 3, 4), 0.0, 1.0])
    # 1 - C(13, 4) / C(16, 4) = 1 - 715 / 1820, by hand
    assert got[0] == pytest.approx(1 - 715 / 1820)
    with pytest.raises(ValueError, match="Avg@n only"):
        bs.problem_values(counts, ["a"], "avg", 4)


def test_pass_curve_is_monotone_with_a_band_around_it():
    per_seed = [{f"q{i}": (16, (i * 7) % 17) for i in range(50)}]
    ks = [1, 2, 4, 8, 16]
    mean, low, high = bs.pass_curve(per_seed, ks, resamples=1000, seed=0)
    assert np.all(np.diff(mean) >= 0)
    assert np.all(low <= mean + 1e-12) and np.all(mean <= high + 1e-12)
    assert mean[0] == pytest.approx(sum((i * 7) % 17 for i in range(50)) / (16 * 50))
    assert bs.pass_curve([{}], ks, resamples=10, seed=0) is None


def test_bootstrap_is_deterministic_for_a_seed():
    counts = {f"q{i}": (16, i % 17) for i in range(500)}
    a = bs.metric_interval([counts], "pass", 4, resamples=2000, seed=0)
    b = bs.metric_interval([counts], "pass", 4, resamples=2000, seed=0)
    assert a == b
    assert bs.metric_interval([counts], "pass", 4, resamples=2000, seed=1) != a  # the seed matters
