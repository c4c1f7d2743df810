"""95 % intervals: Student's t over seeds, percentile intervals of bootstrap replicates.

The report states every mean with an interval so that a reader can tell an effect from noise.
Over seeds (training runs repeated with different seeds) the interval is the textbook
t-interval of the mean, ``mean +- t_{0.975, S-1} * sd / sqrt(S)`` with the sample standard
deviation (ddof 1); it needs at least two seeds. Over problems (report/bootstrap.py) it is the
percentile interval of the bootstrap replicates.

The t quantiles are tabulated (no scipy): exact to 9 digits for 1..30 degrees of freedom, and
the Cornish-Fisher expansion of the t quantile in 1/df beyond (error < 1e-5 from df 30 on).
Two-sided t-test p-values (report/significance.py) come from the regularised incomplete beta
function, P(|T| >= t) = I_{df / (df + t^2)}(df / 2, 1 / 2), evaluated by its continued fraction
(Numerical Recipes 3rd ed., 6.4; modified Lentz), so non-integer Welch degrees of freedom work.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

LEVEL = 0.95  # every interval in the report is a 95 % interval

# t_{0.975, df} for df = 1..30 (standard tables; tests/test_report_stats.py re-derives them by
# integrating the t density)
_T975 = (
    12.706204736,
    4.302652730,
    3.182446305,
    2.776445105,
    2.570581836,
    2.446911851,
    2.364624252,
    2.306004135,
    2.262157163,
    2.228138852,
    2.200985160,
    2.178812830,
    2.160368656,
    2.144786688,
    2.131449546,
    2.119905299,
    2.109815578,
    2.100922040,
    2.093024054,
    2.085963447,
    2.079613845,
    2.073873068,
    2.068657610,
    2.063898562,
    2.059538553,
    2.055529439,
    2.051830516,
    2.048407142,
    2.045229642,
    2.042272456,
)
_Z975 = 1.959963984540054  # the standard normal 0.975 quantile


class Interval(NamedTuple):
    """A closed interval [low, high] (same units as the quantity it bounds)."""

    low: float
    high: float

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2.0

    def excludes_zero(self) -> bool:
        """True when 0 lies outside [low, high]: the difference is significant at the 5 % level."""
        return self.low > 0.0 or self.high < 0.0


def t_quantile_975(df: int) -> float:
    """The 0.975 quantile of Student's t with ``df`` >= 1 degrees of freedom."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    if df <= len(_T975):
        return _T975[df - 1]
    z = _Z975
    # Cornish-Fisher expansion (Abramowitz & Stegun 26.7.5), three terms in 1/df
    g1 = (z**3 + z) / 4
    g2 = (5 * z**5 + 16 * z**3 + 3 * z) / 96
    g3 = (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384
    return z + g1 / df + g2 / df**2 + g3 / df**3


def t_interval(values: Sequence[float]) -> Interval:
    """95 % t-interval of the mean of ``values`` (at least two)."""
    n = len(values)
    if n < 2:
        raise ValueError(f"a t-interval needs at least 2 values, got {n}")
    mean = math.fsum(values) / n
    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    half = t_quantile_975(n - 1) * sd / math.sqrt(n)
    return Interval(mean - half, mean + half)


def _beta_cf(a: float, b: float, x: float) -> float:
    """The continued fraction of I_x(a, b) (Numerical Recipes 6.4.5), modified Lentz; converges
    fast for x < (a + 1) / (a + b + 2)."""
    tiny, eps = 1e-300, 1e-15
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 10_000):
        for num in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= c * d
        if abs(c * d - 1.0) < eps:
            break
    return h


def beta_inc(a: float, b: float, x: float) -> float:
    """The regularised incomplete beta function I_x(a, b) for a, b > 0 and 0 <= x <= 1."""
    if not 0.0 <= x <= 1.0:
        raise ValueError(f"beta_inc needs 0 <= x <= 1, got {x}")
    if x in (0.0, 1.0):
        return x
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_cf(a, b, x) / a
    return (
        1.0 - math.exp(log_front) * _beta_cf(b, a, 1.0 - x) / b
    )  # symmetry I_x(a,b) = 1 - I_{1-x}(b,a)


def t_pvalue(t: float, df: float) -> float:
    """Two-sided p-value P(|T| >= |t|) of Student's t with ``df`` > 0 degrees of freedom."""
    if not df > 0:
        raise ValueError(f"degrees of freedom must be > 0, got {df}")
    if math.isinf(t):
        return 0.0
    return min(1.0, beta_inc(df / 2.0, 0.5, df / (df + t * t)))


def percentile_interval(replicates) -> Interval:
    """The 2.5th and 97.5th percentiles of bootstrap replicates (numpy's linear interpolation)."""
    import numpy as np

    lo, hi = np.percentile(np.asarray(replicates, dtype=np.float64), [2.5, 97.5])
    return Interval(float(lo), float(hi))
