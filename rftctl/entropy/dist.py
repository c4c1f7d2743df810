"""The ``reduce`` callable for data-parallel training: all-reduce SUM over a process group.

Entropy methods take ``reduce: Callable[[Tensor], Tensor]`` and call it on tensors of sums and
counts (and, for global top-k, on vectors of counts; see ranking.py). In one process it is the
identity; under torch.distributed it is :func:`allreduce_sum`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.distributed as dist
from torch import Tensor


def allreduce_sum(t: Tensor, group=None) -> Tensor:
    """Sum of ``t`` over the ranks of ``group`` (default world); the input is not modified."""
    out = t.clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM, group=group)
    return out


def make_reduce(group=None) -> Callable[[Tensor], Tensor]:
    """allreduce_sum bound to ``group``; identity when torch.distributed is not initialised."""
    if not (dist.is_available() and dist.is_initialized()):
        return lambda t: t
    return lambda t: allreduce_sum(t, group)


def masked_global_sum_count(
    x: Tensor, mask: Tensor, reduce: Callable[[Tensor], Tensor], dtype: torch.dtype | None = None
) -> tuple[Tensor, Tensor]:
    """(sum of x[mask], count of mask) over every rank, accumulated in ``dtype`` (default x's),
    with one all-reduce of the stacked pair."""
    dtype = dtype or x.dtype
    m = mask.to(dtype)
    tot = reduce(torch.stack([(x.to(dtype) * m).sum(), m.sum()]))
    return tot[0], tot[1]


def masked_global_mean(
    x: Tensor, mask: Tensor, reduce: Callable[[Tensor], Tensor], dtype: torch.dtype | None = None
) -> Tensor:
    """Mean of x[mask] over every rank (0 when no rank has a masked element), in ``dtype``."""
    total, count = masked_global_sum_count(x, mask, reduce, dtype)
    return total / count.clamp_min(1)


__all__ = ["allreduce_sum", "make_reduce", "masked_global_mean", "masked_global_sum_count"]
