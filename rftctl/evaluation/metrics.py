"""Avg@K and the unbiased Pass@K estimator (Chen et al. 2021, "Evaluating Large Language Models
Trained on Code", eq. 1).

Every number here is a fraction in [0, 1]; the report turns fractions into percent.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence

from rftctl.errors import ConfigError


def _check_int(name: str, value: object) -> int:
    """Any integer (numpy ints included) but not bool or float; TypeError otherwise."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an int, got {value!r}") from None


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased Pass@K from ``n`` samples of which ``c`` are correct.

    pass@k = 1 - C(n - c, k) / C(n, k), evaluated as the product
    1 - prod_{i = n-c+1}^{n} (1 - k / i), which never forms the (huge) binomials and so stays
    exact to float precision for any n (Chen et al. 2021, fig. 3).

    Raises ValueError unless 0 <= c <= n and 1 <= k <= n.
    """
    n, c, k = _check_int("n", n), _check_int("c", c), _check_int("k", k)
    if n < 1:
        raise ValueError(f"n must be >= 1, got n={n}")
    if not 0 <= c <= n:
        raise ValueError(f"c must satisfy 0 <= c <= n, got c={c}, n={n}")
    if not 1 <= k <= n:
        raise ValueError(f"k must satisfy 1 <= k <= n, got k={k}, n={n}")
    if n - c < k:  # every k-subset contains a correct sample
        return 1.0
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod


def default_ks(n: int) -> list[int]:
    """K values 1, 2, 4, ... up to n, with n itself always included (n=24 -> [1, 2, 4, 8, 16,
    24])."""
    n = _check_int("n", n)
    if n < 1:
        raise ValueError(f"n must be >= 1, got n={n}")
    ks, k = [], 1
    while k <= n:
        ks.append(k)
        k *= 2
    if ks[-1] != n:
        ks.append(n)
    return ks


def check_ks(ks: list[int] | None, n: int, key: str) -> list[int]:
    """Validated K values (default 1, 2, 4, ..., n); every K must be in [1, n]."""
    if ks is None:
        return default_ks(n)
    for k in ks:
        if k < 1:
            raise ConfigError(f"{key}: K={k} < 1; every K must be >= 1")
        if k > n:
            raise ConfigError(
                f"{key}: K={k} > n={n}; raise {key.rsplit('.', 1)[0]}.n to >= {k} or drop K={k}"
            )
    return sorted(set(ks))


def summarize(correct: Sequence[Sequence[bool]], ks: Sequence[int]) -> dict[str, float]:
    """Avg@K and Pass@K over problems.

    correct: [num_problems][n_i] booleans in sampling order (n_i may differ per problem but must
    be >= every K). Returns {"avg@K": .., "pass@K": ..} for each K in ks, each a mean over problems:
      avg@K  = accuracy of the first K samples of each problem (what an n=K run would report);
      pass@K = unbiased estimator from all n_i samples of each problem.
    """
    if not correct:
        raise ValueError("correct is empty: need at least one problem")
    if not ks:
        raise ValueError("ks is empty: need at least one K")
    for k in ks:
        _check_int("k", k)
        if k < 1:
            raise ValueError(f"every K must be >= 1, got {k}")
    for i, row in enumerate(correct):
        if len(row) < max(ks):
            raise ValueError(f"problem {i} has {len(row)} samples, fewer than K={max(ks)}")
    out: dict[str, float] = {}
    m = len(correct)
    for k in sorted(set(ks)):
        out[f"avg@{k}"] = sum(sum(bool(x) for x in row[:k]) / k for row in correct) / m
        out[f"pass@{k}"] = (
            sum(pass_at_k(len(row), sum(bool(x) for x in row), k) for row in correct) / m
        )
    return out
