"""The EntropyMethod interface, plain GRPO, the paper's ClipB / ClipV and RandomNeg (ClipB's
drop count on random tokens, the control for ClipB's S criterion).

A method acts at two points of an optimizer step:
  select(StepBatch)      once per step, on the global batch under the old policy (no grad):
                         returns the keep mask (ANDed into the loss mask) and metrics.
  token_loss(LossInputs) per micro-batch under the current policy: per-token loss to minimise,
                         0 where the mask is False. The trainer divides the sum over the step by
                         the global kept-token count (token-mean, doc section 2).
Metrics from select are 0-dim tensors already global; metrics from token_loss are per
micro-batch SUMS (keys ending in "_sum") so the trainer can add them across micro-batches.
Baseline controls live in baselines.py; the catalog (catalog.py) maps names to classes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from pydantic import BaseModel
from torch import Tensor

from rftctl.entropy.catalog import MethodInfo
from rftctl.entropy.clip import MaskResult, clipb, clipb_random, clipv, drop_metrics
from rftctl.entropy.stats import TokenStats
from rftctl.rl.surrogate import RatioClip, ppo_token_loss


@dataclass(frozen=True)
class StepBatch:
    """One optimizer step's global batch under the old policy (no grad). Shapes [B, T]."""

    stats: TokenStats  # float32 log p, H, S, N of the sampled tokens
    advantages: Tensor  # float32
    mask: Tensor  # bool, valid response tokens
    generator: torch.Generator  # seeded per step (never the global RNG)
    reduce: Callable[[Tensor], Tensor]  # all-reduce sum across ranks (identity in one process)


@dataclass(frozen=True)
class LossInputs:
    """One micro-batch under the current policy. Shapes [b, T]."""

    logp: Tensor  # log pi_theta of the sampled tokens (with grad)
    old_logp: Tensor  # log pi_old (no grad)
    advantages: Tensor  # float32
    mask: Tensor  # bool: the keep mask from select, restricted to this micro-batch
    entropy: Tensor | None  # H with grad; only when method.needs_entropy
    generator: torch.Generator
    # per-token weights of the policy-gradient term only (TIS: min(pi_old / pi_engine, C),
    # detached); a bonus or penalty a method adds is not a policy gradient and stays unweighted,
    # as in verl. None: weight 1.
    pg_weight: Tensor | None = None


def weighted(pg_loss: Tensor, inp: LossInputs) -> Tensor:
    """The policy-gradient loss times LossInputs.pg_weight (as is without one)."""
    return pg_loss if inp.pg_weight is None else pg_loss * inp.pg_weight


def masked(loss: Tensor, mask: Tensor) -> Tensor:
    """loss where mask else 0 (where, not multiply: a NaN/inf outside the mask stays out)."""
    return torch.where(mask, loss, torch.zeros_like(loss))


class EntropyMethod:
    """Plain GRPO; subclasses override select and/or token_loss."""

    needs_entropy: bool = False
    # True when the per-token loss depends only on that token's own inputs and its gradient is 0
    # for a zero advantage: the trainer may then skip zero-advantage rows and regroup micro-batches
    # without changing the gradient. Plain PPO-surrogate losses qualify; anything with a term
    # that is not proportional to A (a bonus, a penalty) or a micro-batch statistic does not.
    zero_advantage_inert: bool = True

    def __init__(self, info: MethodInfo, params: BaseModel, ratio_clip: RatioClip):
        self.info = info
        self.params = params
        self.ratio_clip = ratio_clip  # the trainer's PPO clip, bound at build

    def select(self, batch: StepBatch) -> MaskResult:
        """Default: keep every valid token (clip/* metrics are zero)."""
        drop = torch.zeros_like(batch.mask)
        n_valid = batch.reduce(batch.mask.sum().to(torch.int64))
        return MaskResult(
            batch.mask.clone(),
            drop_metrics(drop, batch.advantages, n_valid, batch.reduce, batch.mask),
        )

    def surrogate(self, inp: LossInputs) -> tuple[Tensor, Tensor]:
        """PPO loss and clip indicator with the trainer's eps (clip-higher overrides this)."""
        c = self.ratio_clip
        return ppo_token_loss(
            inp.logp, inp.old_logp, inp.advantages, c.eps_low, c.eps_high, c.dual_clip
        )

    def token_loss(self, inp: LossInputs) -> tuple[Tensor, dict[str, Tensor]]:
        loss, clipped = self.surrogate(inp)
        return masked(weighted(loss, inp), inp.mask), {
            "ppo/clipped_sum": (clipped & inp.mask).sum().float()
        }

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.info.name}, {self.params!r}, {self.ratio_clip!r})"


class ClipB(EntropyMethod):
    """Batch-normalised entropy-discriminator clipping (doc section 3)."""

    def select(self, batch: StepBatch) -> MaskResult:
        p = self.params
        return clipb(batch.stats.s, batch.advantages, batch.mask, p.mu, p.side, batch.reduce)


class ClipV(EntropyMethod):
    """Vocabulary-normalised entropy-discriminator clipping with a cap (doc section 3)."""

    def select(self, batch: StepBatch) -> MaskResult:
        p = self.params
        return clipv(
            batch.stats.s,
            batch.stats.n,
            batch.advantages,
            batch.mask,
            p.mu,
            p.max_frac,
            p.side,
            batch.reduce,
        )


class RandomNeg(EntropyMethod):
    """ClipB's per-step drop count on tokens drawn at random (clip.clipb_random) from the step's
    generator (StepBatch.generator, seeded from the training seed, the step and the rank)."""

    def select(self, batch: StepBatch) -> MaskResult:
        p = self.params
        return clipb_random(
            batch.stats.s, batch.advantages, batch.mask, p.mu, p.side, batch.generator, batch.reduce
        )
