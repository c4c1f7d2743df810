"""Pass@K against brute-force enumeration; Avg@K / Pass@K summaries on hand-built matrices."""

from itertools import combinations
from math import comb

import pytest

from rftctl.evaluation import default_ks, pass_at_k, summarize


def brute_pass_at_k(n: int, c: int, k: int) -> float:
    # fraction of k-subsets of n samples (first c correct) containing at least one correct one
    samples = [True] * c + [False] * (n - c)
    subsets = list(combinations(range(n), k))
    return sum(any(samples[i] for i in s) for s in subsets) / len(subsets)


@pytest.mark.parametrize("n", range(1, 9))
def test_pass_at_k_matches_enumeration(n):
    for c in range(n + 1):
        for k in range(1, n + 1):
            assert pass_at_k(n, c, k) == pytest.approx(brute_pass_at_k(n, c, k), abs=1e-12), (
                n,
                c,
                k,
            )


def test_pass_at_k_edge_cases():
    assert pass_at_k(16, 0, 1) == 0.0
    assert pass_at_k(16, 0, 16) == 0.0
    assert pass_at_k(16, 16, 1) == 1.0
    assert pass_at_k(16, 1, 16) == 1.0  # the only correct sample is always drawn
    assert pass_at_k(16, 4, 1) == pytest.approx(4 / 16)  # pass@1 = c / n
    assert pass_at_k(1, 1, 1) == 1.0 and pass_at_k(1, 0, 1) == 0.0


def test_pass_at_k_large_n_is_stable():
    # C(1000, 500) overflows float; the product form must still agree with exact integers
    n, c, k = 1000, 3, 500
    exact = 1 - comb(n - c, k) / comb(n, k)
    assert pass_at_k(n, c, k) == pytest.approx(exact, rel=1e-12)
    assert 0.0 <= pass_at_k(4096, 1, 2048) <= 1.0


@pytest.mark.parametrize(
    "n,c,k", [(4, -1, 1), (4, 5, 1), (4, 2, 0), (4, 2, 5), (0, 0, 1), (-3, 0, 1)]
)
def test_pass_at_k_rejects_out_of_range(n, c, k):
    with pytest.raises(ValueError):
        pass_at_k(n, c, k)


@pytest.mark.parametrize("n,c,k", [(4, 2, 1.5), (4.0, 2, 1), (4, True, 1), ("4", 2, 1)])
def test_pass_at_k_rejects_non_integers(n, c, k):
    with pytest.raises(TypeError):
        pass_at_k(n, c, k)


def test_pass_at_k_accepts_numpy_ints():
    np = pytest.importorskip("numpy")
    assert pass_at_k(np.int64(8), np.int32(2), 4) == pytest.approx(brute_pass_at_k(8, 2, 4))


@pytest.mark.parametrize(
    "n,expected",
    [
        (1, [1]),
        (2, [1, 2]),
        (3, [1, 2, 3]),
        (16, [1, 2, 4, 8, 16]),
        (24, [1, 2, 4, 8, 16, 24]),
        (32, [1, 2, 4, 8, 16, 32]),
    ],
)
def test_default_ks(n, expected):
    assert default_ks(n) == expected


def test_default_ks_rejects_zero():
    with pytest.raises(ValueError):
        default_ks(0)


def test_summarize_hand_built():
    T, F = True, False
    correct = [
        [T, F, F, F],  # c=1
        [F, F, T, T],  # c=2, first two wrong
        [T, T, T, T],  # c=4
    ]
    out = summarize(correct, [1, 2, 4])
    assert set(out) == {"avg@1", "pass@1", "avg@2", "pass@2", "avg@4", "pass@4"}
    # avg@K: first K samples only
    assert out["avg@1"] == pytest.approx((1 + 0 + 1) / 3)
    assert out["avg@2"] == pytest.approx((0.5 + 0 + 1) / 3)
    assert out["avg@4"] == pytest.approx((0.25 + 0.5 + 1) / 3)
    # pass@1 = mean of c/n (differs from avg@1, which sees only the first sample)
    assert out["pass@1"] == pytest.approx((0.25 + 0.5 + 1) / 3)
    # pass@2: 1 - C(n-c,2)/C(4,2): c=1 -> 1 - 3/6, c=2 -> 1 - 1/6, c=4 -> 1
    assert out["pass@2"] == pytest.approx((0.5 + 5 / 6 + 1) / 3)
    assert out["pass@4"] == pytest.approx(1.0)


def test_summarize_all_wrong_and_ragged_rows():
    out = summarize([[False] * 4, [False] * 8], [1, 4])
    assert out == {"avg@1": 0.0, "pass@1": 0.0, "avg@4": 0.0, "pass@4": 0.0}
    # ragged: pass@K uses every sample of each problem, avg@K only the first K
    out = summarize([[False, False, True, True], [True, False]], [2])
    assert out["avg@2"] == pytest.approx((0 + 0.5) / 2)
    assert out["pass@2"] == pytest.approx(((1 - 1 / 6) + 1) / 2)


def test_summarize_rejects_bad_input():
    with pytest.raises(ValueError):
        summarize([], [1])
    with pytest.raises(ValueError):
        summarize([[True]], [])
    with pytest.raises(ValueError, match="fewer than K=4"):
        summarize([[True, False]], [1, 4])
