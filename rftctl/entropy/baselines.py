"""Baseline entropy controls that the paper's lens explains (doc section 4), plus the
sign-intervention ablation of the four quadrants (doc section 1).

Each is an EntropyMethod; defaults and validation live in catalog.py. Shapes: StepBatch [B, T],
LossInputs [b, T]. Randomness only from the explicit per-step generator.
"""

from __future__ import annotations

import torch
from torch import Tensor

from rftctl.entropy.clip import MaskResult, drop_metrics
from rftctl.entropy.methods import EntropyMethod, LossInputs, StepBatch, masked, weighted
from rftctl.entropy.ranking import count_k, top_k_mask
from rftctl.rl.surrogate import LOG_RATIO_BOUND, ppo_token_loss


def token_cov(advantages: Tensor, logp: Tensor, mask: Tensor) -> Tensor:
    """cov = (A - mean A)(log pi - mean log pi) per token, means over mask, detached. [b, T]."""
    m = mask.to(torch.float32)
    cnt = m.sum().clamp_min(1.0)
    a = advantages.detach().to(torch.float32)
    lp = logp.detach().to(torch.float32)
    return (a - (a * m).sum() / cnt) * (lp - (lp * m).sum() / cnt)


class ClipHigher(EntropyMethod):
    """DAPO clip-higher: the surrogate uses this method's (eps_low, eps_high), not the trainer's."""

    def surrogate(self, inp: LossInputs) -> tuple[Tensor, Tensor]:
        return ppo_token_loss(
            inp.logp,
            inp.old_logp,
            inp.advantages,
            self.params.eps_low,
            self.params.eps_high,
            self.ratio_clip.dual_clip,
        )


class EntropyBonus(EntropyMethod):
    """loss_t - beta * H_t with H differentiable (the mean comes from the trainer's token mean)."""

    needs_entropy = True
    zero_advantage_inert = False  # the bonus has a gradient at every token

    def token_loss(self, inp: LossInputs) -> tuple[Tensor, dict[str, Tensor]]:
        if inp.entropy is None:
            raise ValueError(
                "entropy_bonus needs LossInputs.entropy (method.needs_entropy is True)"
            )
        loss, metrics = super().token_loss(inp)
        bonus = masked(inp.entropy, inp.mask)
        metrics["entropy_bonus/entropy_sum"] = bonus.detach().sum().float()
        return loss - self.params.beta * bonus, metrics


class KLCov(EntropyMethod):
    """KL-Cov (Cui et al. 2025): every token uses the unclipped -ratio * A; the top-k tokens by
    cov (k = max(int(k_frac * valid), 1) in the micro-batch) add kl_coef * |log pi - log pi_old|."""

    zero_advantage_inert = (
        False  # the penalty is not proportional to A; cov is a micro-batch statistic
    )

    def token_loss(self, inp: LossInputs) -> tuple[Tensor, dict[str, Tensor]]:
        p = self.params
        log_ratio = inp.logp - inp.old_logp
        ratio = log_ratio.clamp(-LOG_RATIO_BOUND, LOG_RATIO_BOUND).exp()
        cov = token_cov(inp.advantages, inp.logp, inp.mask)
        top = top_k_mask(cov, inp.mask, count_k(p.k_frac, inp.mask.sum()))
        loss = weighted(-ratio * inp.advantages, inp)
        loss = torch.where(top, loss + p.kl_coef * log_ratio.abs(), loss)
        return masked(loss, inp.mask), {"kl_cov/selected_sum": top.sum().float()}


class ClipCov(EntropyMethod):
    """Clip-Cov (Cui et al. 2025): among tokens the ratio clip (eps_low/eps_high of this method)
    leaves active and with lb < cov < ub, k = max(int(k_frac * valid), 1) chosen uniformly at
    random (explicit generator) have their gradient detached."""

    # cov, k and the random draw are per micro-batch statistics: skipping zero-advantage rows
    # changes the micro-batches and so which tokens are detached (not exact; off the fast path)
    zero_advantage_inert = False

    def token_loss(self, inp: LossInputs) -> tuple[Tensor, dict[str, Tensor]]:
        p = self.params
        loss, clipped = ppo_token_loss(
            inp.logp, inp.old_logp, inp.advantages, p.eps_low, p.eps_high, self.ratio_clip.dual_clip
        )
        cov = token_cov(inp.advantages, inp.logp, inp.mask)
        eligible = inp.mask & ~clipped & (cov > p.lb) & (cov < p.ub)
        # k largest of i.i.d. uniforms among eligible tokens = a uniform random k-subset.
        u = torch.rand(eligible.shape, generator=inp.generator, device=eligible.device)
        chosen = top_k_mask(u, eligible, count_k(p.k_frac, inp.mask.sum()))
        loss = weighted(torch.where(chosen, loss.detach(), loss), inp)
        return masked(loss, inp.mask), {
            "clip_cov/detached_sum": chosen.sum().float(),
            "ppo/clipped_sum": (clipped & inp.mask).sum().float(),
        }


class HighEntropy(EntropyMethod):
    """ "80/20" (Wang et al. 2025): keep the top-rho fraction of valid tokens by old-policy entropy,
    k = max(int(rho * valid), 1) over the global batch (ranking.top_k_mask)."""

    def select(self, batch: StepBatch) -> MaskResult:
        n_valid = batch.reduce(batch.mask.sum().to(torch.int64))
        keep = top_k_mask(
            batch.stats.entropy, batch.mask, count_k(self.params.rho, n_valid), batch.reduce
        )
        drop = batch.mask & ~keep
        return MaskResult(
            keep, drop_metrics(drop, batch.advantages, n_valid, batch.reduce, batch.mask)
        )


class SignIntervention(EntropyMethod):
    """Four-quadrant ablation: on tokens whose advantage has sign adv_sign keep only S > N or
    S < N; tokens of the opposite sign are dropped when other == "drop". Zero advantages kept."""

    def select(self, batch: StepBatch) -> MaskResult:
        p, a, st = self.params, batch.advantages, batch.stats
        chosen, opposite = (a > 0, a < 0) if p.adv_sign == "pos" else (a < 0, a > 0)
        quadrant = st.s > st.n if p.keep == "s_gt_n" else st.s < st.n
        drop = chosen & ~quadrant
        if p.other == "drop":
            drop = drop | opposite
        drop = drop & batch.mask
        n_valid = batch.reduce(batch.mask.sum().to(torch.int64))
        return MaskResult(
            batch.mask & ~drop,
            drop_metrics(drop, batch.advantages, n_valid, batch.reduce, batch.mask),
        )
