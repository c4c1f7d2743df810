"""The plan of one training step: which rows each forward pass covers, in which micro-batches.

Every shortcut the trainer takes is exact (tests/test_trainer.py compares it with the plain path)
and decided here, in one place:

 - **Zero-advantage fast path** (``gradient_rows``): for methods whose per-token loss is zero at a
   zero advantage and depends only on the token's own inputs
   (EntropyMethod.zero_advantage_inert: GRPO, ClipB, ClipV, clip-higher, 80/20, sign
   intervention), the gradient passes skip the rows of all-correct / all-wrong groups (and rows
   with no kept token) and pack the rest by length. The token-mean denominator still counts every
   kept token of the step, so the loss is the same number.
 - **Shared first pass** (``plan_statistics``): when the rows that carry a gradient fit one
   micro-batch, the first update's own forward pass over them (with grad) also gives their
   statistics, from its detached logits; the no-grad statistics pass covers only the other rows.
   Each gradient row then runs forward once per step instead of twice. Not with dropout (the
   statistics must come from the deterministic policy), a chunked lm-head (no full logits), or
   sharded parameters (every rank must run the same passes).
 - **Padding passes** (``padding_passes``): under FSDP2 every forward is a collective, so every
   rank runs as many gradient passes as the busiest one; the extra ones carry a zero loss.
 - **Reused logits for the theory pass** (``keep_logits``): the statistics pass's logits are the
   "before" side of the theory pass when they are float32 and fit AUTO_PLAIN_LOGITS_BYTES in all;
   decided before the pass, so nothing above the budget is ever kept.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from rftctl.budgets import AUTO_PLAIN_LOGITS_BYTES
from rftctl.rl.distributed import Dist
from rftctl.rl.rollout import RolloutBatch
from rftctl.rl.scoring import PolicyScorer


@dataclass(frozen=True)
class StatsPlan:
    """Which pass gives the statistics (log p, H, S, N) of which rows.

    shared: the gradient rows whose statistics come from the first update's own forward pass
      (one micro-batch, in their own order), or None for a no-grad pass over every row;
    others: the rows the no-grad statistics pass covers;
    micro_batches: every micro-batch the statistics are computed in, in order (``shared`` first):
      the theory pass re-runs exactly these, so its "after" logits line up with the kept ones.
    """

    shared: Tensor | None
    others: Tensor
    micro_batches: list[Tensor]


def all_rows(batch: RolloutBatch, device: torch.device) -> Tensor:
    return torch.arange(batch.size, device=device)


def plan_statistics(
    scorer: PolicyScorer, batch: RolloutBatch, advantages: Tensor, *, merge: bool, inert: bool
) -> StatsPlan:
    """The statistics' plan. ``merge``: the shared first pass is allowed (no dropout, not sharded,
    fast path on); ``inert``: the method's loss ignores zero-advantage rows (module docstring).
    ``advantages``: [B, L-1] per token."""
    rows = all_rows(batch, scorer.device)
    shared = None
    if merge:
        grad_rows = rows[(advantages != 0).any(dim=1)] if inert else rows
        if (
            0 < len(grad_rows) <= scorer.micro_batch_size
            and scorer.chunk_rows(batch, grad_rows) is None
        ):
            shared = grad_rows
    if shared is None:
        return StatsPlan(None, rows, scorer.micro_batches(batch, rows, by_length=True))
    others = torch.ones(batch.size, dtype=torch.bool, device=scorer.device)
    others[shared] = False
    others = others.nonzero().squeeze(-1)
    return StatsPlan(shared, others, [shared] + scorer.micro_batches(batch, others, by_length=True))


def keep_logits(scorer: PolicyScorer, batch: RolloutBatch, plan: StatsPlan, vocab: int) -> bool:
    """Whether the statistics pass can keep every micro-batch's float32 logits for the theory
    pass within AUTO_PLAIN_LOGITS_BYTES (all on the plain path; decided before any is kept)."""
    total = 0
    for rows in plan.micro_batches:
        if scorer.chunk_rows(batch, rows) is not None:
            return False
        t0, t1 = scorer.window(batch, rows)
        total += len(rows) * (t1 - t0) * vocab * 4
    return total <= AUTO_PLAIN_LOGITS_BYTES


def gradient_rows(batch: RolloutBatch, advantages: Tensor, keep: Tensor, fast: bool) -> Tensor:
    """The rows whose tokens enter the gradient passes: all, or on the fast path only those with
    a non-zero advantage and at least one kept token."""
    rows = all_rows(batch, keep.device)
    return rows[(advantages != 0).any(dim=1) & keep.any(dim=1)] if fast else rows


def gradient_micro_batches(
    scorer: PolicyScorer,
    batch: RolloutBatch,
    plan: StatsPlan,
    advantages: Tensor,
    keep: Tensor,
    fast: bool,
) -> list[Tensor]:
    """The gradient passes' micro-batches, the same for every update of the batch: the shared
    pass's one micro-batch when there is one (it covers every gradient row), else the gradient
    rows, packed by length on the fast path and contiguous otherwise (the reference layout)."""
    if plan.shared is not None:
        return [plan.shared]
    return scorer.micro_batches(batch, gradient_rows(batch, advantages, keep, fast), by_length=fast)


def padding_passes(dist: Dist, n_micro_batches: int) -> int:
    """Zero-loss forward/backward passes this rank adds so that every rank runs as many as the
    busiest one (FSDP2 only: each pass all-gathers parameters, a collective)."""
    return dist.max_int(n_micro_batches) - n_micro_batches if dist.sharded else 0
