"""Significance of a run's difference from its baseline: which question each test answers.

**The mark (†) answers one question: does the method differ from the baseline over training
seeds?** Training noise between seeds (a run's whole accuracy moves with its seed) is usually
larger than the sampling noise of one evaluation, and only repeated training can see it. So the
mark needs two or more seeds on each side, the same seeds on both (seed k of the run and of the
baseline share the base policy, the prompt order and the sampling seed: a pair). For those:

* the **paired t-test** of the per-seed differences D_k = metric_run,k - metric_base,k (S - 1
  degrees of freedom) gives the p that sets the mark, after the family's Holm adjustment
  (``holm``; the family is named in the table's footnote). Its bracket is the 95 % t-interval of
  the mean of D_k: the same question as the p (report/intervals.py);
* the **exact sign-flip test over seeds** is printed beside it: all 2^S sign patterns of the D_k.
  It assumes nothing about the shape of the seeds' spread, but its smallest possible p is
  2 / 2^S (0.25 with 3 seeds, 0.03125 with 6), so with few seeds it cannot reach 0.05 whatever
  the data: ``TestResult.min_p`` carries that floor and the table prints it.

With one seed on a side there is no mark. The table may still show the **checkpoint test**,
under its own name: the paired sign-flip (Fisher-Pitman) test over problems, which asks whether
*these two checkpoints* differ on *these problems*. Each problem i has a paired difference d_i of
its per-problem value; under the null that the two checkpoints are exchangeable on every
problem, each d_i is as likely to be +|d_i| as -|d_i|, and the two-sided p is P(|sum s_i |d_i||
>= |sum d_i|) over independent fair signs s_i.

That p is computed exactly where it is claimed to be:

* **by integer convolution** when the per-problem values are rationals with a common
  denominator (``problem_differences``): Avg@n is c / n and Pass@n is 0 or 1, so n * d_i is an
  integer (times the seed counts when a side averages seeds). Divided by their gcd, the m
  non-zero |d_i| sum to D; the distribution of sum s_i |d_i| on the 2D + 1 integers of
  [-D, D] is built by m shift-and-add passes (``CONV_MAX`` bounds D). The counts are held as
  float64 probabilities: additions and halvings of non-negative numbers, relative error below
  m * 2^-53 in every bin, so a p of 1e-10 prints as 1e-10, not as a floor;
* **by enumeration** of every sign pattern, with exact integers split into two halves that meet
  in the middle (``ENUMERATE_MAX`` discordant problems), when D is too large to convolve (Pass@K
  with K < n: its denominator C(n, K) is huge);
* otherwise **by Monte Carlo**, said so: ``MC_FLIPS`` random patterns drawn with the report's
  seed, p = (1 + hits) / (1 + MC_FLIPS) (Phipson & Smyth 2010) with its binomial standard error
  (``TestResult.se``); with no pattern as extreme the result is a bound, printed
  ``p < 1/(B+1)`` (``TestResult.bound``), never as a p-value.

All tests are two-sided at ALPHA = 0.05.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Mapping, Sequence
from fractions import Fraction
from typing import NamedTuple

import numpy as np

from rftctl.report.intervals import Interval, t_interval, t_pvalue

ALPHA = 0.05
CONV_MAX = 2_000_000  # largest D (sum of the integer |d_i|) convolved: 2D + 1 bins of float64
ENUMERATE_MAX = 32  # exact enumeration up to 2^32 patterns, as two halves of 2^16 sums each
MC_FLIPS = 20_000  # random sign patterns beyond: Monte Carlo standard error near 0.05 < 0.0016
SEED_EXACT_MAX = 20  # the sign-flip test over seeds enumerates up to 2^20 patterns
FLOAT_ENUMERATE_MAX = 20  # non-rational float differences: every pattern up to 2^20, in float64
_BLOCK_ROWS = 1 << 16  # Monte Carlo sign patterns per block: bounds memory (65,536 x m)

SIGN_FLIP_EXACT = "sign-flip exact"  # over problems, by convolution or enumeration
SIGN_FLIP_MC = "sign-flip Monte Carlo"  # over problems, random sign patterns
PAIRED_T = "paired t over seeds"  # the mark's test
SEED_SIGN_FLIP = "sign-flip exact over seeds"  # printed beside the paired t


class TestResult(NamedTuple):
    """A two-sided p-value and how it was obtained.

    size: discordant problems (sign-flip over problems) or seed pairs (over seeds).
    bound: True when p is only an upper bound (Monte Carlo with no pattern as extreme: p < p).
    se: the Monte Carlo standard error of p (None for exact tests).
    min_p: the smallest p the test can give at this size (sign-flip over seeds: 2 / 2^S).
    """

    p: float
    kind: str
    size: int
    bound: bool = False
    se: float | None = None
    min_p: float | None = None

    @property
    def significant(self) -> bool:
        """p <= ALPHA, unadjusted. The table's mark uses the family's Holm-adjusted p instead
        (report/tables.py)."""
        return self.p <= ALPHA


class SeedComparison(NamedTuple):
    """A run against its baseline over the same >= 2 seeds (values in the caller's units)."""

    t: TestResult  # paired t over the per-seed differences: the mark's test
    sign_flip: TestResult  # exact sign-flip over the same differences, with its min_p
    interval: Interval  # 95 % t-interval of the mean per-seed difference
    differences: tuple[float, ...]  # D_k in seed order


# ------------------------------------------------------------------------------------------
# over problems: the checkpoint test
# ------------------------------------------------------------------------------------------
def problem_differences(
    run: Sequence[Mapping[str, tuple[int, int]]],
    baseline: Sequence[Mapping[str, tuple[int, int]]],
    kind: str,
    k: int,
) -> tuple[list[int], int] | None:
    """Per-problem differences of run minus baseline as exact integers over a common denominator:
    (numerators [P], denominator), on the problems every seed of both sides has, sorted by id;
    None when there is no shared problem or a problem's n differs between seeds or sides.

    run, baseline: one {problem id: (n, c)} per seed; each side's value is its mean over seeds.
    kind "avg" (k must be n) gives c / n; "pass" gives 1 - C(n - c, k) / C(n, k) exactly.
    """
    sides = (list(run), list(baseline))
    if not sides[0] or not sides[1]:
        return None
    ids = sorted(set.intersection(*(set(c) for side in sides for c in side)))
    if not ids:
        return None
    out: list[Fraction] = []
    for pid in ids:
        ns = {c[pid][0] for side in sides for c in side}
        if len(ns) != 1:
            return None
        (n,) = ns
        means = [
            sum((_value(n, c[pid][1], kind, k) for c in side), Fraction(0)) / len(side)
            for side in sides
        ]
        out.append(means[0] - means[1])
    den = math.lcm(*(f.denominator for f in out))
    return [int(f * den) for f in out], den


def _value(n: int, c: int, kind: str, k: int) -> Fraction:
    if kind == "avg":
        if k != n:
            raise ValueError(
                f"avg@{k} needs the first {k} of {n} samples; per-problem counts give Avg@n only"
            )
        return Fraction(c, n)
    if kind == "pass":
        if not 1 <= k <= n:
            raise ValueError(f"pass@{k} needs 1 <= k <= n = {n}")
        return 1 - Fraction(math.comb(n - c, k), math.comb(n, k))
    raise ValueError(f"unknown metric kind {kind!r}; use avg or pass")


def sign_flip_test(diffs: Sequence[int] | Sequence[float] | np.ndarray, *, seed: int) -> TestResult:
    """Two-sided paired sign-flip test of per-problem differences ``diffs`` [P].

    Integers (``problem_differences``' numerators) get the exact test: convolution when their
    gcd-reduced absolute sum is at most CONV_MAX, else enumeration up to ENUMERATE_MAX
    discordant problems, else Monte Carlo. Floats are scaled to integers when they are exact
    multiples of a common 1/q with q <= 10^6 (a metric's c / n), else they are tested by
    enumeration (<= FLOAT_ENUMERATE_MAX, with a relative slack for float sums) or Monte Carlo.
    No discordant problem -> p = 1.
    """
    arr = np.asarray(diffs)
    if arr.ndim != 1:
        raise ValueError(
            f"sign_flip_test needs a 1-d array of per-problem differences, got shape {arr.shape}"
        )
    ints = _as_integers(diffs)
    if ints is not None:
        a = [abs(x) for x in ints if x != 0]
        if not a:
            return TestResult(1.0, SIGN_FLIP_EXACT, 0)
        observed = abs(sum(ints))
        g = math.gcd(*a)
        a, observed = [x // g for x in a], observed // g
        if sum(a) <= CONV_MAX:
            return TestResult(_convolution_p(a, observed), SIGN_FLIP_EXACT, len(a))
        if len(a) <= ENUMERATE_MAX:
            return TestResult(_enumeration_p(a, observed), SIGN_FLIP_EXACT, len(a))
        fa = np.asarray([x / max(a) for x in a], dtype=np.float64)
        return _monte_carlo(fa, observed / max(a), seed)
    d = np.asarray(diffs, dtype=np.float64)
    fa = np.abs(d[d != 0.0])
    if fa.size == 0:
        return TestResult(1.0, SIGN_FLIP_EXACT, 0)
    observed = abs(math.fsum(d.tolist()))
    if fa.size <= FLOAT_ENUMERATE_MAX:
        hits = _float_exact_hits(fa, observed - _slack(fa))
        return TestResult(hits / 2.0**fa.size, SIGN_FLIP_EXACT, int(fa.size))
    return _monte_carlo(fa, observed, seed)


def _as_integers(diffs) -> list[int] | None:
    """The differences as integers: ints as they are; floats that are all k / q for one q <= 10^6
    (to within 2 ulp) scaled by that q; else None."""
    vals = list(diffs.tolist() if isinstance(diffs, np.ndarray) else diffs)
    if all(isinstance(x, (int, np.integer)) and not isinstance(x, bool) for x in vals):
        return [int(x) for x in vals]
    try:
        fr = [Fraction(float(x)).limit_denominator(1_000_000) for x in vals]
    except (ValueError, OverflowError):
        return None
    # a float k / q is within half an ulp of the real quotient; a float that is not such a
    # fraction sits about 1 / q^2 >> 1 ulp away from its best approximation
    if any(abs(float(f) - float(x)) > 2 * math.ulp(float(x)) for f, x in zip(fr, vals)):
        return None
    den = math.lcm(*(f.denominator for f in fr)) if fr else 1
    if den > 10**9:
        return None
    return [int(f * den) for f in fr]


def _convolution_p(a: Sequence[int], observed: int) -> float:
    """P(|sum s_i a_i| >= observed) for fair signs s_i and positive integers a_i: the exact
    distribution on the integers [-sum a, sum a], built one problem at a time."""
    total = sum(a)
    dist = np.zeros(2 * total + 1, dtype=np.float64)
    dist[total] = 1.0
    reach = 0  # the support so far is [total - reach, total + reach]
    for x in sorted(a):
        lo, hi = total - reach, total + reach + 1
        new = np.zeros_like(dist[lo - x : hi + x])
        new[: hi - lo] += dist[lo:hi]  # s = -1: every sum moves down by x
        new[2 * x :] += dist[lo:hi]  # s = +1: every sum moves up by x
        dist[lo - x : hi + x] = 0.5 * new
        reach += x
    if observed == 0:
        return 1.0
    tail = float(dist[total + observed :].sum())  # P(S >= observed); the law is symmetric
    return min(1.0, 2.0 * tail)


def _enumeration_p(a: Sequence[int], observed: int) -> float:
    """The same probability by enumerating every pattern in exact integers: the sums of each half
    of the a_i, sorted, and for each sum of the first half the count of second-half sums y with
    x + y >= observed or x + y <= -observed."""
    half = len(a) // 2
    first = [
        sum(s * v for s, v in zip(signs, a[:half]))
        for signs in itertools.product((1, -1), repeat=half)
    ]
    second = sorted(
        sum(s * v for s, v in zip(signs, a[half:]))
        for signs in itertools.product((1, -1), repeat=len(a) - half)
    )
    if observed == 0:
        return 1.0
    hits = 0
    for x in first:
        hits += len(second) - bisect.bisect_left(second, observed - x)  # y >= observed - x
        hits += bisect.bisect_right(second, -observed - x)  # y <= -observed - x
    return hits / 2 ** len(a)


def _slack(abs_d: np.ndarray) -> float:
    # float sums of the same terms in another order may differ in the last bits; a pattern whose
    # sum equals the observed one in real arithmetic must still count as "as extreme"
    return 1e-9 * max(1.0, float(abs_d.sum()))


def _float_exact_hits(abs_d: np.ndarray, observed: float) -> int:
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


def _monte_carlo(abs_d: np.ndarray, observed: float, seed: int) -> TestResult:
    m = int(abs_d.size)
    threshold = observed - _slack(abs_d)
    rng = np.random.default_rng(seed)
    hits = 0
    for start in range(0, MC_FLIPS, _BLOCK_ROWS):
        b = min(_BLOCK_ROWS, MC_FLIPS - start)
        signs = rng.integers(0, 2, size=(b, m), dtype=np.int8) * 2 - 1
        hits += int(np.count_nonzero(np.abs(signs @ abs_d) >= threshold))
    p = (1 + hits) / (1 + MC_FLIPS)
    se = math.sqrt(p * (1.0 - p) / MC_FLIPS)
    return TestResult(p, SIGN_FLIP_MC, m, bound=hits == 0, se=se)


# ------------------------------------------------------------------------------------------
# over seeds: the mark
# ------------------------------------------------------------------------------------------
def paired_t_test(run: Sequence[float], baseline: Sequence[float]) -> TestResult:
    """Paired t-test of run[k] - baseline[k] over >= 2 seeds (same seeds, same order)."""
    if len(run) != len(baseline) or len(run) < 2:
        raise ValueError(
            f"a paired t-test needs >= 2 pairs of equal length, got {len(run)} and {len(baseline)}"
        )
    d = [r - b for r, b in zip(run, baseline)]
    n = len(d)
    mean = math.fsum(d) / n
    var = math.fsum((x - mean) ** 2 for x in d) / (n - 1)
    se = math.sqrt(var / n)
    if se == 0.0:  # every seed gives the same difference: certain if it is not 0
        p = 1.0 if mean == 0.0 else 0.0
    else:
        p = t_pvalue(mean / se, n - 1)
    return TestResult(p, PAIRED_T, n)


def seed_sign_flip_test(differences: Sequence[float]) -> TestResult:
    """Exact two-sided sign-flip test of per-seed differences (all 2^S patterns, S <= 20), with
    its smallest possible p, 2 / 2^S."""
    d = np.asarray(differences, dtype=np.float64)
    s = int(d.size)
    if s < 1 or s > SEED_EXACT_MAX:
        raise ValueError(
            f"the sign-flip test over seeds enumerates 1..{SEED_EXACT_MAX} seeds, got {s}"
        )
    min_p = min(1.0, 2.0 / 2**s)
    fa = np.abs(d)
    observed = abs(math.fsum(d.tolist()))
    if observed == 0.0:
        return TestResult(1.0, SEED_SIGN_FLIP, s, min_p=min_p)
    hits = _float_exact_hits(fa, observed - _slack(fa))
    return TestResult(hits / 2.0**s, SEED_SIGN_FLIP, s, min_p=min_p)


def seed_comparison(
    run: Mapping[int, float], baseline: Mapping[int, float]
) -> SeedComparison | None:
    """The seed-level comparison of run minus baseline (seed -> value); None unless both sides
    have the same >= 2 seeds (one seed, or different seed sets: no paired question to ask)."""
    if len(run) < 2 or set(run) != set(baseline):
        return None
    seeds = sorted(run)
    d = [run[s] - baseline[s] for s in seeds]
    return SeedComparison(
        paired_t_test([run[s] for s in seeds], [baseline[s] for s in seeds]),
        seed_sign_flip_test(d),
        t_interval(d),
        tuple(d),
    )


# ------------------------------------------------------------------------------------------
# multiplicity
# ------------------------------------------------------------------------------------------
def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (same order as given): sort ascending, multiply the
    i-th smallest (0-based) by m - i, carry the running maximum, cap at 1. A hypothesis is
    rejected at family-wise level alpha when its adjusted p <= alpha."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    out = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        out[i] = running
    return out
