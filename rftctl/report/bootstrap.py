"""Bootstrap over problems: intervals for a metric, for a paired difference, for Pass@K curves.

A data set's Avg@n and Pass@K are means over problems of a per-problem value computed from the
problem's pass count (n samples, c correct; the evaluate stage's per_problem.json):

    Avg@n:  c / n
    Pass@K: 1 - C(n - c, K) / C(n, K)        (the unbiased estimator, evaluation/metrics.py)

so the problems are the unit of resampling. One replicate draws P problem indices uniformly with
replacement and takes the mean of the per-problem values over them; the 95 % interval is the
2.5th-97.5th percentile of the replicates (report/intervals.py).

Paired: to compare a run with the baseline, both are evaluated on the same problems, and one
replicate uses the SAME drawn indices for both; the replicate's difference is the mean of the
per-problem differences over the drawn problems. Pairing removes the between-problem variance
that the two runs share (easy problems are easy for both), which is most of it.

Seeds: a run evaluated with several seeds has one per-problem value per seed; each replicate
averages them over the run's seeds (the run's seeds and the baseline's need not coincide). The
mean over seeds of a per-problem mean is the per-problem mean over seeds, so this is computed
once, before resampling. The seeds themselves are not resampled: with several seeds the
table's +- is the t-interval over seeds, and this interval is the size of the paired effect on
these problems. Whether a difference is marked significant is decided by a test, not by this
interval (report/significance.py: the percentile bootstrap over-claims when few problems differ).

Replicates are drawn by ``numpy.random.default_rng(seed)`` in blocks (bounded memory for large
sets); the same (seed, number of problems, number of resamples) always draws the same indices.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from rftctl.evaluation.metrics import pass_at_k
from rftctl.report.intervals import Interval, percentile_interval

Counts = Mapping[str, tuple[int, int]]  # problem id -> (n, c)


@dataclass(frozen=True)
class Resampling:
    """How the intervals are drawn (report.bootstrap_resamples, report.bootstrap_seed)."""

    resamples: int
    seed: int


_BLOCK_CELLS = (
    1 << 22
)  # gathered values per block (32 MiB of float64): bounds memory for large sets


def problem_values(counts: Counts, ids: Sequence[str], kind: str, k: int) -> np.ndarray:
    """Per-problem values [len(ids)] of metric ``kind`` ("avg" | "pass") at K = ``k``.

    "avg" needs k == n of every problem (Avg@K for K < n is the accuracy of the FIRST K samples,
    which pass counts do not record); "pass" needs 1 <= k <= n.
    """
    out = np.empty(len(ids), dtype=np.float64)
    for i, pid in enumerate(ids):
        n, c = counts[pid]
        if kind == "avg":
            if k != n:
                raise ValueError(
                    f"avg@{k} of problem {pid!r} needs the first {k} of its {n} samples; "
                    "per-problem counts give Avg@n only"
                )
            out[i] = c / n
        elif kind == "pass":
            out[i] = pass_at_k(n, c, k)
        else:
            raise ValueError(f"unknown metric kind {kind!r}; use avg or pass")
    return out


def seed_mean(per_seed: Sequence[Counts], ids: Sequence[str], kind: str, k: int) -> np.ndarray:
    """Per-problem values averaged over seeds [len(ids)]: one run's input to a replicate."""
    return np.mean([problem_values(c, ids, kind, k) for c in per_seed], axis=0)


def common_ids(*per_seed_lists: Sequence[Counts]) -> list[str]:
    """Problem ids present in every seed of every run given, sorted (the paired sample)."""
    sets = [set(c) for runs in per_seed_lists for c in runs]
    return sorted(set.intersection(*sets)) if sets else []


def resampled_means(values: np.ndarray, *, resamples: int, seed: int) -> np.ndarray:
    """Bootstrap replicates of the mean over problems, for every row at once.

    values: [rows, P] per-problem values (rows: e.g. metrics or K values of one run, or
    per-problem differences). Every row is resampled with the same drawn indices.
    Returns [rows, resamples].
    """
    values = np.atleast_2d(np.asarray(values, dtype=np.float64))
    rows, p = values.shape
    if p == 0:
        raise ValueError("no problems to resample")
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    rng = np.random.default_rng(seed)
    out = np.empty((rows, resamples), dtype=np.float64)
    block = max(1, _BLOCK_CELLS // (p * rows))
    for start in range(0, resamples, block):
        b = min(block, resamples - start)
        idx = rng.integers(0, p, size=(b, p))
        out[:, start : start + b] = values[:, idx].mean(axis=2)
    return out


def metric_interval(
    per_seed: Sequence[Counts], kind: str, k: int, *, resamples: int, seed: int
) -> Interval | None:
    """95 % bootstrap interval (fraction) of one run's metric; None when no problem is shared."""
    ids = common_ids(per_seed)
    if not ids:
        return None
    reps = resampled_means(seed_mean(per_seed, ids, kind, k), resamples=resamples, seed=seed)[0]
    return percentile_interval(reps)


def paired_difference(
    run: Sequence[Counts],
    baseline: Sequence[Counts],
    kind: str,
    k: int,
    *,
    resamples: int,
    seed: int,
) -> Interval | None:
    """95 % paired-bootstrap interval (fraction) of run's metric minus the baseline's.

    run, baseline: one {problem id: (n, c)} per seed. Only problems every seed of both has are
    used. None when there is no shared problem.
    """
    diff = paired_differences(run, baseline, kind, k)
    if diff is None:
        return None
    return percentile_interval(resampled_means(diff, resamples=resamples, seed=seed)[0])


def paired_differences(
    run: Sequence[Counts], baseline: Sequence[Counts], kind: str, k: int
) -> np.ndarray | None:
    """Per-problem differences [P] of run minus baseline (each side averaged over its seeds) on
    the problems every seed of both has; None when there is none. The input of the paired
    bootstrap above and of the sign-flip test (report/significance.py)."""
    ids = common_ids(run, baseline)
    if not ids:
        return None
    return seed_mean(run, ids, kind, k) - seed_mean(baseline, ids, kind, k)


def pass_curve(
    per_seed: Sequence[Counts], ks: Sequence[int], *, resamples: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Pass@K for each K of ``ks`` with its 95 % bootstrap band (fractions).

    Returns (mean [len(ks)], low [len(ks)], high [len(ks)]), or None without shared problems.
    All K share each replicate's drawn problems, so the band is a band of curves.
    """
    ids = common_ids(per_seed)
    if not ids:
        return None
    values = np.stack([seed_mean(per_seed, ids, "pass", k) for k in ks])  # [K, P]
    reps = resampled_means(values, resamples=resamples, seed=seed)
    low, high = np.percentile(reps, [2.5, 97.5], axis=1)
    return values.mean(axis=1), low, high
