"""The numbers a training step logs, each global over ranks (docs/metrics.md).

How each reduces: every mean is (sum, count) all-reduced, then divided; counts are summed; the
method's per-micro-batch sums ("<name>_sum" from token_loss) become fractions of the step's
kept tokens ("<name>_frac"), or means per kept token for summed values ("..._entropy_sum" ->
"..._entropy_mean"). One process: the same code with an identity reduce.
"""

from __future__ import annotations

import torch
from torch import Tensor

from rftctl import metric_names as names
from rftctl.entropy.dist import masked_global_mean
from rftctl.entropy.stats import TokenStats
from rftctl.rl.distributed import Dist
from rftctl.rl.rollout import RolloutBatch
from rftctl.rl.update import UpdateResult


def per_kept_token_name(sum_key: str) -> str:
    """The logged name of a method's per-token sum: ``ppo/clipped_sum`` -> ``ppo/clipped_frac``
    (a count: a fraction of kept tokens), ``entropy_bonus/entropy_sum`` -> ``..._mean``."""
    base = sum_key.removesuffix("_sum")
    return base + ("_mean" if sum_key.endswith("entropy_sum") else "_frac")


def step_metrics(
    dist: Dist,
    batch: RolloutBatch,
    stats: TokenStats,
    kept_global: Tensor,
    result: UpdateResult,
    method_metrics: dict[str, Tensor],
    group_size: int,
    tis: bool,
) -> dict[str, Tensor]:
    """Every 0-dim metric of the step (module docstring); ``method_metrics`` are the method's
    select() metrics, already global."""
    reduce = dist.reduce
    mask = batch.response_mask

    def mean(x: Tensor, m: Tensor | None = None) -> Tensor:
        return masked_global_mean(
            x, torch.ones_like(x, dtype=torch.bool) if m is None else m, reduce
        )

    groups_total = dist.sum_of(batch.rewards.shape[0])
    grad_norm = result.grad_norm
    out = {
        names.REWARD: mean(batch.rewards),
        names.RESPONSE_LENGTH: mean(batch.response_lengths.float()),
        names.ENTROPY: mean(stats.entropy, mask),
        names.S_MEAN: mean(stats.s, mask),
        names.S_MINUS_N: mean(stats.s - stats.n, mask),
        names.LOSS: reduce(result.loss),
        names.GRAD_NORM: grad_norm.full_tensor()
        if hasattr(grad_norm, "full_tensor")
        else grad_norm,
        names.KEPT_TOKENS: kept_global.float(),
        names.SOLVED_GROUPS: reduce((batch.rewards.min(dim=1).values > 0).float().sum())
        / groups_total,
        names.MIXED_GROUPS: (
            reduce((batch.rewards.std(dim=1) > 0).float().sum()) / groups_total
            if group_size > 1
            else torch.zeros((), device=groups_total.device)
        ),
        names.PARSE_FAILURES: dist.sum_of(batch.parse_failures),
        names.TIMEOUTS: dist.sum_of(batch.timeouts),
    }
    if batch.engine_logp is not None:  # engine-vs-trainer gap of the sampled tokens' log-probs
        out[names.LOGPROB_GAP] = mean((batch.engine_logp - stats.logp).abs(), batch.engine_mask)
    out.update(method_metrics)
    # a rank whose rows all had zero advantage ran no micro-batch and has no keys: the
    # all-reduces must still line up, so every rank reduces the union of the keys
    zero = torch.zeros((), device=kept_global.device)
    n_keep = kept_global.clamp_min(1)
    out.update(
        {
            per_kept_token_name(k): reduce(result.method_sums.get(k, zero)) / n_keep
            for k in dist.union(result.method_sums)
        }
    )
    if tis:
        t = reduce(result.tis_sums)
        out[names.TIS_WEIGHT] = t[0] / t[2].clamp_min(1)
        out[names.TIS_CAPPED] = t[1] / t[2].clamp_min(1)
    return out
