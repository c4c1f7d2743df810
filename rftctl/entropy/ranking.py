"""Global top-k selection across data-parallel ranks without host syncs.

Used by the ClipV cap (doc section 3, ClipV step 4), the 80/20 high-entropy baseline and KL-Cov.
The k-th largest score over the *global* batch is found by a radix search on the order-preserving
integer image of the float32 scores: four rounds, each counting (locally, with searchsorted on the
sorted local keys) how many scores lie above 256 candidate thresholds and summing those 256 counts
across ranks with ``reduce``. After the rounds the threshold is exactly the k-th largest key, so
every rank selects ``score >= threshold`` and the union over ranks equals the single-process
selection on the concatenated batch. Cost: one local sort and four all-reduces of 256 int64.
Ties at the threshold are all selected (measure zero for real-valued statistics).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

Reduce = Callable[[Tensor], Tensor]

_LOW = -(2**31)  # smallest key of a float32
_FANOUT = 256
_STEPS = (2**24, 2**16, 2**8, 1)  # 256 thresholds per round: 2^32 -> 2^24 -> ... -> 1


def identity(t: Tensor) -> Tensor:
    """The single-process ``reduce``."""
    return t


def float_key(x: Tensor) -> Tensor:
    """Order-preserving int64 image of float32 values: a < b  <=>  key(a) < key(b)."""
    i = x.to(torch.float32).contiguous().view(torch.int32).to(torch.int64)
    # Negative floats have the sign bit set; flipping the other 31 bits reverses their order.
    return torch.where(i < 0, i ^ 0x7FFFFFFF, i)


def kth_largest_key(keys: Tensor, valid: Tensor, k: Tensor, reduce: Reduce | None = None) -> Tensor:
    """Exact k-th largest of ``keys[valid]`` over all ranks (int64 scalar tensor).

    keys: [n] int64 from float_key; valid: [n] bool; k: int64 scalar tensor (same on every rank,
    >= 1). When fewer than k keys are valid the result is the smallest key (-2^31).
    """
    reduce = reduce or identity
    masked = torch.where(valid, keys, torch.full_like(keys, _LOW - 1))  # below every threshold
    sorted_keys = masked.reshape(-1).sort().values
    n = sorted_keys.numel()
    arange = torch.arange(_FANOUT, device=keys.device, dtype=torch.int64)
    lo = torch.full((), _LOW, device=keys.device, dtype=torch.int64)
    for step in _STEPS:
        th = lo + arange * step  # [256] ascending thresholds inside the current interval
        count = n - torch.searchsorted(sorted_keys, th, side="left")  # keys >= th, local
        count = reduce(count)
        # counts fall as th rises: the last threshold that still has >= k keys above it.
        j = ((count >= k).sum() - 1).clamp_min(0)
        lo = th[j]
    return lo


def top_k_mask(score: Tensor, valid: Tensor, k: Tensor, reduce: Reduce | None = None) -> Tensor:
    """Bool mask (like ``valid``) of the k largest ``score`` among valid entries, globally.

    score: float [...]; valid: bool [...]; k: int64 scalar tensor >= 1. If fewer than k entries
    are valid, all valid entries are selected.
    """
    keys = float_key(score)
    thr = kth_largest_key(keys.reshape(-1), valid.reshape(-1), k, reduce)
    return valid & (keys >= thr)


def count_k(frac: float, n_valid: Tensor) -> Tensor:
    """max(int(frac * n_valid), 1) as an int64 tensor (no host sync)."""
    return torch.floor(n_valid.to(torch.float64) * frac).to(torch.int64).clamp_min(1)
