"""Significance of a run's difference from its baseline: the test behind the table's dagger.

Two questions, two tests (the footnote names the one each table used):

* **One seed on either side** (the common case: one checkpoint per method). The question is
  "do these two checkpoints differ on these problems?". Each problem i has a paired difference
  d_i = v_run,i - v_base,i of its per-problem value (Avg@n: c / n; Pass@K: the unbiased
  estimator; several seeds on one side: that side's mean over its seeds). Under the null that
  the run and the baseline are exchangeable on every problem, each d_i is as likely to be +|d_i|
  as -|d_i|, so the randomisation distribution of T = sum_i d_i is that of sum_i s_i |d_i| over
  the 2^m sign patterns s of the m problems with d_i != 0 (problems with d_i = 0 contribute
  nothing). The two-sided p-value is the fraction of patterns with |T*| >= |T|. This is the
  paired sign-flip (Fisher-Pitman) test; with 0/1 values (Pass@n at K = n) it is exactly the
  two-sided sign test / exact McNemar test: 4 gains and 0 losses give p = 2 / 2^4 = 0.125, 8 and
  0 give p = 2 / 2^8 = 0.0078. Up to EXACT_MAX discordant problems every pattern is enumerated
  (exact); beyond, MC_FLIPS random patterns drawn with the report's seed give the unbiased-size
  p-value (1 + hits) / (1 + MC_FLIPS) (Phipson & Smyth 2010), whose Monte Carlo error near 0.05
  is below 0.0016. The percentile bootstrap interval, which over-claims when few problems differ
  (4 gains, 0 losses of 30: [+3.33, +26.67] although p = 0.125), is kept only as the size of the
  effect.

* **Two or more seeds on both sides.** The question is "does the method beat the baseline over
  training seeds, on these problems?". Training noise between seeds is usually larger than
  sampling noise between evaluations, and a problem-level test cannot see it. With the same
  seeds on both sides (seed k of the run and of the baseline share the base policy, the prompt
  order and the sampling seed) the per-seed differences D_k = metric_run,k - metric_base,k get a
  paired t-test with S - 1 degrees of freedom; with different seed sets, Welch's t-test with
  Welch-Satterthwaite degrees of freedom. The problem set is held fixed (the metric of a seed is
  its mean over the set's problems); with 3 seeds a difference must be about 4.3 standard errors
  of the per-seed differences (t_{0.975, 2}) to be marked.

Every test is two-sided at ALPHA = 0.05: the mark appears when p <= ALPHA.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from rftctl.report.intervals import t_pvalue

ALPHA = 0.05
EXACT_MAX = 20       # enumerate all 2^m sign patterns up to m = 20 discordant problems (1,048,576)
MC_FLIPS = 20_000    # random sign patterns beyond: Monte Carlo standard error of p near 0.05 < 0.0016
_BLOCK_ROWS = 1 << 16  # sign patterns per block: bounds memory (65,536 x m float64)

SIGN_FLIP_EXACT = "sign-flip exact"
SIGN_FLIP_MC = "sign-flip Monte Carlo"
PAIRED_T = "paired t over seeds"
WELCH_T = "Welch t over seeds"


class TestResult(NamedTuple):
    """A two-sided p-value, the test that gave it and its sample size (discordant problems for the
    sign-flip tests, seeds for the t-tests)."""

    p: float
    kind: str
    size: int

    @property
    def significant(self) -> bool:
        return self.p <= ALPHA


def _tolerance(abs_d: np.ndarray) -> float:
    # per-problem differences are sums of fractions rounded to float64; two patterns whose
    # statistics agree exactly in real arithmetic may differ in the last bits after summation in
    # another order, and must still count as "at least as extreme"
    return 1e-9 * max(1.0, float(abs_d.sum()))


def sign_flip_test(diffs: Sequence[float] | np.ndarray, *, seed: int) -> TestResult:
    """Two-sided paired sign-flip test of the per-problem differences ``diffs`` [P].

    Exact (every sign pattern) when at most EXACT_MAX differences are non-zero, else MC_FLIPS
    random patterns from ``numpy.random.default_rng(seed)``. No discordant problem -> p = 1.
    """
    d = np.asarray(diffs, dtype=np.float64)
    if d.ndim != 1:
        raise ValueError(f"sign_flip_test needs a 1-d array of per-problem differences, got shape {d.shape}")
    abs_d = np.abs(d[d != 0.0])
    m = int(abs_d.size)
    if m == 0:
        return TestResult(1.0, SIGN_FLIP_EXACT, 0)
    observed = abs(float(d.sum())) - _tolerance(abs_d)
    if m <= EXACT_MAX:
        return TestResult(_exact_hits(abs_d, observed) / 2.0**m, SIGN_FLIP_EXACT, m)
    rng = np.random.default_rng(seed)
    hits = 0
    for start in range(0, MC_FLIPS, _BLOCK_ROWS):
        b = min(_BLOCK_ROWS, MC_FLIPS - start)
        signs = rng.integers(0, 2, size=(b, m), dtype=np.int8) * 2 - 1
        hits += int(np.count_nonzero(np.abs(signs @ abs_d) >= observed))
    return TestResult((1 + hits) / (1 + MC_FLIPS), SIGN_FLIP_MC, m)


def _exact_hits(abs_d: np.ndarray, observed: float) -> int:
    """How many of the 2^m sign patterns give |sum s_i |d_i|| >= observed (pattern j: bit i of j
    set -> s_i = -1)."""
    m = abs_d.size
    bits = np.arange(m, dtype=np.int64)
    hits = 0
    for start in range(0, 2**m, _BLOCK_ROWS):
        j = np.arange(start, min(2**m, start + _BLOCK_ROWS), dtype=np.int64)
        signs = 1.0 - 2.0 * ((j[:, None] >> bits) & 1)
        hits += int(np.count_nonzero(np.abs(signs @ abs_d) >= observed))
    return hits


def paired_t_test(run: Sequence[float], baseline: Sequence[float]) -> TestResult:
    """Paired t-test of run[k] - baseline[k] over >= 2 seeds (same seeds, same order)."""
    if len(run) != len(baseline) or len(run) < 2:
        raise ValueError(f"a paired t-test needs >= 2 pairs of equal length, got {len(run)} and {len(baseline)}")
    d = [r - b for r, b in zip(run, baseline)]
    n = len(d)
    mean = math.fsum(d) / n
    var = math.fsum((x - mean) ** 2 for x in d) / (n - 1)
    return TestResult(_t_p(mean, math.sqrt(var / n), n - 1), PAIRED_T, n)


def welch_t_test(run: Sequence[float], baseline: Sequence[float]) -> TestResult:
    """Welch's two-sample t-test of mean(run) - mean(baseline), >= 2 seeds on each side."""
    if len(run) < 2 or len(baseline) < 2:
        raise ValueError(f"Welch's t-test needs >= 2 values on each side, got {len(run)} and {len(baseline)}")
    (m1, v1, n1), (m2, v2, n2) = (_mean_var(x) for x in (run, baseline))
    a, b = v1 / n1, v2 / n2
    se = math.sqrt(a + b)
    # Welch-Satterthwaite degrees of freedom (undefined without spread: the t-statistic decides)
    df = (a + b) ** 2 / (a * a / (n1 - 1) + b * b / (n2 - 1)) if se > 0 else float(n1 + n2 - 2)
    return TestResult(_t_p(m1 - m2, se, df), WELCH_T, n1 + n2)


def _mean_var(x: Sequence[float]) -> tuple[float, float, int]:
    n = len(x)
    mean = math.fsum(x) / n
    return mean, math.fsum((v - mean) ** 2 for v in x) / (n - 1), n


def _t_p(diff: float, se: float, df: float) -> float:
    if se == 0.0:  # every seed gives the same difference: certain if it is not 0
        return 1.0 if diff == 0.0 else 0.0
    return t_pvalue(diff / se, df)


def seed_test(run: dict[int, float], baseline: dict[int, float]) -> TestResult | None:
    """The seed-level test of run's metric minus the baseline's (seed -> value); None unless both
    have >= 2 seeds. Paired when the seed sets are equal, Welch otherwise."""
    if len(run) < 2 or len(baseline) < 2:
        return None
    if set(run) == set(baseline):
        seeds = sorted(run)
        return paired_t_test([run[s] for s in seeds], [baseline[s] for s in seeds])
    return welch_t_test(list(run.values()), list(baseline.values()))
