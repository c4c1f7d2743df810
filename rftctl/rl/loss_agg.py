"""How a step's per-token losses add up to its loss (``train.loss_agg``).

``token-mean`` (the default): one mean over the kept tokens of the whole step, all ranks
(rftctl.rl.update).

``micro-token-mean``: the aggregation of the authors' released runs. Trinity-RFT 0.5.1 (the
version its examples/entropy README names) trains on verl 0.7.0 with dynamic batching on, and
there (trinity/trainer/verl/dp_actor.py ``update_policy``; verl/utils/seqlen_balancing.py
``rearrange_micro_batches``):

 1. the step's whole batch is one mini-batch (Trinity sets ppo_mini_batch_size to the training
    batch), split evenly over the data-parallel ranks;
 2. each rank packs its sequences into k loss micro-batches, k = ceil(its prompt + response
    tokens / the token budget) (at most one per sequence; the largest k of any rank), by the
    largest differencing method (Karmarkar-Karp) on each sequence's workload 24576 L + L^2
    (L = its prompt + response tokens): balanced, not capped, so a micro-batch may pass the budget;
 3. a micro-batch's loss is the mean of its tokens' losses over its response mask (ClipB and
    ClipV have taken their dropped tokens out of that mask), scaled by its share of the rank's
    sequences; FSDP then averages the ranks' gradients.

The step's loss is therefore sum over micro-batches m of (n_m / N) * mean_m, N the step's
sequences: a mean of per-micro-batch token means, weighted by sequence count. A long response
weighs less than under one global token mean when it shares its micro-batch with long ones.

rftctl forms the same micro-batches (``loss_micro_batches``, ``balanced_partition``) and turns them
into one weight per row, (n_m / N) / (kept tokens of m), that multiplies each kept token's loss
(``row_weights``). The forward passes keep their own micro-batches (train.micro_batch_size): the
loss is linear in the token losses, so only these weights carry the grouping. What is not the same
as the authors' (docs/methods.md): verl first reorders the step's sequences over the ranks by a
balanced partition of their lengths (``_balance_batch``), where each rftctl rank keeps the groups
it rolled out; and the sum runs in another order (float rounding only).

Everything here works on host integers and is exact; tests/test_loss_agg.py compares it with a
port of the authors' code.
"""

from __future__ import annotations

import heapq

import torch
from torch import Tensor

from rftctl.rl.distributed import Dist

# verl's per-sequence workload: proportional to a 7B dense block's FLOPs, 24576 L + L^2
WORKLOAD_LINEAR = 24576


def workload(length: int) -> int:
    return WORKLOAD_LINEAR * length + length * length


class _Part:
    """One set of a partial partition: its total and its (index, value) items, in arrival order."""

    __slots__ = ("items", "total")

    def __init__(self, items: list[tuple[int, int]]):
        self.items = items
        self.total = sum(v for _, v in items)

    def key(self) -> tuple:
        # the order sets are ranked in: by total, then by item count, then by the items themselves
        return (self.total, len(self.items), self.items)


class _Partial:
    """A k-way partial partition, its sets kept largest first. Heap order: the partition whose
    sets are furthest apart comes out first; at an equal spread, the one with the larger largest
    set. Items are disjoint between partitions, so this order has no ties."""

    __slots__ = ("parts",)

    def __init__(self, parts: list[_Part]):
        self.parts = sorted(parts, key=_Part.key, reverse=True)

    @property
    def spread(self) -> int:
        return self.parts[0].total - self.parts[-1].total

    def __lt__(self, other: _Partial) -> bool:
        if self.spread != other.spread:
            return self.spread > other.spread
        return self.parts[0].key() > other.parts[0].key()

    def combined(self, other: _Partial) -> _Partial:
        """Largest set of one with the smallest of the other, and so on down."""
        k = len(self.parts)
        return _Partial(
            [_Part(self.parts[i].items + other.parts[k - 1 - i].items) for i in range(k)]
        )


def balanced_partition(values: list[int], k: int) -> list[list[int]]:
    """The indices of ``values`` in ``k`` sets of near-equal sums, by the largest differencing
    method (https://en.wikipedia.org/wiki/Largest_differencing_method): start from one partial
    partition per value (the value alone in one set), then repeatedly combine the two partial
    partitions with the largest spread. Returns the sets largest sum first, each sorted; a set
    may be empty only when k > len(values)."""
    if k < 1:
        raise ValueError(f"need k >= 1 sets, got {k}")
    heap: list[_Partial] = []
    for value, index in sorted((v, i) for i, v in enumerate(values)):
        empty = [_Part([]) for _ in range(k - 1)]
        heapq.heappush(heap, _Partial([_Part([(index, value)])] + empty))
    while len(heap) > 1:
        a, b = heapq.heappop(heap), heapq.heappop(heap)
        heapq.heappush(heap, a.combined(b))
    if not heap:
        return [[] for _ in range(k)]
    return [sorted(i for i, _ in part.items) for part in heap[0].parts]


def loss_micro_batches(lengths: list[int], budget: int, dist: Dist) -> list[list[int]]:
    """This rank's loss micro-batches (indices into ``lengths``, each sequence's prompt + response
    tokens): as many as the rank's tokens need at ``budget`` tokens each, at most one per sequence,
    the most any rank needs (a collective), then balanced by workload. Empty sets are dropped."""
    need = min(len(lengths), -(-sum(lengths) // budget))
    k = dist.max_int(need)
    if not lengths:
        return []
    return [m for m in balanced_partition([workload(n) for n in lengths], k) if m]


def row_weights(attention_mask: Tensor, keep: Tensor, budget: int, dist: Dist) -> Tensor:
    """Each row's weight per kept token under micro-token-mean: (n_m / N) / (kept tokens of m)
    for the loss micro-batch m holding the row (n_m its rows, N the step's rows over all ranks;
    no kept token in m: the weight does not matter, its tokens add nothing). float64, [B], on
    keep's device."""
    lengths = [int(n) for n in attention_mask.sum(dim=1).tolist()]
    total_rows = float(dist.sum_of(len(lengths)))
    kept = keep.sum(dim=1).tolist()
    w = [0.0] * len(lengths)
    for m in loss_micro_batches(lengths, budget, dist):
        share = (len(m) / total_rows) / max(sum(kept[i] for i in m), 1)
        for i in m:
            w[i] = share
    return torch.tensor(w, dtype=torch.float64, device=keep.device)
