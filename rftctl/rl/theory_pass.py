"""Theory in the loop: the measured entropy change of a step against its first-order predictions.

After the step's updates, H is re-measured at every response position and compared with
(entropy/theory.py):
 (a) the policy-gradient theorem's per-token prediction lr * ratio * A * (N - S), summed over the
     step's updates with each update's own ratio pi_theta / pi_old (1 at the first; the update
     records them), over the tokens with A != 0 that the method kept (theory/*);
 (b) the exact first-order change through the measured logit change dz of every position,
     -(1/T) sum_j p_j (log p_j + H) dz_j, over every response token (theory/logit_*).

The logits before the update are the statistics pass's own when it kept them (same parameters,
micro-batches and kernels: the same numbers; step_plan.keep_logits), so the pass runs one
forward per micro-batch; otherwise they are recomputed from a snapshot of the parameters taken
before the update. The float64 work runs on the response positions only, at most
THEORY_CHUNK_BYTES of float64 [positions, V] at a time.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from rftctl.entropy.stats import TokenStats
from rftctl.entropy.theory import (
    first_order_entropy_change,
    predicted_entropy_change,
    theory_metrics,
)
from rftctl.rl.distributed import Dist
from rftctl.rl.rollout import RolloutBatch
from rftctl.rl.scoring import PolicyScorer, scatter_window, unflatten

# One float64 [positions, V] buffer of the first-order change; the maths keeps about six alive.
THEORY_CHUNK_BYTES = 64 << 20


def snapshot(model: torch.nn.Module) -> dict[str, Tensor]:
    """A copy of the parameters (no optimizer state) for recomputing the "before" logits."""
    return {k: v.detach().clone() for k, v in model.named_parameters()}


def _entropy_change(z0: Tensor, z1: Tensor, temperature: float) -> tuple[Tensor, Tensor, Tensor]:
    """first_order_entropy_change over positions [n, V], THEORY_CHUNK_BYTES of float64 at a time
    (each position's numbers are its own: chunking changes none of them)."""
    rows = max(1, THEORY_CHUNK_BYTES // (8 * max(1, z0.shape[-1])))
    parts = [
        first_order_entropy_change(z0[a : a + rows], z1[a : a + rows], temperature)
        for a in range(0, z0.shape[0], rows)
    ]
    return tuple(torch.cat(p) for p in zip(*parts)) if len(parts) > 1 else parts[0]


@dataclass(frozen=True)
class TheoryInputs:
    """What one step's theory pass compares: the step's batch and statistics under the old
    policy, the updates' record, and the logits (or parameters) before the update."""

    batch: RolloutBatch
    stats: TokenStats  # log p, H, S, N of the sampled tokens before the update
    advantages: Tensor  # [B, L-1] per token
    ratio_sum: Tensor  # [B, L-1] sum over the updates of the ratio
    keep: Tensor  # [B, L-1] the method's keep mask
    lr: float
    micro_batches: list[Tensor]  # the statistics pass's
    logits_before: list[Tensor] | None  # its logits per micro-batch, or None: recompute them
    params_before: dict[str, Tensor] | None  # ... with these parameters


@torch.no_grad()
def theory_pass(scorer: PolicyScorer, dist: Dist, inp: TheoryInputs) -> dict[str, Tensor]:
    """theory/* and theory/logit_* metrics (module docstring), global over ranks."""
    batch, stats, advantages, keep = inp.batch, inp.stats, inp.advantages, inp.keep
    micro_batches, logits_before, params_before = (
        inp.micro_batches,
        inp.logits_before,
        inp.params_before,
    )
    scorer.model.eval()
    shape = batch.response_mask.shape
    # float64: dH of one step can be ~1e-6 of H, below float32's resolution of H
    h0, h1, lin = (torch.zeros(shape, dtype=torch.float64, device=scorer.device) for _ in range(3))
    for i, rows in enumerate(micro_batches):
        z1, t0, t1 = scorer.logits(batch, rows)
        z0 = (
            logits_before[i]
            if logits_before is not None
            else scorer.logits(batch, rows, params=params_before)[0]
        )
        m = batch.response_mask[rows, t0:t1]
        for full, part in zip((h0, h1, lin), _entropy_change(z0[m], z1[m], scorer.temperature)):
            scatter_window(full, rows, t0, t1, m, unflatten(m, part))
    pred = predicted_entropy_change(stats.s, stats.n, advantages, inp.ratio_sum, inp.lr)
    # Only tokens with a non-zero advantage get a non-zero prediction: agreement is measured
    # there (zero-advantage tokens move only through other tokens' updates).
    out = theory_metrics(h0, h1, pred, keep & (advantages != 0), dist.reduce)
    logit = theory_metrics(h0, h1, lin, batch.response_mask, dist.reduce)
    out.update(
        {
            "theory/logit_sign_agreement": logit["theory/sign_agreement"],
            "theory/logit_corr": logit["theory/corr"],
        }
    )
    return out
