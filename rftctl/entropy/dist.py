"""The ``reduce`` callable for data-parallel training: all-reduce SUM over a process group.

Entropy methods take ``reduce: Callable[[Tensor], Tensor]`` and call it on tensors of sums and
counts (and, for global top-k, on vectors of counts; see ranking.py). In one process it is the
identity; under torch.distributed it is :func:`allreduce_sum`.
"""

from __future__ import annotations

from collections.abc import Callable

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


__all__ = ["allreduce_sum", "make_reduce"]
